"""Prompt drift and out-of-domain rate with the real minilm embedder: prompts like the
training data sit near the sampling-noise baseline, off-domain prompts clearly above it; the
out-of-domain rate equals a brute-force numpy computation over the knowledge base's chunks."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from luodi.errors import BadInputError
from luodi.monitor import drift as D
from luodi.monitor.rules import check, parse_rules
from luodi.rag.answer import min_score_for
from luodi.rag.chunk import ChunkConfig
from luodi.rag.embed import open_embedder
from luodi.rag.kb import add_documents, create_kb
from luodi.rag.kb_models import KBConfig
from luodi.rag.kb_search import open_kb
from luodi.store import Store
from tests.helpers import save_qa
from tests.monitor.seed import Seeded, request, write

SUBJECTS = [
    "VPN password", "laptop", "email account", "annual leave", "expense report", "payroll",
    "printer", "office badge", "sick leave", "travel reimbursement", "Wi-Fi", "software license",
]  # fmt: skip
TEMPLATES = [
    "How do I reset my {}?", "Who approves my {}?", "Where is the company policy on {}?",
    "What is the process to request {}?", "My {} is not working, what should I do?",
]  # fmt: skip
OFF_SUBJECTS = [
    "chocolate cake", "pasta sauce", "football match", "guitar chords", "sourdough bread",
    "marathon training", "tomato plants", "chess openings",
]  # fmt: skip
OFF_TEMPLATES = [
    "What is the best recipe for {}?", "Any tips for getting better at {}?",
    "Tell me a fun fact about {}.",
]  # fmt: skip

IN_DOMAIN = [t.format(s) for t, s in itertools.product(TEMPLATES, SUBJECTS)]
OFF_DOMAIN = [t.format(s) for t, s in itertools.product(OFF_TEMPLATES, OFF_SUBJECTS)]


def _log(store: Store, deployment: str, version: str, prompts: list[str], now: datetime) -> None:
    s = Seeded()
    for i, p in enumerate(prompts):
        at = now - timedelta(minutes=30) + timedelta(seconds=i)
        request(s, f"{deployment}-{i}", at, deployment, version, latency=10.0, prompt=p)
    write(store, s)


@pytest.fixture
def drifting(store: Store) -> tuple[Store, datetime]:
    """Reference: the even in-domain questions as a qa dataset, parent (role train) of model
    version m:v1; deployment `same` got the odd in-domain questions, `off` off-domain ones."""
    ds = save_qa(store, [(q, "See the handbook.") for q in IN_DOMAIN[::2]], name="faq")
    with store.create("model", "m", parents=[(store.resolve(ds, "dataset"), "train")]) as d:
        (d.path / "README").write_text("a model version for the test")
    now = datetime.now(UTC)
    _log(store, "same", "m:v1", IN_DOMAIN[1::2], now)
    _log(store, "off", "m:v1", OFF_DOMAIN, now)
    return store, now


def test_drift_small_for_same_domain_large_for_off_domain(
    drifting: tuple[Store, datetime],
) -> None:
    store, now = drifting
    since = now - timedelta(hours=1)
    same = D.prompt_drift(store, since, now, deployment="same", embedder="minilm", sample=100)
    off = D.prompt_drift(store, since, now, deployment="off", embedder="minilm", sample=100)
    # the reference is found through the served version's lineage (role "train")
    assert same.reference == off.reference == "faq:v1"
    assert (same.prompts, off.prompts, same.reference_prompts) == (30, 24, 30)
    assert same.baseline is not None and off.baseline is not None
    assert same.ratio is not None and off.ratio is not None
    assert same.ratio < 3, same
    assert off.distance > 3 * same.distance, (same, off)
    assert off.ratio > 3 * same.ratio
    # distance recomputed from the embeddings directly
    emb = open_embedder("minilm")
    rv = emb.embed_queries(IN_DOMAIN[::2]).mean(axis=0)
    ov = emb.embed_queries(OFF_DOMAIN).mean(axis=0)
    want = 1 - float(rv @ ov) / float(np.linalg.norm(rv) * np.linalg.norm(ov))
    assert off.distance == pytest.approx(want, abs=1e-5)


def test_drift_needs_a_reference(store: Store) -> None:
    now = datetime.now(UTC)
    _log(store, "plain", "openai:http://x/v1#m", ["hi"], now)
    with pytest.raises(BadInputError, match="--reference"):
        D.prompt_drift(store, now - timedelta(hours=1), now, deployment="plain")
    with pytest.raises(BadInputError, match="--reference"):
        D.prompt_drift(store, now - timedelta(hours=1), now)


def test_user_text_of_logged_prompts() -> None:
    chat = (
        '[{"role": "system", "content": "s"}, {"role": "user", "content": " q1 "}, '
        '{"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}]'
    )
    assert D.user_text(chat) == "q2"
    assert D.user_text('["p1", "p2"]') == "p1\np2"
    assert D.user_text("plain completion prompt") == "plain completion prompt"


def test_ood_rate_against_brute_force(drifting: tuple[Store, datetime], tmp_path: Path) -> None:
    store, now = drifting
    doc = tmp_path / "handbook.md"
    doc.write_text(
        "# IT and HR handbook\n\n"
        + "\n\n".join(
            f"## {s}\n\nTo get help with your {s}, open a ticket on the service desk portal; "
            f"your manager approves requests about {s} within two working days."
            for s in SUBJECTS
        ),
        encoding="utf-8",
    )
    create_kb(store, KBConfig(name="handbook", embedder="minilm", chunk=ChunkConfig(size=200)))
    add_documents(store, "handbook", [doc])
    prompts = IN_DOMAIN[1::2] + OFF_DOMAIN
    res = D.ood_rate(store, "handbook", prompts)
    threshold = min_score_for("minilm", None)  # the knowledge base's own relevance threshold
    assert res.threshold == threshold and res.prompts == len(prompts)
    kb = open_kb(store, "handbook")
    emb = open_embedder("minilm")
    chunks = emb.embed_passages([c.text for c in kb.chunks.values()])
    best = (emb.embed_queries(prompts) @ chunks.T).max(axis=1)
    assert res.out_of_domain == int((best < threshold).sum())
    off_best = best[len(IN_DOMAIN[1::2]) :]
    in_best = best[: len(IN_DOMAIN[1::2])]
    assert (off_best < 0.3).mean() > 0.8 and (in_best < 0.3).mean() < 0.3
    # the same through a rule, scoped to the off-domain deployment
    spec = parse_rules(
        {
            "rules": [
                {
                    "name": "ood",
                    "metric": "ood_rate",
                    "op": ">",
                    "value": 0.5,
                    "kb": "handbook",
                    "deployment": "off",
                },
                {
                    "name": "drift",
                    "metric": "prompt_drift_ratio",
                    "op": ">",
                    "value": 3,
                    "deployment": "off",
                    "embedder": "minilm",
                },
                {
                    "name": "drift-same",
                    "metric": "prompt_drift_ratio",
                    "op": ">",
                    "value": 3,
                    "deployment": "same",
                    "embedder": "minilm",
                },
                {"name": "bad-kb", "metric": "ood_rate", "op": ">", "value": 0.5, "kb": "nope"},
            ]
        }
    )
    by = {r.name: r for r in check(store, spec, now=now).results}
    assert by["ood"].breached and by["ood"].value == pytest.approx((off_best < 0.3).mean())
    assert by["drift"].breached and not by["drift-same"].breached
    assert by["bad-kb"].error and "nope" in by["bad-kb"].error and not by["bad-kb"].breached
