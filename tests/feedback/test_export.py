"""`luodi feedback export`: corrections → SFT, ratings → DPO pairs, cleaned, deduplicated
against the training data, registered with lineage to the model versions that answered."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from luodi.data.datasets import load_records, resolve
from luodi.data.records import meta_of
from luodi.feedback import FeedbackExportConfig, run_feedback_export
from luodi.store import Store
from tests.feedback.seed import SYSTEM, Seed, deployment, model_version
from tests.helpers import run_cli, save_qa

Q1 = "S200 传感器的保修期多久？"
Q2 = "如何校准 X5 扭矩扳手？"
Q5 = "退货流程是什么？"
Q6 = "What is the S200 warranty?"
FIX1 = "S200 传感器保修两年，售后电话 13812345678。"
FIX1_MASKED = "S200 传感器保修两年，售后电话 [PHONE]。"
FIX6 = "The S200 is under warranty for two years."


def scenario(store: Store) -> Seed:
    """Two model versions answering the helpdesk deployment, with every kind of feedback."""
    v1, v2 = model_version(store).ref, model_version(store).ref
    deployment(store)
    save_qa(store, [(Q5, "在订单页申请退货。"), ("工厂在哪里？", "苏州。")], name="faq")
    s = Seed()
    # a grounded answer rated down and corrected (the correction holds a phone number)
    s.add(
        "r1", v1, Q1, "保修期是一个月。", rating=0.0, correction=FIX1, sources=["S200 保修两年。"]
    )
    s.add("r2", v2, Q1, "S200 保修两年。", rating=1.0)
    s.add("r3", v1, Q2, "随便拧一下就好。", rating=0.25)  # two of five stars
    s.add("r4", v2, Q2, "用校准仪按手册第 4 节操作。", rating=1.0)
    s.add("r5", v2, "工厂几点开门？", "八点。", rating=0.5)  # one answer: no pair
    s.add("r6", v1, "你好", "你好！", rating=1.0)
    s.add("r7", v2, "你好", "您好，请问有什么可以帮您？", rating=1.0)  # a tie
    s.add("r8", v1, Q5, "不能退货。", rating=0.0, correction="在订单页点击“申请退货”。")
    s.add("r9", v2, "天气如何？", "晴。", comment="跑题了")  # comment only
    s.add("r10", v1, "旧问题", "旧回答", rating=0.0, correction="新回答", logged=False)  # purged
    own = [{"role": "system", "content": "请用英文回答。"}, {"role": "user", "content": Q6}]
    s.add("r11", v2, own, "I do not know.", correction=FIX6)
    s.add("r12", v1, "很久以前的问题", "旧答案", correction="新答案", ago=timedelta(days=30))
    s.write(store)
    return s


def _by_request(records: list[dict]) -> dict[str, dict]:
    return {" > ".join(meta_of(r)["request_ids"]): r for r in records}


def test_sft_export_cli(store: Store, tmp_path: Path) -> None:
    scenario(store)
    home = tmp_path / "home"
    args = ["feedback", "export", "--to", "sft", "--name", "fb-sft", "--since", "7d"]
    res = json.loads(run_cli(*args, "--dedup-against", "faq", "--json", home=home).stdout)
    assert res["dataset"] == "fb-sft:v1" and res["record_kind"] == "qa"
    assert res["records"] == 2 and res["requests_with_feedback"] == 11  # r12 is too old
    assert res["skipped"] == {"no_correction": 6, "comment_only": 1, "request_log_purged": 1}
    assert res["cleaning"] == {"dedup_against": {"in_training_data": 1}}  # r8 asks Q5 of faq
    assert sorted(res["produced_by"]) == ["assistant:v1", "assistant:v2"]

    info = resolve(store, "fb-sft:v1")
    recs = _by_request(load_records(info))
    assert set(recs) == {"r1", "r11"}
    # the deployment's system prompt and the grounding sources are gone; the PII is masked
    assert recs["r1"]["messages"] == [
        {"role": "user", "content": Q1},
        {"role": "assistant", "content": FIX1_MASKED},
    ]
    # the client's own system turn stays
    assert recs["r11"]["messages"] == [
        {"role": "system", "content": "请用英文回答。"},
        {"role": "user", "content": Q6},
        {"role": "assistant", "content": FIX6},
    ]
    assert {(p.ref, p.role) for p in info.parents} == {
        ("assistant:v1", "produced_by"),
        ("assistant:v2", "produced_by"),
        ("faq:v1", "dedup_against"),
    }
    assert info.meta["feedback"]["request_ids"] == ["r1", "r11"]
    assert info.meta["feedback"]["feedback_ids"] == [1, 11]  # r1's and r11's rows
    assert meta_of(recs["r1"])["model_versions"] == ["assistant:v1"]

    # it is a normal dataset: lineage through the CLI, splittable, exportable
    tree = json.loads(run_cli("data", "lineage", "fb-sft:v1", "--json", home=home).stdout)
    assert {(p["ref"], p["role"]) for p in tree["parents"]} >= {("faq:v1", "dedup_against")}
    run_cli("data", "split", "fb-sft:v1", "--ratios", "0.5,0.5,0", "--json", home=home)


def test_dpo_export_cli(store: Store, tmp_path: Path) -> None:
    scenario(store)
    args = ["feedback", "export", "--to", "dpo", "--name", "fb-dpo", "--since", "7d", "--json"]
    res = json.loads(run_cli(*args, home=tmp_path / "home").stdout)
    assert res["dataset"] == "fb-dpo:v1" and res["record_kind"] == "preference"
    assert res["skipped"] == {
        "not_below_chosen": 1,  # r2: rated 1.0 beside a correction
        "single_response": 1,  # r5
        "tie": 2,  # r6, r7
        "comment_only": 1,
        "request_log_purged": 1,
    }
    recs = _by_request(load_records(resolve(store, "fb-dpo:v1")))
    got = {
        k: (r["prompt"], r["chosen"], r["rejected"], r["chosen_rating"], r["rejected_rating"])
        for k, r in recs.items()
    }
    assert got == {
        "r1": (Q1, FIX1_MASKED, "保修期是一个月。", None, 0.0),
        "r4 > r3": (Q2, "用校准仪按手册第 4 节操作。", "随便拧一下就好。", 1.0, 0.25),
        "r8": (Q5, "在订单页点击“申请退货”。", "不能退货。", None, 0.0),
        "r11": (Q6, FIX6, "I do not know.", None, None),
    }
    assert meta_of(recs["r11"])["system"] == "请用英文回答。"
    assert sorted(meta_of(recs["r4 > r3"])["model_versions"]) == ["assistant:v1", "assistant:v2"]


def test_keep_system_prompt_and_filters(store: Store) -> None:
    scenario(store)
    cfg = FeedbackExportConfig(to="sft", name="fb", since="7d", keep_system_prompt=True)
    res = run_feedback_export(store, cfg)
    recs = _by_request(load_records(resolve(store, res.dataset)))
    assert recs["r1"]["messages"][0] == {"role": "system", "content": SYSTEM}
    assert recs["r11"]["messages"][0] == {
        "role": "system",
        "content": f"{SYSTEM}\n\n请用英文回答。",
    }
    # all time: r12's old correction too; one version only: v1's corrections
    assert run_feedback_export(store, FeedbackExportConfig(to="sft", name="all")).records == 4
    only_v1 = FeedbackExportConfig(to="sft", name="v1", model_version="assistant:v1")
    res = run_feedback_export(store, only_v1)
    assert res.produced_by == ["assistant:v1"] and res.requests_used == 3  # r1, r8, r12
    # answers rated well become SFT records too when asked
    rated = FeedbackExportConfig(to="sft", name="good", since="7d", min_rating=1.0)
    got = _by_request(load_records(resolve(store, run_feedback_export(store, rated).dataset)))
    # one record per question (the data stage's qa recipe): r1's correction beats r2's answer
    assert set(got) - {"r6", "r7"} == {"r1", "r8", "r11", "r4"} and len(got) == 5
    assert got["r4"]["messages"][-1]["content"] == "用校准仪按手册第 4 节操作。"


def test_nothing_to_export(store: Store, tmp_path: Path) -> None:
    v1 = model_version(store).ref
    deployment(store)
    s = Seed()
    s.add("a", v1, "你好", "你好！", rating=1.0)
    s.add("b", v1, "再见", "再见！", comment="ok")
    s.write(store)
    home = tmp_path / "home"
    p = run_cli("feedback", "export", "--to", "sft", "--name", "x", home=home, check=False)
    assert p.returncode == 2 and "nothing to export to sft" in p.stderr
    assert "no_correction 1" in p.stderr and "comment_only 1" in p.stderr
    p = run_cli("feedback", "export", "--to", "dpo", "--name", "x", home=home, check=False)
    assert p.returncode == 2 and "single_response 1" in p.stderr
    p = run_cli("feedback", "export", "--to", "kto", "--name", "x", home=home, check=False)
    assert p.returncode == 2 and "to" in p.stderr and "Traceback" not in p.stderr
    p = run_cli(
        "feedback", "export", "--to", "sft", "--name", "x", "--dedup-against", "nope",
        home=home, check=False,
    )  # fmt: skip
    assert p.returncode == 2 and "nope" in p.stderr
    p = run_cli("feedback", "export", "--to", "sft", "--name", "x", "--since", "last week",
                home=home, check=False)  # fmt: skip
    assert p.returncode == 2 and "--since" in p.stderr
    assert store.list("dataset") == []
    # everything dropped by cleaning: no version either
    s = Seed()
    s.add("c", v1, "你好", "你好！", correction="您好！")
    s.write(store)
    save_qa(store, [("你好", "您好")], name="faq")
    res = run_feedback_export(store, FeedbackExportConfig(to="sft", name="y", dedup_against="faq"))
    assert res.dataset is None and "cleaning dropped all 1" in (res.message or "")
    assert res.cleaning == {"dedup_against": {"in_training_data": 1}}
    assert [a.name for a in store.list("dataset")] == ["faq"]


@pytest.mark.parametrize("any_store", ["sqlite", "postgresql"], indirect=True)
def test_export_on_both_databases(any_store: Store) -> None:
    scenario(any_store)
    cfg = FeedbackExportConfig(to="dpo", name="fb", since="7d", dedup_against="faq:v1")
    res = run_feedback_export(any_store, cfg)
    assert (res.records, res.cleaning) == (3, {"dedup_against": {"in_training_data": 1}})
    info = resolve(any_store, res.dataset)
    assert sorted(info.meta["feedback"]["request_ids"]) == ["r1", "r11", "r3", "r4"]
    assert {(p.ref, p.role) for p in info.parents} == {
        ("assistant:v1", "produced_by"),
        ("assistant:v2", "produced_by"),
        ("faq:v1", "dedup_against"),
    }
