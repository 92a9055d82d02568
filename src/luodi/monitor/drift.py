"""Prompt drift: are users asking what the model was trained for, and what the knowledge base
can answer?

- **Centroid distance.** A sample (at most `sample`) of recent prompts' user text and of the
  reference prompts (the training dataset of the version that served, or any dataset) are
  embedded; the distance is 1 − cosine between the two mean vectors. Sample means are noisy,
  so the same distance is measured between a random subset of the reference of the recent
  sample's size and the rest of the reference (averaged over a few draws): the *baseline*,
  what "no drift" looks like at this sample size. `ratio` = distance / baseline; about 1 means
  the prompts look like the training data, several times more means they moved away.
- **Out-of-domain rate.** The share of recent prompts whose best dense cosine in a knowledge
  base is below its relevance threshold (luodi.rag.answer.min_score_for): questions the
  knowledge base has nothing on.

The user text of a logged prompt is its last user message (what retrieval runs on); embedding
requests are not prompts and are left out. Samples are drawn with a fixed seed, so the same
data gives the same figures.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import select

from luodi.data.datasets import iter_batches, record_kind
from luodi.data.datasets import resolve as resolve_dataset
from luodi.errors import BadInputError, NotFoundError
from luodi.rag.answer import min_score_for, question_of
from luodi.registry import Registry
from luodi.serve.auth.keys import utc
from luodi.store import ArtifactInfo, Store
from luodi.store.models import RequestLogRow, UsageRow

DEFAULT_EMBEDDER = "e5"
DEFAULT_SAMPLE = 500
BASELINE_DRAWS = 8
MIN_BUCKET = 5
"""Buckets with fewer sampled prompts get no drift point (a centroid of 2 prompts is noise)."""
_SEED = 0
_NOT_PROMPTS = ("embeddings",)

PROMPT_OF: Registry[Callable[[dict[str, Any]], str]] = Registry("record kind for drift")
"""Per record kind: the text of a record that plays the role of a user prompt."""
PROMPT_OF.add("qa", lambda r: question_of(list(r.get("messages") or [])))
PROMPT_OF.add("preference", lambda r: r.get("prompt") or "")
PROMPT_OF.add("text", lambda r: r.get("text") or "")
PROMPT_OF.add("labeled", lambda r: r.get("text") or "")


def user_text(prompt: str) -> str:
    """The user text of a logged prompt: the last user message of a JSON chat, the prompts
    of a JSON list (completions with several prompts), or the text itself."""
    try:
        value = json.loads(prompt)
    except (ValueError, TypeError):
        return prompt.strip()
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        return question_of(value).strip()
    if isinstance(value, list) and all(isinstance(m, str) for m in value):
        return "\n".join(value).strip()
    return prompt.strip()


def _sample(items: list[Any], n: int, seed: int = _SEED) -> list[Any]:
    return items if len(items) <= n else random.Random(seed).sample(items, n)


def recent_prompts(
    store: Store,
    since: datetime,
    until: datetime,
    deployment: str | None = None,
    model_version: str | None = None,
    sample: int = DEFAULT_SAMPLE,
) -> list[tuple[datetime, str]]:
    """(time, user text) of at most `sample` logged prompts of [since, until), drawn at random
    from the newest 20×sample (time order)."""
    q = select(RequestLogRow.at, RequestLogRow.prompt_masked).where(
        RequestLogRow.at >= since,
        RequestLogRow.at < until,
        RequestLogRow.endpoint.not_in(_NOT_PROMPTS),
    )
    if deployment is not None:
        q = q.where(RequestLogRow.deployment == deployment)
    if model_version is not None:
        q = q.where(RequestLogRow.model_version == model_version)
    q = q.order_by(RequestLogRow.at.desc()).limit(20 * sample)
    with store.engine.connect() as conn:
        rows = [(utc(at), user_text(p or "")) for at, p in conn.execute(q)]
    rows = [r for r in rows if r[1]]
    return sorted(_sample(rows, sample), key=lambda r: r[0])


def reference_texts(info: ArtifactInfo, sample: int = DEFAULT_SAMPLE) -> list[str]:
    """At most `sample` prompt texts of dataset version `info` (a uniform reservoir sample)."""
    prompt_of = PROMPT_OF.get(record_kind(info).name)
    rng = random.Random(_SEED)
    kept: list[str] = []
    seen = 0
    for batch in iter_batches(info):
        for rec in batch:
            text = prompt_of(rec).strip()
            if not text:
                continue
            seen += 1
            if len(kept) < sample:
                kept.append(text)
            else:
                j = rng.randrange(seen)
                if j < sample:
                    kept[j] = text
    return kept


def served_version(store: Store, deployment: str, since: datetime, until: datetime) -> str | None:
    """The model version that served most of `deployment`'s requests in the window."""
    q = select(UsageRow.model_version).where(
        UsageRow.deployment == deployment, UsageRow.at >= since, UsageRow.at < until
    )
    with store.engine.connect() as conn:
        counts = Counter(v for (v,) in conn.execute(q))
    return counts.most_common(1)[0][0] if counts else None


def training_dataset(store: Store, model_version: str) -> ArtifactInfo:
    """The dataset a model version was trained on: its parent with role "train", looked for
    through the model versions it was made from (an adapter merged, a version retrained).

    BadInputError saying to pass a reference dataset when there is none (a base model, an
    upstream endpoint)."""
    from luodi.train.versions import resolve_model

    hint = "pass the training data's dataset with --reference (or `reference:` in a rule)"
    try:
        todo = [resolve_model(store, model_version)]
    except (BadInputError, NotFoundError):
        raise BadInputError(
            f"{model_version!r} is not a registered model version, so its training data is "
            f"unknown; {hint}"
        ) from None
    seen: set[tuple[str, str]] = set()
    while todo:
        info = todo.pop(0)
        for p in info.parents:
            if p.kind == "dataset" and p.role == "train":
                return store.resolve(p.ref, "dataset")
        for p in info.parents:
            if p.kind == "model" and (p.kind, p.ref) not in seen:
                seen.add((p.kind, p.ref))
                todo.append(store.resolve(p.ref, "model"))
    raise BadInputError(f"model version {model_version} records no training dataset; {hint}")


def centroid_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 − cosine between the mean vectors of two non-empty sets of vectors."""
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    denom = float(np.linalg.norm(ca) * np.linalg.norm(cb))
    if denom == 0.0:
        return 1.0
    return float(1.0 - float(ca @ cb) / denom)


def baseline_distance(ref: np.ndarray, n: int, draws: int = BASELINE_DRAWS) -> float | None:
    """Mean distance between a random subset of `ref` of size min(n, len/2) and the rest of
    `ref`: the distance sampling noise alone gives. None with fewer than 4 reference vectors."""
    if len(ref) < 4 or n < 1:
        return None
    m = min(n, len(ref) // 2)
    rng = np.random.default_rng(_SEED)
    total = 0.0
    for _ in range(draws):
        perm = rng.permutation(len(ref))
        total += centroid_distance(ref[perm[:m]], ref[perm[m:]])
    return total / draws


class DriftPoint(BaseModel):
    """Drift of the prompts of one time bucket."""

    start: datetime = Field(description="Start of the bucket (UTC).")
    prompts: int = Field(description="Sampled prompts in the bucket.")
    distance: float = Field(description="Centroid distance to the reference.")
    baseline: float | None = Field(description="Baseline at this bucket's sample size.")


class DriftResult(BaseModel):
    """Centroid distance of recent prompts to the reference prompts, with its baseline."""

    deployment: str | None = Field(description="Deployment the prompts were sent to (None: all).")
    model_version: str | None = Field(description="Version whose prompts were taken (None: all).")
    reference: str | None = Field(
        description="The reference dataset version (NAME:vN); None when there were no prompts "
        "to compare and none was named."
    )
    embedder: str = Field(description="Embedder of both samples.")
    since: datetime = Field(description="Start of the window (UTC).")
    until: datetime = Field(description="End of the window (UTC).")
    prompts: int = Field(description="Recent prompts embedded.")
    reference_prompts: int = Field(description="Reference prompts embedded.")
    distance: float | None = Field(description="1 − cos(recent centroid, reference centroid).")
    baseline: float | None = Field(
        description="The distance sampling noise alone gives at this sample size."
    )
    ratio: float | None = Field(description="distance / baseline (about 1: no drift).")
    points: list[DriftPoint] = Field(default_factory=list, description="Drift per time bucket.")


def prompt_drift(
    store: Store,
    since: datetime,
    until: datetime | None = None,
    *,
    deployment: str | None = None,
    model_version: str | None = None,
    reference: str | None = None,
    embedder: str = DEFAULT_EMBEDDER,
    sample: int = DEFAULT_SAMPLE,
    bucket: timedelta | None = None,
) -> DriftResult:
    """Drift of the prompts of [since, until) from `reference` (a dataset; default: the
    training dataset of `model_version`, or of the version that served most of `deployment`).

    BadInputError when no reference is given and none can be found."""
    from luodi.rag.embed import open_embedder

    until = (until or datetime.now(UTC)).astimezone(UTC)
    if sample < 2:
        raise BadInputError("the drift sample must be at least 2 prompts")
    recent = recent_prompts(store, since, until, deployment, model_version, sample)
    empty = DriftResult(
        deployment=deployment,
        model_version=model_version,
        reference=reference,
        embedder=embedder,
        since=since,
        until=until,
        prompts=0,
        reference_prompts=0,
        distance=None,
        baseline=None,
        ratio=None,
    )
    if not recent and reference is None:  # no traffic: nothing to measure, nothing to resolve
        return empty
    if reference is not None:
        ref_info = resolve_dataset(store, reference)
    else:
        version = model_version
        if version is None and deployment is not None:
            version = served_version(store, deployment, since, until)
        if version is None:
            raise BadInputError(
                "no reference dataset: pass --reference DATASET, or a deployment or model "
                "version that served requests in the window (its training data is the reference)"
            )
        ref_info = training_dataset(store, version)
    ref_texts = reference_texts(ref_info, sample)
    if not ref_texts:
        raise BadInputError(f"dataset {ref_info.ref} holds no prompt text to compare with")
    result = empty.model_copy(
        update={
            "reference": ref_info.ref,
            "prompts": len(recent),
            "reference_prompts": len(ref_texts),
        }
    )
    if not recent:
        return result
    emb = open_embedder(embedder)
    ref_vecs = emb.embed_queries(ref_texts)
    vecs = emb.embed_queries([t for _, t in recent])
    result.distance = centroid_distance(vecs, ref_vecs)
    result.baseline = baseline_distance(ref_vecs, len(recent))
    if result.baseline:
        result.ratio = result.distance / result.baseline
    if bucket is not None:
        result.points = _points(recent, vecs, ref_vecs, since, bucket)
    return result


def _points(
    recent: list[tuple[datetime, str]],
    vecs: np.ndarray,
    ref_vecs: np.ndarray,
    since: datetime,
    bucket: timedelta,
) -> list[DriftPoint]:
    groups: dict[int, list[int]] = {}
    for i, (at, _) in enumerate(recent):
        groups.setdefault(int((at - since) / bucket), []).append(i)
    return [
        DriftPoint(
            start=since + b * bucket,
            prompts=len(idx),
            distance=centroid_distance(vecs[idx], ref_vecs),
            baseline=baseline_distance(ref_vecs, len(idx)),
        )
        for b, idx in sorted(groups.items())
        if len(idx) >= MIN_BUCKET
    ]


class OodResult(BaseModel):
    """Share of recent prompts a knowledge base has nothing relevant for."""

    kb: str = Field(description="The knowledge-base version searched (NAME:vN).")
    embedder: str = Field(description="The knowledge base's embedder.")
    threshold: float = Field(description="Dense cosine below which a prompt is out of domain.")
    prompts: int = Field(description="Prompts checked.")
    out_of_domain: int = Field(description="Prompts whose best cosine is below the threshold.")
    rate: float | None = Field(description="out_of_domain / prompts (None: no prompts).")
    examples: list[str] = Field(
        default_factory=list, description="A few out-of-domain prompts (masked), to read."
    )


def ood_rate(store: Store, kb: str, texts: list[str], min_score: float | None = None) -> OodResult:
    """Out-of-domain share of `texts` against knowledge base `kb` (its relevance threshold:
    `min_score`, else the embedder's default). BadInputError when the knowledge base is empty
    or its embedder has no default threshold and none is given."""
    from luodi.rag.kb_search import open_kb

    base = open_kb(store, kb)
    threshold = min_score_for(base.config.embedder, min_score)
    if threshold is None:
        raise BadInputError(
            f"embedder {base.config.embedder!r} of {base.info.ref} has no default relevance "
            "threshold; pass one with --min-score (or `min_score:` in a rule)"
        )
    if base.retriever is None:
        raise BadInputError(f"knowledge base {base.info.ref} has no documents to compare with")
    out = OodResult(
        kb=base.info.ref,
        embedder=base.config.embedder,
        threshold=threshold,
        prompts=len(texts),
        out_of_domain=0,
        rate=None,
    )
    if not texts:
        return out
    vecs = base.retriever.embedder.embed_queries(texts)
    hits = base.retriever.vectors.search(vecs, 1)
    best = [h[0].score if h else -1.0 for h in hits]
    ood = [t for t, s in zip(texts, best, strict=True) if s < threshold]
    out.out_of_domain = len(ood)
    out.rate = len(ood) / len(texts)
    out.examples = [t[:200] for t in ood[:5]]
    return out
