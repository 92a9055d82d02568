"""The Ray Data engine runs the same operators and gives the same result as the local one."""

from __future__ import annotations

import pytest

from luodi.data.ops import Recipe
from luodi.data.pipeline import run_ops
from luodi.data.records import get_kind, make_record

FOOTER = "本文件为星河精密内部资料，未经许可不得外传"


def corpus() -> list[dict]:
    kind = get_kind("text")
    texts = []
    parts = ["主轴", "导轨", "刀库", "冷却液", "润滑泵", "伺服电机", "气压表", "防护门"]
    acts = ["清洁", "更换", "检查", "校准", "紧固"]
    for i in range(60):
        a, b, c = parts[i % 8], acts[i % 5], parts[(i // 8) % 8]
        body = f"第{i}号通知：{a}{b}后须复核{c}状态。Please {b} the {a} before shift {i}."
        if i % 7 == 0:
            body += " 联系人手机 13912345678，邮箱 ops@xinghe.example"
        if i % 5 == 0:
            body = f"<p>{body}</p>&nbsp;"
        texts.append(f"{body}\n{FOOTER}")
    texts += [texts[3], texts[10], "!!!@@@###$$$%%%^^^&&&***((()))", "短"]
    texts.append(texts[20].replace("须复核", "务必复核"))  # near-duplicate of record 20
    return [
        make_record(
            kind, source="/n.txt", source_sha256="0" * 64, location=f"n{i}", ordinal=i, text=t
        )
        for i, t in enumerate(texts)
    ]


RECIPE = Recipe(
    operators=[
        {"op": "normalize_unicode"},
        {"op": "strip_html"},
        {"op": "normalize_whitespace"},
        {"op": "drop_boilerplate_lines", "min_docs": 3},
        {"op": "pii_mask"},
        {"op": "filter_length", "min_chars": 5},
        {"op": "filter_special_ratio"},
        {"op": "exact_dedup"},
        {"op": "near_dedup", "threshold": 0.7},
    ]
)


def run(engine: str):
    ops = RECIPE.build(get_kind("text"))
    out: list[dict] = []
    recs = corpus()
    batches = [recs[i : i + 16] for i in range(0, len(recs), 16)]
    stats = run_ops(ops, batches, out.extend, engine=engine)
    return out, stats


@pytest.mark.slow
def test_ray_engine_equals_local_engine() -> None:
    pytest.importorskip("ray")
    local_out, local_stats = run("local")
    ray_out, ray_stats = run("ray")
    assert ray_out == local_out
    assert ray_stats == local_stats
    # the chain really did something on both engines
    by_op = {s.op: s for s in local_stats.operators}
    assert by_op["exact_dedup"].dropped == 2
    assert by_op["near_dedup"].dropped == 1
    assert by_op["filter_length"].drop_reasons == {"too_short": 1}
    assert by_op["drop_boilerplate_lines"].modified == 63  # 60 notices + 2 copies + 1 near copy
    assert all(FOOTER not in r["text"] and "13912345678" not in r["text"] for r in ray_out)


def test_a_ray_start_that_times_out_is_tried_again() -> None:
    from luodi.data.pipeline import _start_ray

    class FakeRay:
        def __init__(self, failures: int, message: str = "Timed out waiting for file gcs") -> None:
            self.failures, self.message, self.calls, self.shutdowns = failures, message, 0, 0
            self.up = False

        def is_initialized(self) -> bool:
            return self.up

        def init(self, **_: object) -> None:
            self.calls += 1
            if self.calls <= self.failures:
                raise RuntimeError(self.message)
            self.up = True

        def shutdown(self) -> None:
            self.shutdowns += 1

    ray = FakeRay(failures=2)
    _start_ray(ray)
    assert ray.up and ray.calls == 3 and ray.shutdowns == 2
    with pytest.raises(RuntimeError, match="Timed out"):
        _start_ray(FakeRay(failures=3))  # three attempts, then the error stands
    other = FakeRay(failures=1, message="address in use")
    with pytest.raises(RuntimeError, match="address in use"):
        _start_ray(other)  # only a timeout is retried
    assert other.calls == 1
