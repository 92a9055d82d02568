"""Known gateway records for the monitoring tests: usage rows, request logs and feedback
written straight into a store's tables (SQLAlchemy core), with the raw values kept so tests
compute the expected signals independently (numpy)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert

from luodi.store import Store
from luodi.store.models import FeedbackRow, RequestLogRow, UsageRow


@dataclass
class Seeded:
    """What was written: rows per table, as dicts."""

    usage: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)


def request(
    s: Seeded,
    rid: str,
    at: datetime,
    deployment: str,
    version: str,
    *,
    latency: float,
    status: int = 200,
    ttft: float | None = None,
    pt: int = 10,
    ct: int = 5,
    prompt: str = "hello",
    guard: list[dict[str, Any]] | None = None,
) -> None:
    """One served request: its usage row and its request log."""
    base = {
        "request_id": rid,
        "at": at,
        "key_id": "k1",
        "team": "default",
        "deployment": deployment,
        "model_version": version,
        "endpoint": "chat.completions",
    }
    s.usage.append(
        {
            **base,
            "prompt_tokens": pt,
            "completion_tokens": ct,
            "latency_ms": latency,
            "ttft_ms": ttft,
            "status": status,
            "error_type": None if status < 400 else "server_error",
        }
    )
    s.logs.append(
        {
            **base,
            "prompt_masked": json.dumps([{"role": "user", "content": prompt}]),
            "response_masked": "ok",
            "retrieved": [],
            "guard": guard or [],
            "status": status,
        }
    )


def rate(s: Seeded, rid: str, at: datetime, rating: float | None) -> None:
    """Feedback on request `rid`."""
    s.feedback.append(
        {
            "request_id": rid,
            "at": at,
            "key_id": "k1",
            "team": "default",
            "rating_raw": None if rating is None else str(rating),
            "scale": "auto",
            "rating": rating,
            "correction": None if rating is not None else "a better answer",
            "comment": None,
        }
    )


def write(store: Store, s: Seeded) -> None:
    """Insert the rows."""
    with store.engine.begin() as conn:
        if s.usage:
            conn.execute(insert(UsageRow), s.usage)
        if s.logs:
            conn.execute(insert(RequestLogRow), s.logs)
        if s.feedback:
            conn.execute(insert(FeedbackRow), s.feedback)


BLOCK = [{"direction": "input", "action": "block", "categories": ["injection"], "matches": []}]
MASK = [{"direction": "output", "action": "mask", "categories": ["pii.phone"], "matches": []}]


def standard(store: Store, now: datetime) -> Seeded:
    """The shared scenario:

    - support / m:v1: 10 requests 30 min ago, latency 10..100 ms, one 500 and one 429,
      TTFT on the first five, two input blocks and one output mask; 4 feedback (1.0, 0.0,
      0.25, and a correction without rating);
    - support / m:v2: 5 requests 20 min ago, latency 200..600, one 503; one rating 0.8;
    - other / x:v1: 4 requests 3 h ago (outside a 1 h window), latency 50 each.
    """
    s = Seeded()
    t1 = now - timedelta(minutes=30)
    for i in range(10):
        status = 500 if i == 3 else 429 if i == 7 else 200
        guard = BLOCK if i in (1, 2) else MASK if i == 4 else None
        request(
            s,
            f"a{i}",
            t1 + timedelta(seconds=i),
            "support",
            "m:v1",
            latency=10.0 * (i + 1),
            status=status,
            ttft=5.0 * (i + 1) if i < 5 else None,
            pt=10 + i,
            ct=5 + i,
            guard=guard,
        )
    t2 = now - timedelta(minutes=20)
    for i in range(5):
        request(
            s,
            f"b{i}",
            t2 + timedelta(seconds=i),
            "support",
            "m:v2",
            latency=200.0 + 100 * i,
            status=503 if i == 0 else 200,
            pt=100,
            ct=50,
        )
    t3 = now - timedelta(hours=3)
    for i in range(4):
        request(s, f"c{i}", t3 + timedelta(seconds=i), "other", "x:v1", latency=50.0)
    for rid, r in (("a0", 1.0), ("a1", 0.0), ("a2", 0.25), ("a5", None)):
        rate(s, rid, now - timedelta(minutes=10), r)
    rate(s, "b1", now - timedelta(minutes=5), 0.8)
    write(store, s)
    return s
