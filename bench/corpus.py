"""A deterministic generator of mixed Chinese/English enterprise text for the data benches.

Documents read like the chunks an enterprise feeds luodi: manufacturing, HR and finance
sentences drawn from a vocabulary with random slot values, some in English, most in Chinese,
with numbers, dates, prices, order and part numbers, version strings, now and then an e-mail,
a phone, a resident ID, a bank card or an IP address (the PII bench masks those; the decoys
must stay), and HTML tags and entities in a third of the documents.

`make_docs` can plant duplicates and returns where they are:

- exact duplicates: verbatim copies of an earlier original;
- near duplicates: copies of an earlier original edited in 8-12 places (a span of a few
  characters replaced, inserted or deleted at each), 3-5% of the characters in all.
  Measured with character 5-gram Jaccard against their originals (`near_dup_jaccard`; run
  `python bench/corpus.py`) for `make_docs(2000, near_dup=0.2)`: mean 0.88, 5th-95th
  percentile 0.85-0.90, min 0.84, max 0.93. Unrelated originals share template phrases and
  score 0.12 on average (max 0.21), far below.

Duplicates copy one of the most recent originals (`pool` of them, default 5000) so
`iter_docs` can stream a corpus of any size in bounded memory. The same seed gives the same
documents and the same ground truth.

    from bench.corpus import make_docs, write_jsonl
    docs, truth = make_docs(1000, exact_dup=0.05, near_dup=0.05, seed=1)
    write_jsonl("bench/out/corpus.jsonl", docs)
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华飞鹏辉玲斌宇浩凯"
EN_NAMES = ["Alice Chen", "Bob Zhang", "Carol Li", "David Wang", "Emma Liu", "Frank Zhou"]
DEPTS = ["生产部", "质量部", "采购部", "人力资源部", "财务部", "仓储物流部", "设备部", "研发中心"]
EN_DEPTS = ["Production", "Quality", "Procurement", "HR", "Finance", "Logistics", "R&D"]
PLANTS = ["苏州工厂", "东莞二厂", "天津基地", "成都工厂", "宁波园区"]
EN_PLANTS = ["Suzhou plant", "Dongguan Plant 2", "Tianjin site", "Chengdu plant"]
PRODUCTS = ["液压阀", "伺服电机", "齿轮箱", "传感器模组", "控制柜", "轴承座", "注塑件", "PCB 组件"]
EN_PRODUCTS = ["servo motor", "gearbox", "hydraulic valve", "sensor module", "control cabinet"]
SUPPLIERS = ["星河精密", "华东机电", "恒通材料", "Acme Industrial", "Delta Components"]
DOMAINS = ["xinghe.com", "example.cn", "corp-mail.com.cn", "hd-tech.net"]
CITY_CODES = ["010", "021", "020", "0755", "0571", "0512", "022", "028"]
REGIONS = ["110105", "310104", "440305", "320583", "330106", "510107", "120101", "370202"]
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"

ZH = [
    "{dept}通知：{plant}的{product}产线自{date}起执行新的作业指导书，版本号为 {version}。",
    "本月{product}的一次交验合格率为{pct}%，较上月提升{small}个百分点，主要改进来自{dept}。",
    "采购订单 {order} 已于{date}下达给{supplier}，合同金额人民币{price}元（含税）。",
    "财务部提醒：报销单据须在发生后{small}个工作日内提交，超过¥{price}需部门负责人审批。",
    "{plant}本周产量为{qty}件，库存周转天数{small}天，物料编号 {part} 出现短缺。",
    "根据《员工手册》第{small}条，年假天数按累计工龄计算，最少{small}天，最多{qty2}天。",
    "设备 {part} 的点检周期为{small}小时，润滑油更换标准见附表{small}。",
    "供应商{supplier}的来料不良率为{pct}%，已发出纠正措施要求 {order}。",
    "本季度营业收入{price}万元，同比增长{pct}%，毛利率{pct2}%。",
    "夜班补贴标准调整为每班{small}0元，自{date}起生效，由{dept}负责核算。",
    "质量例会定于{date} 14:30 在{plant}三楼会议室召开，请{dept}相关人员准时参加。",
    "客户投诉编号 {order} 涉及{product}外观划伤，{dept}需在{small}个工作日内回复 8D 报告。",
    "新员工安全培训共{small}课时，考试合格（{pct2}分以上）方可上岗。",
    "固定资产 {part} 按{small}年直线法折旧，残值率{small}%。",
    "检验记录编号 {fullwidth}，由{dept}于{date}归档。",
]
EN = [
    "The {en_plant} shipped {qty} units of {en_product} in week {small}, {pct}% on time.",
    "Purchase order {order} was issued to {supplier} on {date} for USD {price}.",
    "Line {small} downtime was {small} hours due to a {en_product} failure; see ticket {order}.",
    "{en_dept} will review the overtime policy on {date}; the draft is version {version}.",
    "Scrap rate dropped to {pct}% after the {en_product} fixture change (part {part}).",
    "Quarterly revenue reached {price} thousand RMB, margin {pct2}%.",
    "New hires must complete {small} hours of safety training before {date}.",
]
ZH_PII = [
    "请各部门于{date}前提交年度培训计划，联系人：{person}，邮箱 {email}。",
    "如需报修设备，请致电{phone}联系{person}，或在系统中提交工单 {order}。",
    "员工{person}的入职手续已办理完毕，身份证号 {idno}，工资卡号 {card}。",
    "MES 服务器地址为 {ip}，数据库备份于每日 02:00 执行，保留{small}天。",
    "紧急联系人{person}，办公电话 {landline}，手机 {phone}。",
    "付款账户：{supplier}，开户行账号 {card}，请于{date}前完成付款。",
]
EN_PII = [
    "Please contact {en_name} at {email} or {intl} for questions about the audit.",
    "The VPN gateway moved to {ip}; the old address {ip} is retired.",
    "Escalations go to the {en_dept} hotline {phone}, extension {small}{small}.",
]
HTML_OPEN = ["<p>", '<div class="note">', "<td>", "<li>", '<span style="color:red">']
HTML_CLOSE = {"<p>": "</p>", "<td>": "</td>", "<li>": "</li>"}
ENTITIES = ["&nbsp;", "&amp;", "&lt;", "&gt;", "&quot;", "&#12288;", "&yen;"]
PII_SENTENCES = 0.08
"""Share of sentences carrying PII: about 3 items in a 1000-character document."""
EDIT_CHARS = "的了和在是产品质量工厂设备订单员工部门ABCDEFXYZ0123456789 ,.，。"


def id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of a resident ID's first 17 digits."""
    return ID_CHECK[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def luhn_complete(prefix: str) -> str:
    """`prefix` plus the Luhn check digit that makes the whole number valid."""
    total = 0
    for i, ch in enumerate(reversed(prefix)):
        d = int(ch)
        if i % 2 == 0:  # these digits are doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return prefix + str((10 - total % 10) % 10)


class _Slots:
    """Random slot values; a fresh draw for every placeholder occurrence."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    def date(self) -> str:
        r = self.r
        y, m, d = r.randint(2019, 2026), r.randint(1, 12), r.randint(1, 28)
        return r.choice([f"{y}年{m}月{d}日", f"{y}-{m:02d}-{d:02d}", f"{y}/{m:02d}/{d:02d}"])

    def person(self) -> str:
        r = self.r
        return r.choice(SURNAMES) + "".join(r.choices(GIVEN, k=r.randint(1, 2)))

    def phone(self) -> str:
        r = self.r
        n = f"1{r.choice('3456789')}{r.randint(0, 9)}{r.randint(0, 99999999):08d}"
        style = r.randint(0, 5)
        if style == 1:
            return f"{n[:3]}-{n[3:7]}-{n[7:]}"
        if style == 2:
            return f"+86 {n[:3]} {n[3:7]} {n[7:]}"
        if style == 3:
            return "400-820-8820"  # a company hotline: kept when allow-listed
        return n

    def landline(self) -> str:
        r = self.r
        code = r.choice(CITY_CODES)
        num = str(r.randint(2, 8)) + "".join(str(r.randint(0, 9)) for _ in range(8 - len(code) + 2))
        return r.choice([f"{code}-{num}", f"({code}){num}", f"{code}-{num}-{r.randint(1, 999)}"])

    def intl(self) -> str:
        r = self.r
        return r.choice(
            [
                f"+44 20 {r.randint(7000, 7999)} {r.randint(0, 9999):04d}",
                f"+1 ({r.randint(201, 989)}) 555-{r.randint(0, 9999):04d}",
                f"+49 30 {r.randint(100000, 999999)}",
            ]
        )

    def email(self) -> str:
        r = self.r
        user = r.choice(["hr", "zhang.wei", "li_na", "finance", "service", "qa-team", "w.liu"])
        return f"{user}{r.choice(['', str(r.randint(1, 99))])}@{r.choice(DOMAINS)}"

    def idno(self) -> str:
        r = self.r
        body = (
            f"{r.choice(REGIONS)}{r.randint(1960, 2004)}{r.randint(1, 12):02d}"
            f"{r.randint(1, 28):02d}{r.randint(0, 999):03d}"
        )
        if r.random() < 0.2:  # a mistyped ID (bad checksum): must stay unmasked
            good = id_check_char(body)
            return body + r.choice([c for c in "0123456789" if c != good])
        return body + id_check_char(body)

    def card(self) -> str:
        r = self.r
        n = luhn_complete(
            r.choice(["622202", "621700", "436742", "625911"])
            + "".join(str(r.randint(0, 9)) for _ in range(r.choice([9, 12])))
        )
        return " ".join(n[i : i + 4] for i in range(0, len(n), 4)) if r.random() < 0.4 else n

    def ip(self) -> str:
        r = self.r
        return r.choice(
            [
                f"192.168.{r.randint(0, 255)}.{r.randint(1, 254)}",
                f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
                f"172.{r.randint(16, 31)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
            ]
        )

    def order(self) -> str:
        r = self.r
        return r.choice(
            [
                f"PO{r.randint(2019, 2026)}{r.randint(0, 99999999):08d}",
                f"XH-{r.randint(2019, 2026)}-{r.randint(0, 999999):06d}",
                f"SO-{r.randint(100000, 999999)}",
                f"{r.randint(10**17, 10**18 - 1)}",  # an 18-digit system order id
            ]
        )

    def part(self) -> str:
        r = self.r
        return f"{r.choice(['HV', 'SM', 'GB', 'PCB'])}-{r.randint(1000, 9999)}-{r.choice('ABCD')}"

    def version(self) -> str:
        r = self.r
        parts = [str(r.randint(0, 12)) for _ in range(r.choice([3, 3, 4, 5]))]
        return "v" + ".".join(parts) if r.random() < 0.5 else ".".join(parts)

    def price(self) -> str:
        r = self.r
        v = r.randint(100, 9_999_999)
        return r.choice([f"{v:,}", f"{v}.{r.randint(0, 99):02d}", str(v)])

    def fullwidth(self) -> str:
        # full-width letters and digits as Chinese input methods type them: NFKC folds them
        code = f"QC-{self.r.randint(2019, 2026)}-{self.r.randint(0, 999):03d}"
        return code.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})

    def value(self, slot: str) -> str:
        """The text for placeholder `slot`."""
        r = self.r
        simple: dict[str, Any] = {
            "dept": DEPTS,
            "en_dept": EN_DEPTS,
            "plant": PLANTS,
            "en_plant": EN_PLANTS,
            "product": PRODUCTS,
            "en_product": EN_PRODUCTS,
            "supplier": SUPPLIERS,
            "en_name": EN_NAMES,
        }
        if slot in simple:
            return r.choice(simple[slot])
        if slot == "pct":
            return f"{r.uniform(0.1, 99.9):.1f}"
        if slot == "pct2":
            return str(r.randint(60, 99))
        if slot == "small":
            return str(r.randint(1, 30))
        if slot in ("qty", "qty2"):
            return str(r.randint(10, 50000))
        return getattr(self, slot)()


class _Filler(dict):
    def __init__(self, slots: _Slots) -> None:
        super().__init__()
        self.slots = slots

    def __missing__(self, key: str) -> str:
        return self.slots.value(key)


def _sentence(rng: random.Random, slots: _Slots) -> str:
    english = rng.random() < 0.3
    if rng.random() < PII_SENTENCES:
        tpl = rng.choice(EN_PII) if english else rng.choice(ZH_PII)
    else:
        tpl = rng.choice(EN) if english else rng.choice(ZH)
    return tpl.format_map(_Filler(slots))


def _original(rng: random.Random, slots: _Slots, doc_chars: int) -> str:
    html = rng.random() < 0.33
    out: list[str] = []
    size = 0
    while size < doc_chars:
        s = _sentence(rng, slots)
        if html and rng.random() < 0.5:
            tag = rng.choice(HTML_OPEN)
            s = f"{tag}{s}{HTML_CLOSE.get(tag, '</' + tag[1:].split()[0].rstrip('>') + '>')}"
        if html and rng.random() < 0.3:
            s += rng.choice(ENTITIES)
        sep = "\n" if rng.random() < 0.15 else ("<br/>" if html and rng.random() < 0.2 else "")
        out.append(s + sep)
        size += len(s) + len(sep)
    return "".join(out)


def _near(rng: random.Random, doc: str) -> str:
    """`doc` edited in a few places, about 4% of its characters in all."""
    chars = list(doc)
    budget = max(3, round(len(chars) * rng.uniform(0.03, 0.05)))
    sites = rng.randint(8, 12)
    for k in range(sites):
        span = max(1, budget // (sites - k))
        budget -= span
        at = rng.randrange(len(chars) + 1)
        op = rng.random()
        new = rng.choices(EDIT_CHARS, k=span)
        if op < 0.4:
            chars[at : at + span] = new
        elif op < 0.7:
            chars[at:at] = new
        else:
            del chars[at : at + span]
    return "".join(chars)


def iter_docs(
    n: int,
    *,
    doc_chars: int = 1000,
    exact_dup: float = 0.0,
    near_dup: float = 0.0,
    seed: int = 0,
    truth: dict[str, list[tuple[int, int]]] | None = None,
    pool: int = 5000,
) -> Iterator[str]:
    """Yield `n` documents (see the module doc); planted duplicates are appended to `truth`.

    round(n * exact_dup) exact and round(n * near_dup) near duplicates are placed at random
    positions after the first document; each copies one of the last `pool` originals.
    `truth` (if given) receives `exact` and `near` lists of (dup_index, original_index).
    """
    if not 0 <= exact_dup + near_dup < 1 or exact_dup < 0 or near_dup < 0:
        raise ValueError("exact_dup and near_dup must be >= 0 and sum to less than 1")
    rng = random.Random(seed)
    slots = _Slots(rng)
    n_exact, n_near = round(n * exact_dup), round(n * near_dup)
    dup_at = rng.sample(range(1, n), n_exact + n_near) if n > 1 else []
    kind = dict.fromkeys(dup_at[:n_exact], "exact") | dict.fromkeys(dup_at[n_exact:], "near")
    if truth is not None:
        truth.setdefault("exact", [])
        truth.setdefault("near", [])
    recent: deque[tuple[int, str]] = deque(maxlen=pool)
    for i in range(n):
        k = kind.get(i)
        if k is None:
            doc = _original(rng, slots, doc_chars)
            recent.append((i, doc))
            yield doc
            continue
        j, orig = recent[rng.randrange(len(recent))]
        doc = orig if k == "exact" else _near(rng, orig)
        if truth is not None:
            truth[k].append((i, j))
        yield doc


def make_docs(
    n: int,
    *,
    doc_chars: int = 1000,
    exact_dup: float = 0.0,
    near_dup: float = 0.0,
    seed: int = 0,
) -> tuple[list[str], dict]:
    """`n` documents of about `doc_chars` characters and the planted duplicates.

    Returns (docs, {"exact": [(dup_index, original_index)], "near": [...]}) with pairs in
    dup_index order and original_index < dup_index. Deterministic in `seed`.
    """
    truth: dict[str, list[tuple[int, int]]] = {"exact": [], "near": []}
    docs = list(
        iter_docs(
            n, doc_chars=doc_chars, exact_dup=exact_dup, near_dup=near_dup, seed=seed, truth=truth
        )
    )
    return docs, truth


def write_jsonl(path: str | Path, docs: Iterable[str]) -> int:
    """Write `{"id": "doc-N", "text": doc}` lines to `path`; returns the UTF-8 bytes of text."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    total = 0
    with path.open("w", encoding="utf-8") as f:
        for i, doc in enumerate(docs):
            total += len(doc.encode("utf-8"))
            f.write(json.dumps({"id": f"doc-{i}", "text": doc}, ensure_ascii=False) + "\n")
    return total


def shingles(text: str, k: int = 5) -> set[str]:
    """Character k-grams of `text` (the whole text when shorter than k)."""
    return {text[i : i + k] for i in range(max(1, len(text) - k + 1))}


def jaccard(a: str, b: str, k: int = 5) -> float:
    """Character k-gram Jaccard similarity of two texts."""
    sa, sb = shingles(a, k), shingles(b, k)
    return len(sa & sb) / len(sa | sb)


def near_dup_jaccard(docs: list[str], truth: dict) -> list[float]:
    """The 5-gram Jaccard of every planted near duplicate with its original."""
    return [jaccard(docs[d], docs[o]) for d, o in truth["near"]]


if __name__ == "__main__":
    import statistics

    docs, truth = make_docs(2000, near_dup=0.2, seed=0)
    js = sorted(near_dup_jaccard(docs, truth))
    q = statistics.quantiles(js, n=20)
    print(f"near dups {len(js)}: mean {statistics.mean(js):.3f} p5 {q[0]:.3f} p95 {q[-1]:.3f}")
    print(f"min {js[0]:.3f} max {js[-1]:.3f}")
    origs = [i for i in range(len(docs)) if i not in {d for d, _ in truth["near"]}]
    rs = [jaccard(docs[origs[i]], docs[origs[i + 1]]) for i in range(0, 200, 2)]
    print(f"unrelated pairs: mean {statistics.mean(rs):.3f} max {max(rs):.3f}")
    print(docs[0][:600])
