"""Guard benchmark: microseconds per check with the default policy against a naive term loop.

Run (from the repository root):

    .venv/bin/python bench/bench_guard.py
    .venv/bin/python bench/bench_guard.py --chars 2000 --runs 2000

For 2,000-character texts (Chinese, English, mixed with PII and a blocked term) it prints:

- `check_input`: the default policy's whole input check (normalise, lexicon automaton,
  injection triggers and patterns, PII detectors, verdict); target < 1 ms.
- `lexicon only`: the lexicon automaton over the normalised text (`Lexicon.find`).
- `naive terms`: the baseline measured in the same run, `[t for t in terms if t in low]` over
  every built-in term with `low = text.lower()` (substring tests, no whole words, no
  normalisation, no spans, no PII or injection patterns).
- `stream/delta`: one output stream fed in 4-character deltas, per delta; `stream total`
  against `check_output` once over the same text.

Each figure is the median of `--repeat` rounds of `--runs` calls. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from luodi.guard import load_policy
from luodi.guard.lexicon import BUILTIN_DIR, builtin_categories, read_lexicon
from luodi.guard.normalize import normalize

ZH = (
    "我们公司成立于2008年，主要从事工业自动化设备的研发、生产和销售。产品包括PLC控制器、"
    "伺服驱动器和变频器，广泛应用于汽车制造、电子装配和食品包装等行业。如需技术支持，"
    "请联系我们的客服热线，工作时间为周一至周五上午九点到下午六点。"
)
EN = (
    "Our company was founded in 2008 and develops industrial automation equipment. Products "
    "include PLC controllers, servo drives and inverters, widely used in automotive "
    "manufacturing, electronics assembly and food packaging. For support, call our hotline. "
)
MIXED = (
    "客户王先生（电话 13812345678，邮箱 wang.li@xinghe.com）反馈 ERP 客户端无法登录，"
    "Server 10.1.2.3 returned error 502. 他说如果再不修好就要炸弹一样爆发了。"
)


def sized(base: str, chars: int) -> str:
    return (base * (chars // len(base) + 1))[:chars]


def per_call_us(fn: Callable[[], object], runs: int, repeat: int) -> float:
    fn()
    rounds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(runs):
            fn()
        rounds.append((time.perf_counter() - t0) / runs * 1e6)
    return statistics.median(rounds)


def naive_terms(terms: list[str], text: str) -> list[str]:
    """The baseline: which terms occur in the lower-cased text, by `in`."""
    low = text.lower()
    return [w for w in terms if w in low]


def stream_once(policy, text: str, step: int) -> None:
    sg = policy.output_stream()
    for i in range(0, len(text), step):
        if sg.feed(text[i : i + step]).blocked:
            return
    sg.finish()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chars", type=int, default=2000, help="characters per text")
    ap.add_argument("--runs", type=int, default=1000, help="calls per round")
    ap.add_argument("--repeat", type=int, default=5, help="rounds (the median is shown)")
    ap.add_argument("--delta", type=int, default=4, help="characters per stream delta")
    args = ap.parse_args()

    policy = load_policy("default")
    lexicon = policy.engine.detectors["lexicon"]
    terms = sorted(
        {
            normalize(t).text
            for c in builtin_categories()
            for t in read_lexicon(BUILTIN_DIR / f"{c}.txt").terms
        }
    )
    print(f"default policy, {len(terms)} lexicon terms, texts of {args.chars} characters\n")
    head = f"{'text':<8}{'check_input':>13}{'lexicon only':>14}{'naive terms':>13}"
    head += f"{'ratio':>8}{'stream/delta':>14}{'stream total':>14}{'check_output':>14}"
    print(head)
    print("-" * len(head))
    for name, base in (("zh", ZH), ("en", EN), ("mixed", MIXED)):
        text = sized(base, args.chars)
        norm = normalize(text).text
        ci = per_call_us(lambda t=text: policy.check_input(t), args.runs, args.repeat)
        lx = per_call_us(lambda n=norm: lexicon.find(n), args.runs, args.repeat)
        naive = per_call_us(lambda t=text: naive_terms(terms, t), args.runs, args.repeat)
        co = per_call_us(lambda t=text: policy.check_output(t), args.runs, args.repeat)
        sruns = max(1, args.runs // 20)
        st = per_call_us(lambda t=text: stream_once(policy, t, args.delta), sruns, args.repeat)
        deltas = -(-len(text) // args.delta)
        print(
            f"{name:<8}{ci:>11.0f}us{lx:>12.0f}us{naive:>11.0f}us{naive / ci:>7.2f}x"
            f"{st / deltas:>12.1f}us{st:>12.0f}us{co:>12.0f}us"
        )
    verdict = policy.check_input(sized(MIXED, args.chars))
    print(f"\nmixed text verdict: {verdict.action} {verdict.categories}")
    print("ratio = naive / check_input (>1: the full check is faster than the bare term loop)")


if __name__ == "__main__":
    main()
