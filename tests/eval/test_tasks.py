"""Eval tasks on a tiny model trained (SFT) to memorise answers: choice, generate, classify,
perplexity; batched scoring against a one-sequence-at-a-time reference; malformed rows."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from luodi.config import Settings
from luodi.data.datasets import save_dataset
from luodi.data.records import get_kind, make_record
from luodi.data.report import DatasetReport
from luodi.errors import BadInputError
from luodi.eval import metrics as M
from luodi.eval import open_target, parse_suite, run_eval
from luodi.eval.targets import LocalCausalTarget
from luodi.eval.tasks.classify import DEFAULT_TEMPLATE as CLASSIFY_TEMPLATE
from luodi.store import Store
from luodi.train import TrainConfig, run_train

SEEN = [
    ("What colour is the sky on a clear day?", ["green", "blue", "red", "black"], "B", "science"),
    ("How many legs does a spider have?", ["six", "four", "eight", "ten"], "C", "science"),
    (
        "Which metal is liquid at room temperature?",
        ["mercury", "iron", "gold", "zinc"],
        "A",
        "science",
    ),
    ("What gas do plants absorb?", ["oxygen", "helium", "neon", "carbon dioxide"], "D", "science"),
    ("What freezes at zero degrees?", ["water", "oil", "salt", "sand"], "A", "science"),
    ("Which planet is red?", ["Venus", "Mars", "Jupiter", "Saturn"], "B", "science"),
    ("中国的首都是哪里？", ["上海", "北京", "广州", "深圳"], "B", "geo"),
    ("长江流入哪个海？", ["东海", "南海", "渤海", "黄海"], "A", "geo"),
    ("Which is the largest ocean?", ["Atlantic", "Indian", "Arctic", "Pacific"], "D", "geo"),
    ("Which continent is Egypt in?", ["Asia", "Europe", "Africa", "Oceania"], "C", "geo"),
    ("黄河的颜色通常是？", ["黄色", "蓝色", "绿色", "红色"], "A", "geo"),
    ("Which country has Paris?", ["Spain", "Italy", "France", "Japan"], "C", "geo"),
]
# Never trained on; answers balanced so any constant guess scores 0.25.
UNSEEN = [
    ("Who wrote Hamlet?", ["Shakespeare", "Dickens", "Austen", "Tolstoy"], "A"),
    ("What is 7 times 6?", ["36", "42", "48", "54"], "B"),
    ("Which animal barks?", ["cat", "cow", "dog", "bird"], "C"),
    ("What is frozen rain called?", ["fog", "dew", "mist", "hail"], "D"),
    ("哪种动物会飞？", ["鸟", "鱼", "牛", "马"], "A"),
    ("一年有几个月？", ["十", "十二", "十一", "九"], "B"),
    ("Which fruit is yellow?", ["grape", "plum", "banana", "cherry"], "C"),
    ("What do bees make?", ["milk", "silk", "wool", "honey"], "D"),
    ("Which shape has three sides?", ["triangle", "square", "circle", "hexagon"], "A"),
    ("太阳从哪边升起？", ["西", "东", "南", "北"], "B"),
    ("Which season is coldest?", ["spring", "summer", "winter", "autumn"], "C"),
    ("What is H2O?", ["salt", "sugar", "air", "water"], "D"),
]
QA = [
    ("What are the office hours?", "Monday to Friday, 9am to 6pm."),
    ("How do I reset my password?", "Open Settings, choose Security, then Reset."),
    ("年假有多少天？", "入职满一年后每年十五天年假。"),
    ("报销需要什么材料？", "发票原件和审批单。"),
    ("Where is the VPN guide?", "On the intranet under IT."),
    ("食堂几点开门？", "早上七点半开门。"),
]
TICKETS = [
    ("My invoice is wrong", "billing"),
    ("I was charged twice", "billing"),
    ("Refund my payment", "billing"),
    ("The app crashes on start", "bug"),
    ("Button does nothing", "bug"),
    ("Error 500 on login", "bug"),
    ("How do I export data?", "question"),
    ("Where is the manual?", "question"),
]
LABELS = ["billing", "bug", "question"]


def choice_prompt(question: str, options: list[str]) -> str:
    """The choice task's default prompt, written out by hand."""
    lines = "\n".join(f"{letter}. {o}" for letter, o in zip("ABCD", options, strict=True))
    return f"{question}\n{lines}\nAnswer:"


def labeled(store: Store, name: str, rows: list[dict[str, Any]]) -> str:
    """A labeled dataset; each row: text, label, optional meta, split and location."""
    kind = get_kind("labeled")
    recs = []
    for i, r in enumerate(rows):
        rec = make_record(
            kind,
            source=f"/{name}.csv",
            source_sha256="0" * 64,
            location=r.get("location", f"row {i + 2}"),
            ordinal=0,
            meta=r.get("meta"),
            text=r["text"],
            label=r["label"],
        )
        rec["split"] = r.get("split")
        recs.append(rec)
    report = DatasetReport(name=name, stage="ingest", record_kind="labeled")
    return save_dataset(store, report, [recs]).dataset


def choice_rows(items: list[tuple[Any, ...]], split: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for item in items:
        q, opts, answer = item[:3]
        meta: dict[str, Any] = dict(zip("ABCD", opts, strict=True))
        if len(item) > 3:
            meta["subject"] = item[3]
        rows.append({"text": q, "label": answer, "meta": meta, "split": split})
    return rows


def qa_dataset(store: Store, name: str, pairs: list[tuple[str, str]]) -> str:
    kind = get_kind("qa")
    recs = [
        make_record(
            kind,
            source=f"/{name}.jsonl",
            source_sha256="0" * 64,
            location=f"line {i + 1}",
            ordinal=0,
            messages=[{"role": "user", "content": q}, {"role": "assistant", "content": a}],
        )
        for i, (q, a) in enumerate(pairs)
    ]
    return save_dataset(
        store, DatasetReport(name=name, stage="ingest", record_kind="qa"), [recs]
    ).dataset


def text_dataset(store: Store, name: str, texts: list[str]) -> str:
    kind = get_kind("text")
    recs = [
        make_record(
            kind,
            source="/t.txt",
            source_sha256="1" * 64,
            location=f"line {i + 1}",
            ordinal=0,
            text=t,
        )
        for i, t in enumerate(texts)
    ]
    return save_dataset(
        store, DatasetReport(name=name, stage="ingest", record_kind="text"), [recs]
    ).dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, str]]:
    """A store with the eval datasets and a tiny model that memorised all of their answers."""
    store = Store(Settings(home=tmp_path_factory.mktemp("eval-home")))
    labels = ", ".join(LABELS)
    pairs = [(choice_prompt(q, o), a) for q, o, a, _ in SEEN] + QA
    pairs += [(CLASSIFY_TEMPLATE.format(labels=labels, text=t), lab) for t, lab in TICKETS]
    qa_dataset(store, "memory", pairs)
    cfg = TrainConfig(
        stage="sft",
        base="tiny:test",
        dataset="memory",
        method="full",
        val_ratio=0.0,
        batch_size=13,
        max_steps=70,
        learning_rate=4e-3,
        scheduler="constant",
        cutoff_len=128,
        tiny_vocab_size=500,
        seed=0,
    )
    model = run_train(store, cfg).model
    labeled(store, "mc", choice_rows(SEEN))
    labeled(store, "mc-unseen", choice_rows(UNSEEN))
    qa_dataset(store, "faq", QA)
    labeled(store, "tickets", [{"text": t, "label": lab} for t, lab in TICKETS])
    yield store, model
    store.close()


def results(run_path: str) -> dict[str, Any]:
    return json.loads((Path(run_path) / "results.json").read_text(encoding="utf-8"))


def test_choice_memorised_near_perfect_unseen_near_chance(trained: tuple[Store, str]) -> None:
    store, model = trained
    suite = parse_suite(
        {
            "name": "mc-suite",
            "tasks": [
                {"task": "choice", "dataset": "mc", "name": "seen", "batch_size": 5},
                {"task": "choice", "dataset": "mc-unseen", "name": "unseen"},
            ],
        }
    )
    res = run_eval(store, model, suite)
    seen, unseen = res.tasks
    assert seen.metrics["accuracy"] >= 0.9
    assert unseen.metrics["accuracy"] <= 0.6
    assert seen.counts.scored == len(SEEN) and seen.counts.errors == 0
    body = results(res.path)["tasks"]
    items = body["seen"]["items"]
    # Per item: the prediction is the option with the highest log-likelihood.
    for it in items:
        best = max(it["logprobs"], key=it["logprobs"].get)
        assert it["prediction"] == best
        assert it["scores"]["accuracy"] == float(best == it["reference"])
    per = body["seen"]["details"]["per_subject"]
    for subject in ("science", "geo"):
        mine = [it["scores"]["accuracy"] for it in items if it["subject"] == subject]
        assert per[subject] == {"accuracy": sum(mine) / len(mine), "n": 6}
    assert body["seen"]["metrics"]["accuracy"] == sum(it["scores"]["accuracy"] for it in items) / 12


def test_choice_malformed_rows_reported_and_excluded(trained: tuple[Store, str]) -> None:
    store, model = trained
    rows = choice_rows(SEEN[:4])
    rows.append(
        {
            "text": "Broken?",
            "label": "A",
            "meta": {"A": "x", "B": "y", "D": "z"},
            "location": "row 7",
        }
    )
    rows.append(
        {
            "text": "Bad key?",
            "label": "E",
            "meta": {"A": "1", "B": "2", "C": "3", "D": "4"},
            "location": "row 8",
        }
    )
    rows.append(
        {"text": "Lower key ok", "label": "b", "meta": dict(zip("abcd", SEEN[0][1], strict=True))}
    )
    ds = labeled(store, "mc-bad", rows)
    suite = parse_suite({"name": "bad", "tasks": [{"task": "choice", "dataset": ds}]})
    (task,) = run_eval(store, model, suite).tasks
    assert (task.counts.records, task.counts.scored) == (7, 5)
    assert (task.counts.skipped, task.counts.errors) == (1, 1)
    by_loc = {p.location: p for p in task.problems}
    assert by_loc["row 7"].kind == "skipped" and "missing option(s) C" in by_loc["row 7"].reason
    assert (
        by_loc["row 8"].kind == "error" and "'E' is not among the choices" in by_loc["row 8"].reason
    )
    assert all(p.id for p in task.problems)


def test_choice_few_shot_uses_dev_split_same_subject_first(trained: tuple[Store, str]) -> None:
    store, model = trained
    rows = choice_rows(SEEN[:2], split="test") + choice_rows(
        [SEEN[6], SEEN[7], SEEN[2], SEEN[3]], split="dev"
    )
    ds = labeled(store, "mc-split", rows)
    suite = parse_suite({"name": "fs", "tasks": [{"task": "choice", "dataset": ds, "few_shot": 2}]})
    res = run_eval(store, model, suite)
    assert res.tasks[0].split == "test" and res.tasks[0].counts.records == 2
    run = json.loads((Path(res.path) / "run.json").read_text(encoding="utf-8"))
    example = run["prompts"]["choice"]["example"]
    # Two solved examples (science ones: the first test item's subject) then the question.
    assert [m["role"] for m in example] == ["user", "assistant", "user", "assistant", "user"]
    assert example[0]["content"] == choice_prompt(*SEEN[2][:2]) and example[1]["content"] == "A"
    assert example[2]["content"] == choice_prompt(*SEEN[3][:2]) and example[3]["content"] == "D"
    assert example[4]["content"] == choice_prompt(*SEEN[0][:2])
    plain = labeled(store, "mc-nodev", choice_rows(SEEN[:2]))
    with pytest.raises(BadInputError, match="dev split"):
        run_eval(
            store,
            model,
            parse_suite(
                {"name": "fs", "tasks": [{"task": "choice", "dataset": plain, "few_shot": 1}]}
            ),
        )


def test_generate_memorised_answers(trained: tuple[Store, str]) -> None:
    store, model = trained
    suite = parse_suite(
        {
            "name": "gen",
            "tasks": [
                {"task": "generate", "dataset": "faq", "batch_size": 4, "max_new_tokens": 40}
            ],
        }
    )
    res = run_eval(store, model, suite)
    (task,) = res.tasks
    assert task.metrics["exact_match"] >= 5 / 6
    items = results(res.path)["tasks"]["generate"]["items"]
    assert [it["reference"] for it in items] == [a for _, a in QA]
    for it in items:
        assert it["scores"] == {
            "exact_match": M.exact_match(it["prediction"], it["reference"]),
            "token_f1": M.token_f1(it["prediction"], it["reference"]),
            "rouge_l": M.rouge_l(it["prediction"], it["reference"]),
        }
    preds, refs = [it["prediction"] for it in items], [it["reference"] for it in items]
    assert task.metrics["bleu"] == M.bleu(preds, refs) and task.metrics["chrf"] == M.chrf(
        preds, refs
    )
    assert task.metrics["token_f1"] == pytest.approx(
        sum(it["scores"]["token_f1"] for it in items) / 6
    )


def test_classify_with_a_causal_lm_by_loglikelihood(trained: tuple[Store, str]) -> None:
    store, model = trained
    suite = parse_suite({"name": "cls", "tasks": [{"task": "classify", "dataset": "tickets"}]})
    res = run_eval(store, model, suite)
    (task,) = res.tasks
    body = results(res.path)["tasks"]["classify"]
    y_true = [it["reference"] for it in body["items"]]
    y_pred = [it["prediction"] for it in body["items"]]
    report = M.classification_report(y_true, y_pred, labels=LABELS)
    assert task.metrics == {
        "accuracy": report["accuracy"],
        "macro_precision": report["macro_precision"],
        "macro_recall": report["macro_recall"],
        "macro_f1": report["macro_f1"],
    }
    assert body["details"]["report"]["confusion_matrix"] == report["confusion_matrix"]
    assert task.metrics["accuracy"] >= 0.75


def _reference_loglik(model: Any, ids: list[int], n_cont: int) -> float:
    """log P(last n_cont tokens | the rest), one unpadded sequence, full logits."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    return float(sum(logp[p - 1, ids[p]] for p in range(len(ids) - n_cont, len(ids))))


def test_batched_loglikelihood_equals_one_sequence_reference(trained: tuple[Store, str]) -> None:
    store, model = trained
    target = open_target(store, model, batch_size=3)
    assert isinstance(target, LocalCausalTarget)
    tok = target.tokenizer
    chat = [{"role": "user", "content": choice_prompt(*SEEN[0][:2])}]
    contexts: list[Any] = [chat, chat, "The sky is", "短", "Office hours are ", chat, chat]
    conts = [
        "B",
        "D",
        " blue and wide today",
        "文本内容很长",
        "Monday to Friday",
        "B and more",
        "A",
    ]
    got = target.loglikelihood(contexts, conts)
    for ctx, cont, value in zip(contexts, conts, got, strict=True):
        # Context and continuation tokenized apart (spaces ending the context move over).
        if isinstance(ctx, str):
            head = ctx.rstrip(" ")
            c_ids = tok(head).input_ids
            cont = ctx[len(head) :] + cont
        else:
            c_ids = tok.apply_chat_template(
                ctx, tokenize=True, add_generation_prompt=True, return_dict=False
            )
        full = [*c_ids, *tok(cont, add_special_tokens=False).input_ids]
        ref = _reference_loglik(target.model, full, len(full) - len(c_ids))
        assert value == pytest.approx(ref, abs=1e-4)
    texts = ["Monday to Friday, 9am to 6pm.", "入职满一年后每年十五天年假。", "x"]
    for text, (total, count) in zip(texts, target.loglikelihood_rolling(texts), strict=True):
        ids = [tok.eos_token_id, *tok(text).input_ids]
        assert count == len(ids) - 1
        assert total == pytest.approx(_reference_loglik(target.model, ids, count), abs=1e-4)


def test_perplexity_token_weighted(trained: tuple[Store, str]) -> None:
    store, model = trained
    texts = [a for _, a in QA[:3]] + ["zq xv kj wp qq zz", ""]
    ds = text_dataset(store, "corpus", texts)
    res = run_eval(
        store, model, parse_suite({"name": "ppl", "tasks": [{"task": "perplexity", "dataset": ds}]})
    )
    (task,) = res.tasks
    assert task.counts.skipped == 1 and task.counts.scored == 4
    items = results(res.path)["tasks"]["perplexity"]["items"]
    nll = -sum(it["logprob"] for it in items) / sum(it["tokens"] for it in items)
    assert task.metrics["nll"] == pytest.approx(nll) and task.metrics[
        "perplexity"
    ] == pytest.approx(math.exp(nll))
    # Memorised answers are far likelier than noise.
    assert max(it["scores"]["nll"] for it in items[:3]) < items[3]["scores"]["nll"]


def test_suite_validation_errors(trained: tuple[Store, str]) -> None:
    store, model = trained
    bad: list[tuple[dict[str, Any], str]] = [
        ({"name": "s", "tasks": [{"task": "nope", "dataset": "mc"}]}, "unknown eval task 'nope'"),
        ({"name": "s", "tasks": [{"task": "choice", "dataset": "mc", "colour": 1}]}, "colour"),
        (
            {
                "name": "s",
                "tasks": [
                    {"task": "choice", "dataset": "mc"},
                    {"task": "choice", "dataset": "mc-unseen"},
                ],
            },
            "distinct `name`",
        ),
        (
            {
                "name": "s",
                "tasks": [{"task": "choice", "dataset": "mc", "template": "{question} {E}"}],
            },
            r"\['E'\]",
        ),
        ({"name": "s", "tasks": []}, "tasks"),
        ({"name": "s/x", "tasks": [{"task": "choice", "dataset": "mc"}]}, "invalid name"),
    ]
    for data, message in bad:
        with pytest.raises(BadInputError, match=message):
            parse_suite(data)
    runtime: list[tuple[dict[str, Any], str]] = [
        ({"task": "generate", "dataset": "mc"}, "needs qa records but dataset mc:v1 holds labeled"),
        ({"task": "choice", "dataset": "mc", "split": "test"}, "no split 'test'"),
        ({"task": "choice", "dataset": "missing"}, "not found"),
    ]
    before = len(store.list("eval_run"))
    for task, message in runtime:
        with pytest.raises(BadInputError, match=message):
            run_eval(store, model, parse_suite({"name": "s", "tasks": [task]}))
    assert len(store.list("eval_run")) == before


def test_every_registered_task_is_described_and_ranks_items_by_a_score_it_writes() -> None:
    from luodi.eval.tasks import TASKS, EvalTask

    names = TASKS.names()
    assert len(names) == 8
    description = EvalTask.model_fields["task"].description or ""
    for name in names:
        assert name in description, name
    # main_score is a per-item score each task writes (see the tasks' `"scores"` dicts).
    assert {n: TASKS.get(n).main_score for n in names} == {
        "choice": "accuracy",
        "classify": "accuracy",
        "efficiency": "latency_s",
        "generate": "token_f1",
        "perplexity": "nll",
        "retrieval": "hybrid.mrr",
        "robustness": "consistency",
        "safety": "refusal_rate",
    }
    assert [n for n in names if TASKS.get(n).measured] == ["efficiency"]
