"""Bootstrap confidence intervals for a metric and for the difference between two runs.

Percentile bootstrap with a seeded numpy Generator: the same inputs, `n` and `seed` always
give the same interval. When both runs scored the same items the difference is paired
(resample items, take the statistic of b minus the statistic of a on the same resample),
which removes the item-difficulty variance the runs share and so detects much smaller
changes than comparing two independent samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from luodi.errors import BadInputError

# Reduces along `axis` like the numpy reductions (np.mean, np.median, ...).
Stat = Callable[..., Any]

# Resamples are drawn in blocks so n × items index arrays never exceed ~4M entries.
_BLOCK_ENTRIES = 4_000_000


class CI(BaseModel):
    """A statistic of one sample with its bootstrap confidence interval."""

    value: float = Field(description="The statistic on the whole sample.")
    low: float = Field(description="Lower bound of the interval.")
    high: float = Field(description="Upper bound of the interval.")
    n: int = Field(description="Number of values in the sample.")
    confidence: float = Field(description="Confidence level of the interval, e.g. 0.95.")


class DiffCI(BaseModel):
    """stat(b) − stat(a) with its bootstrap confidence interval."""

    diff: float = Field(description="stat(b) − stat(a) on the whole samples.")
    low: float = Field(description="Lower bound of the interval of the difference.")
    high: float = Field(description="Upper bound of the interval of the difference.")
    significant: bool = Field(
        description="The interval excludes 0 (and each sample has at least 2 values)."
    )
    paired: bool = Field(description="Items were resampled jointly (same items in a and b).")
    n_a: int = Field(description="Number of values in a.")
    n_b: int = Field(description="Number of values in b.")
    confidence: float = Field(description="Confidence level of the interval, e.g. 0.95.")


def _values(name: str, values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise BadInputError(f"{name}: need a non-empty list of numbers, got {arr.size} values")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise BadInputError(f"{name}: {bad} of {arr.size} values are NaN or infinite")
    return arr


def _check(n: int, confidence: float) -> None:
    if n < 1:
        raise BadInputError(f"the number of bootstrap resamples must be at least 1, got {n}")
    if not 0 < confidence < 1:
        raise BadInputError(f"confidence must be between 0 and 1, got {confidence}")


def _resampled(
    arrays: Sequence[np.ndarray], rng: np.random.Generator, n: int, stat: Stat
) -> np.ndarray:
    """stat over `n` resamples of `arrays`, which share one index draw (paired) when given
    together; returns one row of n statistics per array."""
    size = arrays[0].size
    block = max(1, _BLOCK_ENTRIES // size)
    out = np.empty((len(arrays), n), dtype=np.float64)
    for start in range(0, n, block):
        stop = min(n, start + block)
        idx = rng.integers(0, size, size=(stop - start, size))
        for k, arr in enumerate(arrays):
            out[k, start:stop] = stat(arr[idx], axis=1)
    return out


def _bounds(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[float],
    *,
    n: int = 2000,
    seed: int = 0,
    stat: Stat = np.mean,
    confidence: float = 0.95,
) -> CI:
    """Percentile bootstrap interval of `stat(values)` from `n` resamples with replacement.

    `stat` reduces along `axis` like np.mean. Deterministic for a given `seed`. Empty input,
    NaN/inf values, n < 1 or a confidence outside (0, 1) raise BadInputError.
    """
    _check(n, confidence)
    arr = _values("values", values)
    rng = np.random.default_rng(seed)
    low, high = _bounds(_resampled([arr], rng, n, stat)[0], confidence)
    return CI(
        value=float(stat(arr, axis=0)), low=low, high=high, n=int(arr.size), confidence=confidence
    )


def bootstrap_diff(
    a: Sequence[float],
    b: Sequence[float],
    *,
    paired: bool = True,
    n: int = 2000,
    seed: int = 0,
    stat: Stat = np.mean,
    confidence: float = 0.95,
) -> DiffCI:
    """Percentile bootstrap interval of `stat(b) − stat(a)`.

    paired=True: `a[i]` and `b[i]` are scores of the same item (lengths must match); each
    resample draws item indices once and applies them to both. paired=False: a and b are
    resampled independently (different items or different sizes). `significant` is True when
    the interval excludes 0 and each side has at least 2 values (one value says nothing
    about variance). Deterministic for a given `seed`; bad input raises BadInputError.
    """
    _check(n, confidence)
    xa, xb = _values("a", a), _values("b", b)
    rng = np.random.default_rng(seed)
    if paired:
        if xa.size != xb.size:
            raise BadInputError(
                f"paired bootstrap needs scores of the same items: a has {xa.size}, "
                f"b has {xb.size} values"
            )
        sa, sb = _resampled([xa, xb], rng, n, stat)
    else:
        sa = _resampled([xa], rng, n, stat)[0]
        sb = _resampled([xb], rng, n, stat)[0]
    low, high = _bounds(sb - sa, confidence)
    enough = xa.size >= 2 and xb.size >= 2
    return DiffCI(
        diff=float(stat(xb, axis=0) - stat(xa, axis=0)),
        low=low,
        high=high,
        significant=bool(enough and (low > 0 or high < 0)),
        paired=paired,
        n_a=int(xa.size),
        n_b=int(xb.size),
        confidence=confidence,
    )
