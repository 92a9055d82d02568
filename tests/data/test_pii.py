"""PII masking: every type, validation (ID checksum, Luhn), guards against order numbers,
versions, dates and prices, the allow list, type selection, and the operator via run_ops."""

from __future__ import annotations

import pickle
import random
from collections import Counter

import pytest

from luodi.data.ops import Recipe
from luodi.data.ops.pii import PiiMasker, id_check_char, is_resident_id, luhn_ok, mask_pii
from luodi.data.pipeline import run_ops
from luodi.data.records import Record, get_kind, make_record
from luodi.errors import BadInputError


def ref_id_check(first17: str) -> str:
    """GB 11643 check character written out from the standard (reference for the module)."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]  # 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
    s = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return "10X98765432"[s % 11]


def ref_luhn_ok(number: str) -> bool:
    """Luhn written out: double every second digit from the right, digit-sum, mod 10."""
    total = 0
    for i, c in enumerate(reversed(number)):
        v = int(c) * (2 if i % 2 else 1)
        total += v // 10 + v % 10
    return total % 10 == 0


def ref_luhn_digit(prefix: str) -> str:
    """The digit that makes prefix+digit pass Luhn, by trying all ten (reference)."""
    return next(d for d in "0123456789" if ref_luhn_ok(prefix + d))


def masked(text: str, **kw: object) -> str:
    return mask_pii(text, **kw)[0]  # type: ignore[arg-type]


def test_validators_agree_with_reference_implementations() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        number = "".join(rng.choices("0123456789", k=rng.randint(16, 19)))
        assert luhn_ok(number) == ref_luhn_ok(number)
        body = "".join(rng.choices("0123456789", k=17))
        assert id_check_char(body) == ref_id_check(body)


# --- resident IDs ------------------------------------------------------------------------


def test_id_checksum_by_hand_matches_known_valid_example() -> None:
    # 1*7+1*9+0+1*5+0+5*4+1*2+9*1+4*6+9*3+1*7+2*9+3*10+1*5+0+0+2*2 = 167; 167 % 11 = 2 -> 'X'
    assert ref_id_check("11010519491231002") == "X"
    assert is_resident_id("11010519491231002X")
    assert is_resident_id("11010519491231002x")
    assert masked("身份证号 11010519491231002X。") == "身份证号 [ID]。"


def test_id_computed_from_the_algorithm_is_masked_and_a_wrong_check_digit_is_not() -> None:
    body = "44030519900307123"
    good = body + ref_id_check(body)
    assert good == "440305199003071236"
    text, counts = mask_pii(f"员工身份证{good}已登记")
    assert text == "员工身份证[ID]已登记"
    assert counts == Counter({"ID": 1})
    wrong = [body + c for c in "0123456789X" if c != good[-1]]
    assert not any(is_resident_id(w) for w in wrong)
    for bad in wrong:
        # a wrong check digit is no ID; the digits may still happen to be a Luhn card number
        want = "[BANK_CARD]" if bad.isdigit() and ref_luhn_ok(bad) else bad
        assert masked(f"编号{bad}") == f"编号{want}"


def test_bad_id_checksum_that_passes_luhn_is_a_bank_card() -> None:
    bad_id = "110105194912310021"  # right shape, check char should be X
    assert not is_resident_id(bad_id) and not ref_luhn_ok(bad_id)
    assert masked(f"ID {bad_id}") == f"ID {bad_id}"
    card18 = "62220212345678901" + ref_luhn_digit("62220212345678901")
    assert not is_resident_id(card18) and luhn_ok(card18)
    assert mask_pii(f"账号 {card18}")[1] == Counter({"BANK_CARD": 1})


def test_spaced_id_is_masked() -> None:
    assert masked("证件号 110105 19491231 002X 已核验") == "证件号 [ID] 已核验"


# --- bank cards ----------------------------------------------------------------------------


def test_luhn_valid_cards_are_masked_and_invalid_are_kept() -> None:
    c16 = "622202123456789" + ref_luhn_digit("622202123456789")
    c19 = "622848001234567890" + ref_luhn_digit("622848001234567890")
    assert (c16, c19) == ("6222021234567894", "6228480012345678903")
    text, counts = mask_pii(f"工资卡{c16}，备用卡 {c19}，测试卡 4111111111111111。")
    assert text == "工资卡[BANK_CARD]，备用卡 [BANK_CARD]，测试卡 [BANK_CARD]。"
    assert counts == Counter({"BANK_CARD": 3})
    assert masked("卡号 4111111111111112") == "卡号 4111111111111112"
    assert masked("卡号 6222021234567895") == "卡号 6222021234567895"


def test_grouped_cards() -> None:
    assert masked("card 4111 1111 1111 1111 ok") == "card [BANK_CARD] ok"
    assert masked("card 4111-1111-1111-1111.") == "card [BANK_CARD]."
    assert masked("账号 6228 4800 1234 5678 903") == "账号 [BANK_CARD]"
    assert masked("card 4111 1111 1111 1112") == "card 4111 1111 1111 1112"


# --- phones --------------------------------------------------------------------------------


def test_mobile_in_chinese_context() -> None:
    assert masked("请致电13812345678联系张工") == "请致电[PHONE]联系张工"


@pytest.mark.parametrize(
    "phone",
    [
        "13812345678",
        "138-1234-5678",
        "138 1234 5678",
        "+86 138 1234 5678",
        "+8613812345678",
        "+86-138-1234-5678",
        "0086 13812345678",
        "86 13812345678",
        "19912345678",
        "010-12345678",
        "0571-8888888",
        "0755-23456789",
        "(010)12345678",
        "(0571) 88888888",
        "021-62345678-123",
        "0755-23456789转805",
        "+44 20 7946 0958",
        "+1 (415) 555-0132",
        "+49 30 888988",
        "400-820-8820",
    ],
)
def test_phone_formats(phone: str) -> None:
    assert mask_pii(f"电话：{phone}，谢谢") == ("电话：[PHONE]，谢谢", Counter({"PHONE": 1}))


@pytest.mark.parametrize(
    "text",
    [
        "号码12812345678无效",  # second digit 2: not a mobile prefix
        "订单 138123456789 已发货",  # 12 digits
        "单号 1381234567",  # 10 digits
        "流水号 2024061813812345678001",  # a mobile inside a longer run
        "+5 100 200 units",  # too few digits for a phone
        "gain +15000 units",
    ],
)
def test_not_phones(text: str) -> None:
    assert masked(text) == text


# --- e-mail and IP -------------------------------------------------------------------------


def test_emails() -> None:
    text, counts = mask_pii("联系 Zhang.Wei+hr@xinghe.com.cn 或 li_na@corp-mail.com。")
    assert text == "联系 [EMAIL] 或 [EMAIL]。"
    assert counts == Counter({"EMAIL": 2})
    assert masked("handle @someone and a@b and x@y.z") == "handle @someone and a@b and x@y.z"
    # the e-mail wins over the phone number that is its local part
    assert masked("mail 13812345678@139.com") == "mail [EMAIL]"


def test_ip_octet_bounds() -> None:
    assert masked("MES 服务器 192.168.1.10，网关 10.0.0.1") == "MES 服务器 [IP]，网关 [IP]"
    assert masked("bcast 255.255.255.255.") == "bcast [IP]."
    assert masked("0.0.0.0 any") == "[IP] any"
    for kept in ("256.1.1.1", "10.0.0.256", "192.168.300.1", "192.168.01.1", "1.2.3"):
        assert masked(f"addr {kept} x") == f"addr {kept} x"


def test_versions_order_numbers_dates_prices_are_kept() -> None:
    text = (
        "版本 1.2.3.4.5 与 v1.2.3.4，订单 XH-2024-000123，采购单 PO202412345678，"
        "日期 2024-03-15、2024.03.15、2024/03/15，金额 ¥12,345.00、1380000.50 元，"
        "物料 HV-1381-2345678，系统单号 202403150000123456789，时间 02:00。"
    )
    assert mask_pii(text) == (text, Counter())


# --- allow list and types ------------------------------------------------------------------


def test_allow_list_keeps_the_hotline_and_service_mailbox() -> None:
    allow = ["400-820-8820", "service@xinghe.com"]
    text = (
        "热线 400-820-8820 / 400 820 8820 / 4008208820，邮箱 Service@Xinghe.com，张工 13812345678"
    )
    out, counts = mask_pii(text, allow=allow)
    assert out == (
        "热线 400-820-8820 / 400 820 8820 / 4008208820，邮箱 Service@Xinghe.com，张工 [PHONE]"
    )
    assert counts == Counter({"PHONE": 1})
    assert masked("热线 400-820-8820 sales@xinghe.com") == "热线 [PHONE] [EMAIL]"


def test_types_select_what_is_masked() -> None:
    text = "a@b.com 13812345678 192.168.0.1 11010519491231002X 4111111111111111"
    assert masked(text, types=["EMAIL", "IP"]) == (
        "[EMAIL] 13812345678 [IP] 11010519491231002X 4111111111111111"
    )
    # with ID off, a valid ID that is not a Luhn number stays; cards still go
    assert masked(text, types=["BANK_CARD"]) == (
        "a@b.com 13812345678 192.168.0.1 11010519491231002X [BANK_CARD]"
    )
    with pytest.raises(BadInputError, match="unknown PII types"):
        mask_pii("x", types=["SSN"])


def test_non_ascii_digits_are_left_alone() -> None:
    # full-width digits are folded by normalize_unicode first; unmasked here, and no crash
    ascii_text = "电话13812345678，卡号4111111111111111，身份证11010519491231002X"
    assert masked(ascii_text) == "电话[PHONE]，卡号[BANK_CARD]，身份证[ID]"
    text = ascii_text.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})
    assert text != ascii_text
    assert masked(text) == text


def test_masker_returns_the_same_string_when_nothing_is_masked() -> None:
    m = PiiMasker([HOTLINE := "400-820-8820"])
    for text in ("无数字", "订单 XH-2024-000123", f"热线 {HOTLINE}", "卡号 4111111111111112 a@b"):
        assert m.mask(text) is text
    counts: Counter[str] = Counter()
    assert m.mask("13812345678 / 13912345678", counts) == "[PHONE] / [PHONE]"
    assert counts == Counter({"PHONE": 2})


def test_masker_survives_pickling() -> None:
    m = PiiMasker(["400-820-8820"], ["PHONE"])
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.mask("400-820-8820 13812345678 a@b.com") == "400-820-8820 [PHONE] a@b.com"


# --- the operator --------------------------------------------------------------------------


def _text_records(texts: list[str]) -> list[Record]:
    kind = get_kind("text")
    return [
        make_record(
            kind, source="/p.txt", source_sha256="0" * 64, location=f"l{i}", ordinal=i, text=t
        )
        for i, t in enumerate(texts)
    ]


def test_operator_through_run_ops_counts_modified_records() -> None:
    recs = _text_records(
        [
            "请致电13812345678联系张工",
            "没有个人信息的一段话，订单 XH-2024-000123。",
            "热线 400-820-8820，邮箱 hr@xinghe.com",
            "IP 10.1.2.3",
        ]
    )
    ops = Recipe(operators=[{"op": "pii_mask", "allow": ["400-820-8820"]}]).build(get_kind("text"))
    out: list[Record] = []
    result = run_ops(ops, [recs[:2], recs[2:]], out.extend)
    assert [r["text"] for r in out] == [
        "请致电[PHONE]联系张工",
        "没有个人信息的一段话，订单 XH-2024-000123。",
        "热线 400-820-8820，邮箱 [EMAIL]",
        "IP [IP]",
    ]
    stats = result.operators[0]
    assert (stats.records_in, stats.kept, stats.dropped, stats.modified) == (4, 4, 0, 3)
    assert stats.params["allow"] == ["400-820-8820"]


def test_operator_returns_same_object_when_unchanged_and_masks_messages() -> None:
    op = Recipe(operators=[{"op": "pii_mask"}]).build(get_kind("qa"))[0]
    kind = get_kind("qa")
    clean = make_record(
        kind,
        source="s",
        source_sha256="0",
        location="a",
        ordinal=0,
        messages=[
            {"role": "user", "content": "年假几天？"},
            {"role": "assistant", "content": "5天"},
        ],
    )
    dirty = make_record(
        kind,
        source="s",
        source_sha256="0",
        location="b",
        ordinal=1,
        messages=[
            {"role": "user", "content": "我的手机是 139-0000-1111"},
            {"role": "assistant", "content": "已记录，回执发到 a.b@c.cn"},
        ],
    )
    out = op.process([clean, dirty])
    assert out[0] is clean
    assert out[1] is not dirty
    assert [m["content"] for m in out[1]["messages"]] == [
        "我的手机是 [PHONE]",
        "已记录，回执发到 [EMAIL]",
    ]
    assert dirty["messages"][0]["content"] == "我的手机是 139-0000-1111"  # input untouched


def test_bad_recipe_parameters_are_bad_input() -> None:
    with pytest.raises(BadInputError, match="pii_mask"):
        Recipe(operators=[{"op": "pii_mask", "types": ["PASSPORT"]}]).build(get_kind("text"))
