"""`luodi feedback stats`: how each model version is rated, and what its users complain about.

Per group (model version, deployment or team): requests served (usage rows, kept after the
request logs are purged), feedback given, requests rated, thumbs-down (a request's latest
rating below 0.5 — so a user who clicks twice counts once), its rate among rated requests, the
mean rating and the corrections. Top failing topics: the questions (the client's last user
turn, as masked in the log) of negatively rated requests are embedded (luodi.rag.embed; e5
reads Chinese, minilm is the fast English one) and clustered with k-means, k chosen by the
silhouette score; each topic has its size, its negative rate (positively rated questions
nearer its centre than its own farthest member count as its rated requests too) and the
questions nearest its centre as examples.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from luodi.feedback.source import (
    DeploymentTexts,
    Rated,
    Selection,
    Unusable,
    client_messages,
    load_rated,
)
from luodi.store import Store
from luodi.store.models import UsageRow

GroupBy = Literal["version", "deployment", "team"]
_USAGE_COLUMN = {
    "version": UsageRow.model_version,
    "deployment": UsageRow.deployment,
    "team": UsageRow.team,
}
MIN_SILHOUETTE = 0.1
"""Below this best silhouette the negatives are one topic (no split is clearly better)."""


class GroupStats(BaseModel):
    """Feedback figures of one model version (or deployment, or team)."""

    group: str = Field(description="The model version, deployment or team.")
    requests: int = Field(description="Requests served in the period (usage rows).")
    feedback: int = Field(description="Feedback rows given in the period.")
    rated: int = Field(description="Requests with a rating.")
    thumbs_down: int = Field(description="Rated requests whose latest rating is below 0.5.")
    thumbs_down_rate: float | None = Field(description="thumbs_down / rated (None if none).")
    mean_rating: float | None = Field(description="Mean latest rating on 0–1 (1 = best).")
    corrections: int = Field(description="Requests with a correction.")


class Topic(BaseModel):
    """A cluster of the questions users rated badly."""

    topic: int = Field(description="Topic number, 1 = the largest.")
    size: int = Field(description="Negatively rated requests in it.")
    rated: int = Field(description="Rated requests in it (negatives + nearby positives).")
    negative_rate: float = Field(description="size / rated.")
    examples: list[str] = Field(description="The questions nearest its centre (masked).")
    model_versions: dict[str, int] = Field(description="Negatives per model version.")


class FeedbackStats(BaseModel):
    """Feedback figures per group over [since, until), and the top failing topics."""

    by: str = Field(description="What rows are grouped by.")
    since: datetime | None = Field(description="Start (UTC, inclusive); None = from the start.")
    until: datetime = Field(description="End (UTC, exclusive).")
    rows: list[GroupStats] = Field(description="One row per group, by group.")
    total: GroupStats = Field(description="All groups together.")
    embedder: str | None = Field(description="Embedder of the topic clustering.")
    topics: list[Topic] = Field(description="Failing topics, largest first.")
    negatives_unclustered: int = Field(
        description="Negative requests without a readable question (log purged, not chat)."
    )


def _key(r: Rated, by: str) -> str:
    value = {"version": r.model_version, "deployment": r.deployment, "team": r.team}[by]
    return value or "(unknown)"


def _row(group: str, requests: int, rs: list[Rated]) -> GroupStats:
    ratings = [r.rating for r in rs if r.rating is not None]
    down = sum(r.negative for r in rs)
    return GroupStats(
        group=group,
        requests=requests,
        feedback=sum(len(r.feedback_ids) for r in rs),
        rated=len(ratings),
        thumbs_down=down,
        thumbs_down_rate=down / len(ratings) if ratings else None,
        mean_rating=sum(ratings) / len(ratings) if ratings else None,
        corrections=sum(r.correction is not None for r in rs),
    )


def _requests(store: Store, by: str, sel: Selection, until: datetime) -> Counter[str]:
    col = _USAGE_COLUMN[by]
    q = select(col, func.count()).where(UsageRow.at < until).group_by(col)
    if sel.since is not None:
        q = q.where(UsageRow.at >= sel.since)
    if sel.team is not None:
        q = q.where(UsageRow.team == sel.team)
    if sel.deployment is not None:
        q = q.where(UsageRow.deployment == sel.deployment)
    with store.engine.connect() as conn:
        return Counter({str(g): int(n) for g, n in conn.execute(q)})


def _question(r: Rated, texts: DeploymentTexts) -> str | None:
    try:
        msgs = client_messages(r, texts)
    except Unusable:
        return None
    return msgs[-1]["content"].strip() or None


def _choose_k(x: np.ndarray, max_topics: int) -> np.ndarray:
    """Cluster labels of unit vectors `x`: k-means with the k of the best silhouette."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(x)
    best_labels, best_score = np.zeros(n, dtype=int), MIN_SILHOUETTE
    for k in range(2, min(max_topics, n - 1) + 1):
        labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(x)
        if len(set(labels)) < 2:
            continue
        score = float(silhouette_score(x, labels, metric="cosine"))
        if score > best_score:
            best_labels, best_score = labels, score
    return best_labels


def failing_topics(
    negatives: list[tuple[str, str]],
    positives: list[str],
    embedder: str = "e5",
    max_topics: int = 8,
    examples: int = 3,
) -> list[Topic]:
    """Topics of the (question, model version) pairs rated badly, largest first; `positives`
    are well-rated questions, counted in a topic's rated requests when near enough."""
    if not negatives:
        return []
    from luodi.rag.embed import open_embedder

    emb = open_embedder(embedder)
    x = emb.embed_queries([q for q, _ in negatives])
    labels = _choose_k(x, max_topics) if len(x) > 2 else np.zeros(len(x), dtype=int)
    labels = np.unique(labels, return_inverse=True)[1]  # topics 0..k-1
    pos = emb.embed_queries(positives) if positives else np.zeros((0, x.shape[1]), np.float32)
    centres, radii = [], []
    for t in range(int(labels.max()) + 1):
        members = x[labels == t]
        c = members.mean(axis=0)
        c = c / (np.linalg.norm(c) or 1.0)
        centres.append(c)
        radii.append(float((members @ c).min()))
    centre_m = np.stack(centres)
    near = Counter[int]()
    if len(pos):
        sims = pos @ centre_m.T
        for row in sims:
            t = int(row.argmax())
            if row[t] >= radii[t]:
                near[t] += 1
    topics = []
    for t, c in enumerate(centre_m):
        idx = np.flatnonzero(labels == t)
        order = idx[np.argsort(-(x[idx] @ c))]
        seen: list[str] = []
        for i in order:
            q = negatives[int(i)][0]
            if q not in seen:
                seen.append(q)
            if len(seen) == examples:
                break
        size = len(idx)
        topics.append(
            Topic(
                topic=0,
                size=size,
                rated=size + near[t],
                negative_rate=size / (size + near[t]),
                examples=seen,
                model_versions=dict(Counter(negatives[int(i)][1] for i in idx).most_common()),
            )
        )
    topics.sort(key=lambda tp: (-tp.size, tp.examples[0]))
    for i, tp in enumerate(topics, 1):
        tp.topic = i
    return topics


def feedback_stats(
    store: Store,
    since: datetime | None = None,
    until: datetime | None = None,
    by: GroupBy = "version",
    team: str | None = None,
    deployment: str | None = None,
    embedder: str | None = "e5",
    max_topics: int = 8,
) -> FeedbackStats:
    """Feedback figures per `by` group over [since, until) (until defaults to now) and the
    top failing topics (none when `embedder` is None). Requests are counted from usage rows,
    feedback by when it was given."""
    until = (until or datetime.now(UTC)).astimezone(UTC)
    sel = Selection(since=since, until=until, deployment=deployment, team=team)
    rated = load_rated(store, sel)
    requests = _requests(store, by, sel, until)
    groups: dict[str, list[Rated]] = {}
    for r in rated:
        groups.setdefault(_key(r, by), []).append(r)
    names = sorted(set(groups) | set(requests))
    rows = [_row(g, requests.get(g, 0), groups.get(g, [])) for g in names]
    total = _row("total", sum(requests.values()), rated)
    texts = DeploymentTexts(store)
    negatives: list[tuple[str, str]] = []
    positives: list[str] = []
    unclustered = 0
    for r in rated:
        if r.rating is None:
            continue
        q = _question(r, texts)
        if r.negative:
            if q is None:
                unclustered += 1
            else:
                negatives.append((q, r.model_version or "(unknown)"))
        elif q is not None:
            positives.append(q)
    topics = failing_topics(negatives, positives, embedder, max_topics) if embedder else []
    return FeedbackStats(
        by=by,
        since=since,
        until=until,
        rows=rows,
        total=total,
        embedder=embedder if negatives else None,
        topics=topics,
        negatives_unclustered=unclustered,
    )
