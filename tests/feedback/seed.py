"""Gateway records for the feedback tests, written straight into the store's tables.

Logged prompts are built with the gateway's own functions (the deployment's system prompt
merged with the client's system turn, then the grounding sources), so stripping them is
checked against what the server really records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import insert

from luodi.rag.answer import RagSettings, ground
from luodi.serve import deployments as D
from luodi.serve.chat.service import _merge_system
from luodi.store import ArtifactInfo, Store
from luodi.store.models import FeedbackRow, RequestLogRow, UsageRow

NOW = datetime.now(UTC)
SYSTEM = "你是星河精密的客服助手，回答要简洁。"
DEPLOYMENT = "helpdesk"


def model_version(store: Store, name: str = "assistant") -> ArtifactInfo:
    """Register a (file-less) model version so logged version strings resolve."""
    with store.create("model", name, meta={"method": "lora"}) as draft:
        (draft.path / "weights.txt").write_text("w", encoding="utf-8")
    assert draft.artifact is not None
    return draft.artifact


def deployment(store: Store, system_prompt: str = SYSTEM) -> None:
    """The deployment whose system prompt the logs carry (routes need no real model)."""
    D.apply(
        store,
        D.DeploymentSpec.model_validate(
            {
                "name": DEPLOYMENT,
                "routes": [{"model": "openai:http://fake.invalid/v1#x"}],
                "system_prompt": system_prompt,
            }
        ),
    )


def _hit(text: str) -> SimpleNamespace:
    chunk = SimpleNamespace(text=text, source="manual.md", section="保修", page=None, id="c1")
    return SimpleNamespace(chunk=chunk, score=0.9)


def logged_prompt(
    messages: list[dict[str, str]], system: str | None = SYSTEM, sources: list[str] = ()
) -> str:
    """The prompt_masked the gateway writes for `messages` (chat/service.py + rag ground)."""
    msgs = _merge_system(system, [dict(m) for m in messages])
    if sources:
        msgs = ground(msgs, [_hit(t) for t in sources], RagSettings())
    return json.dumps(msgs, ensure_ascii=False)


@dataclass
class Seed:
    """Rows to write; `add` one request with its feedback, `write` them all."""

    usage: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        rid: str,
        version: str,
        question: str | list[dict[str, str]],
        response: str,
        *,
        rating: float | None = None,
        correction: str | None = None,
        comment: str | None = None,
        sources: list[str] = (),  # type: ignore[assignment]
        ago: timedelta = timedelta(hours=1),
        logged: bool = True,
        status: int = 200,
        team: str = "default",
    ) -> None:
        at = NOW - ago
        base = {
            "request_id": rid,
            "at": at,
            "key_id": "k1",
            "team": team,
            "deployment": DEPLOYMENT,
            "model_version": version,
            "endpoint": "chat.completions",
        }
        self.usage.append(
            {
                **base,
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "latency_ms": 12.0,
                "ttft_ms": None,
                "status": status,
                "error_type": None,
            }
        )
        msgs = [{"role": "user", "content": question}] if isinstance(question, str) else question
        if logged:
            self.logs.append(
                {
                    **base,
                    "prompt_masked": logged_prompt(msgs, sources=sources),
                    "response_masked": response,
                    "retrieved": ["c1"] if sources else [],
                    "guard": [],
                    "status": status,
                }
            )
        if rating is not None or correction is not None or comment is not None:
            self.feedback.append(
                {
                    "request_id": rid,
                    "at": at + timedelta(minutes=1),
                    "key_id": "k1",
                    "team": team,
                    "rating_raw": None if rating is None else str(rating),
                    "scale": None if rating is None else "0-1",
                    "rating": rating,
                    "correction": correction,
                    "comment": comment,
                }
            )

    def write(self, store: Store) -> None:
        with store.engine.begin() as conn:
            for table, rows in ((UsageRow, self.usage), (RequestLogRow, self.logs)):
                if rows:
                    conn.execute(insert(table), rows)
            for row in self.feedback:  # one by one: ids follow the order given
                conn.execute(insert(FeedbackRow).values(**row))
