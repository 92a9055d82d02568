"""Routers: tell a domain question from a general one, trained on prompts of both sides.

A router kind (registered in ROUTER_KINDS) fits a scorer on the domain prompts and the
general prompts of a training part; a higher score means "more like the domain". The
threshold is then chosen on a held-out part of both sides, where the router's accuracy is
measured and recorded, so the accuracy in a composite's meta is the accuracy of exactly the
router it stores.

- `embedding`: each text is embedded (luodi.rag.embed; e5 by default, it reads Chinese); the
  score is the mean cosine of the k nearest domain prompts minus that of the k nearest
  general prompts (kNN, k = 3), which copes with a domain made of several topics better than
  one centroid.
- `keyword`: terms (jieba for Chinese, whole words for Latin script, the BM25 analyser) are
  weighted by the smoothed log-odds of appearing in a domain prompt rather than a general
  one; the score is the sum of the weights of a text's distinct known terms (a naive-Bayes
  log-likelihood ratio; unknown terms count 0). Summing was steadier than averaging over
  held-out splits of the tests' data: one strong domain term is not diluted by filler.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from luodi.errors import BadInputError
from luodi.registry import Registry

ROUTER_FILE = "router.json"
MIN_PER_SIDE = 4
KNN = 3


class Scorer(Protocol):
    """A fitted scorer: higher = more like the domain prompts."""

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """One float per text."""
        ...

    def save(self, folder: Path) -> dict[str, Any]:
        """Write its files into `folder`; returns the settings `load` needs."""
        ...


@dataclass(frozen=True)
class RouterKind:
    """How a router kind is fitted and loaded back."""

    fit: Callable[[list[str], list[str], dict[str, Any]], Scorer]
    """(domain prompts, general prompts, settings) -> a fitted scorer."""
    load: Callable[[Path, dict[str, Any]], Scorer]
    """(folder, the settings `save` returned) -> the scorer."""


ROUTER_KINDS: Registry[RouterKind] = Registry("router classifier")


# -- embedding -----------------------------------------------------------------------------
class EmbeddingScorer:
    """kNN cosine margin between the domain and the general training prompts."""

    def __init__(self, embedder: str, domain: np.ndarray, general: np.ndarray, k: int) -> None:
        self.embedder, self.domain, self.general, self.k = embedder, domain, general, k

    def _emb(self) -> Any:
        from luodi.rag.embed import open_embedder

        return open_embedder(self.embedder)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Mean cosine of the k nearest domain prompts minus that of the k nearest general."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        q = self._emb().embed_queries(list(texts))
        return _top_mean(q @ self.domain.T, self.k) - _top_mean(q @ self.general.T, self.k)

    def save(self, folder: Path) -> dict[str, Any]:
        """The training vectors as router.npz."""
        np.savez(folder / "router.npz", domain=self.domain, general=self.general)
        return {"embedder": self.embedder, "k": self.k}


def _top_mean(sims: np.ndarray, k: int) -> np.ndarray:
    k = min(k, sims.shape[1])
    return np.sort(sims, axis=1)[:, -k:].mean(axis=1)


def _fit_embedding(domain: list[str], general: list[str], settings: dict[str, Any]) -> Scorer:
    from luodi.rag.embed import open_embedder

    name = settings.get("embedder") or "e5"
    emb = open_embedder(name)
    vectors = emb.embed_queries(domain + general)
    return EmbeddingScorer(name, vectors[: len(domain)], vectors[len(domain) :], KNN)


def _load_embedding(folder: Path, settings: dict[str, Any]) -> Scorer:
    with np.load(folder / "router.npz") as z:
        domain, general = z["domain"], z["general"]
    return EmbeddingScorer(str(settings["embedder"]), domain, general, int(settings["k"]))


ROUTER_KINDS.add("embedding", RouterKind(_fit_embedding, _load_embedding))


# -- keyword -------------------------------------------------------------------------------
class KeywordScorer:
    """Summed log-odds weights of a text's known terms."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = weights

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Sum of the weights of each text's distinct known terms (0 when none is known)."""
        from luodi.rag.index.bm25 import terms

        out = np.zeros(len(texts), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = sum(self.weights.get(t, 0.0) for t in set(terms(text)))
        return out

    def save(self, folder: Path) -> dict[str, Any]:
        """The weights as keywords.json, most domain-like first."""
        ranked = dict(sorted(self.weights.items(), key=lambda kv: (-kv[1], kv[0])))
        (folder / "keywords.json").write_text(
            json.dumps(ranked, ensure_ascii=False, indent=1), encoding="utf-8"
        )
        return {}


def _fit_keyword(domain: list[str], general: list[str], settings: dict[str, Any]) -> Scorer:
    from luodi.rag.index.bm25 import terms

    # Document frequency (a term counts once per prompt), so one long prompt cannot dominate.
    df_d = Counter(t for p in domain for t in set(terms(p)))
    df_g = Counter(t for p in general for t in set(terms(p)))
    alpha = 0.5  # add-alpha smoothing: a term seen on one side only gets a finite weight
    n_d, n_g = len(domain), len(general)
    weights = {
        t: math.log((df_d[t] + alpha) / (n_d + 2 * alpha))
        - math.log((df_g[t] + alpha) / (n_g + 2 * alpha))
        for t in set(df_d) | set(df_g)
    }
    return KeywordScorer(weights)


def _load_keyword(folder: Path, settings: dict[str, Any]) -> Scorer:
    weights = json.loads((folder / "keywords.json").read_text(encoding="utf-8"))
    return KeywordScorer({str(k): float(v) for k, v in weights.items()})


ROUTER_KINDS.add("keyword", RouterKind(_fit_keyword, _load_keyword))


# -- training and deciding -----------------------------------------------------------------
@dataclass
class Router:
    """A fitted scorer with its threshold: `score >= threshold` means the domain model."""

    kind: str
    scorer: Scorer
    threshold: float

    def decide(self, texts: Sequence[str]) -> list[tuple[bool, float]]:
        """(goes to the domain model, score) for each text."""
        values = self.scorer.scores(list(texts))
        return [(bool(v >= self.threshold), float(v)) for v in values]

    def save(self, folder: Path, metrics: dict[str, Any]) -> None:
        """router.json (kind, threshold, settings, held-out metrics) and the scorer's files."""
        folder.mkdir(parents=True, exist_ok=True)
        settings = self.scorer.save(folder)
        body = {"kind": self.kind, "threshold": self.threshold, "settings": settings}
        (folder / ROUTER_FILE).write_text(
            json.dumps(body | {"heldout": metrics}, ensure_ascii=False, indent=2), encoding="utf-8"
        )


def load_router(folder: Path) -> Router:
    """The router saved in `folder` by Router.save."""
    body = json.loads((folder / ROUTER_FILE).read_text(encoding="utf-8"))
    kind = ROUTER_KINDS.get(body["kind"])
    return Router(body["kind"], kind.load(folder, body.get("settings") or {}), body["threshold"])


def _split(texts: list[str], holdout: float, rng: random.Random) -> tuple[list[str], list[str]]:
    items = list(texts)
    rng.shuffle(items)
    n_out = min(len(items) - 2, max(2, round(len(items) * holdout)))
    return items[n_out:], items[:n_out]


def heldout_metrics(dom: np.ndarray, gen: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, balanced accuracy and per-side recall of `threshold` on held-out scores."""
    hit_d, hit_g = int((dom >= threshold).sum()), int((gen < threshold).sum())
    n = len(dom) + len(gen)
    return {
        "accuracy": round((hit_d + hit_g) / n, 4),
        "balanced_accuracy": round((hit_d / len(dom) + hit_g / len(gen)) / 2, 4),
        "domain_recall": round(hit_d / len(dom), 4),
        "general_recall": round(hit_g / len(gen), 4),
        "domain_items": len(dom),
        "general_items": len(gen),
    }


def choose_threshold(dom: np.ndarray, gen: np.ndarray) -> float:
    """The threshold with the best balanced accuracy on held-out scores (balanced, because
    the two sides' sizes are arbitrary: the general side may be our built-in set); among
    equally good ones, the middle one, which leaves the widest margin on both sides."""
    values = np.unique(np.concatenate([dom, gen]))
    cuts = [float(values[0]) - 1.0]
    cuts += [float(a + b) / 2 for a, b in zip(values[:-1], values[1:], strict=True)]
    cuts.append(float(values[-1]) + 1.0)
    scored = [(heldout_metrics(dom, gen, c)["balanced_accuracy"], c) for c in cuts]
    best = max(s for s, _ in scored)
    tied = [c for s, c in scored if s == best]
    return tied[len(tied) // 2]


def _unique(texts: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in texts if t and t.strip()))


def train_router(
    domain: Sequence[str],
    general: Sequence[str],
    kind: str,
    *,
    settings: dict[str, Any] | None = None,
    holdout: float = 0.25,
    seed: int = 0,
    threshold: float | None = None,
) -> tuple[Router, dict[str, Any]]:
    """(router, held-out metrics): fit a `kind` router on the training part of the domain and
    general prompts (distinct, non-blank) and choose its threshold on the held-out part
    (`holdout` of each side, at least 2), unless `threshold` is given.

    BadInputError for an unknown kind or fewer than MIN_PER_SIDE distinct prompts on a side.
    """
    factory = ROUTER_KINDS.get(kind)
    dom, gen = _unique(domain), _unique(general)
    for side, items in (("domain", dom), ("general", gen)):
        if len(items) < MIN_PER_SIDE:
            raise BadInputError(
                f"a router needs at least {MIN_PER_SIDE} distinct {side} prompts to train and "
                f"check on; got {len(items)}"
            )
    rng = random.Random(seed)
    dom_fit, dom_out = _split(dom, holdout, rng)
    gen_fit, gen_out = _split(gen, holdout, rng)
    scorer = factory.fit(dom_fit, gen_fit, dict(settings or {}))
    held = scorer.scores(dom_out + gen_out)
    d_scores, g_scores = held[: len(dom_out)], held[len(dom_out) :]
    chosen = choose_threshold(d_scores, g_scores) if threshold is None else float(threshold)
    metrics = heldout_metrics(d_scores, g_scores, chosen)
    metrics |= {"train_domain": len(dom_fit), "train_general": len(gen_fit)}
    return Router(kind, scorer, chosen), metrics
