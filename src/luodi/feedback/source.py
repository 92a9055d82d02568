"""Reading feedback with the requests it is about: one `Rated` per request that got feedback.

A request can get several feedback rows (a thumbs-down, then a correction); they are folded
into one: the latest rating, the latest correction, every comment and every feedback id. The
request's log gives the masked conversation (`prompt_masked`, JSON of the messages the model
saw) and reply; `client_messages` takes off what the gateway added in front of the client's
conversation — the deployment's system prompt and the knowledge-base grounding (instruction
plus numbered sources) — using the deployment's recorded versions, so a dataset learns the
user's question, not a prompt that depended on that day's retrieval.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from luodi.data.ops.pii import mask_pii
from luodi.errors import BadInputError, NotFoundError
from luodi.rag.answer import EN_TEMPLATE, ZH_TEMPLATE
from luodi.store import Store
from luodi.store.models import FeedbackRow, RequestLogRow, UsageRow

NEGATIVE_BELOW = 0.5
"""A rating below this (on 0–1) is negative: thumbs down, 1–2 of 5 stars (as luodi monitor)."""

CHAT_ROLES = frozenset({"system", "user", "assistant"})
_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """`7d`, `24h`, `2w`, `30m` (that long before now) or an ISO date/time (UTC unless it
    carries a zone) as an aware UTC datetime; None for None/empty/"all"."""
    if text is None or not text.strip() or text.strip().lower() == "all":
        return None
    t = text.strip()
    if m := _RELATIVE.match(t):
        delta = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        return (now or datetime.now(UTC)).astimezone(UTC) - delta
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise BadInputError(
            f"cannot read --since {text!r}: use 7d, 24h, 2w, 30m or a date like 2026-11-05"
        ) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@dataclass
class Rated:
    """One request with its feedback folded together (latest rating and correction win)."""

    request_id: str
    feedback_ids: list[int] = field(default_factory=list)
    rating: float | None = None
    correction: str | None = None
    comments: list[str] = field(default_factory=list)
    last_at: datetime | None = None
    # from the request log (None once the log is purged)
    logged: bool = False
    at: datetime | None = None
    team: str | None = None
    deployment: str | None = None
    model_version: str | None = None
    endpoint: str | None = None
    prompt_masked: str | None = None
    response_masked: str | None = None
    retrieved: list[str] = field(default_factory=list)
    status: int | None = None

    @property
    def negative(self) -> bool:
        """Rated below NEGATIVE_BELOW."""
        return self.rating is not None and self.rating < NEGATIVE_BELOW


@dataclass
class Selection:
    """Which feedback to read: given in [since, until), optionally of one deployment, model
    version or team (deployment and version need the request's log or usage row)."""

    since: datetime | None = None
    until: datetime | None = None
    deployment: str | None = None
    model_version: str | None = None
    team: str | None = None


def load_rated(store: Store, sel: Selection) -> list[Rated]:
    """Every request that got feedback in the selection, oldest feedback first.

    Feedback whose request log was purged is still returned (logged=False) with the version
    and deployment from its usage row when that is kept, so callers can count and skip it.
    """
    q = (
        select(FeedbackRow, RequestLogRow)
        .outerjoin(RequestLogRow, RequestLogRow.request_id == FeedbackRow.request_id)
        .order_by(FeedbackRow.at, FeedbackRow.id)
    )
    if sel.since is not None:
        q = q.where(FeedbackRow.at >= sel.since)
    if sel.until is not None:
        q = q.where(FeedbackRow.at < sel.until)
    if sel.team is not None:
        q = q.where(FeedbackRow.team == sel.team)
    by_request: dict[str, Rated] = {}
    with Session(store.engine) as s:
        rows = s.execute(q).all()
        purged = {f.request_id for f, log in rows if log is None}
        served = _served_by(s, purged)
    for f, log in rows:
        r = by_request.get(f.request_id)
        if r is None:
            r = by_request[f.request_id] = Rated(request_id=f.request_id, team=f.team)
            if log is not None:
                r.logged = True
                r.at = _utc(log.at)
                r.deployment = log.deployment
                r.model_version = log.model_version
                r.endpoint = log.endpoint
                r.prompt_masked = log.prompt_masked
                r.response_masked = log.response_masked
                r.retrieved = list(log.retrieved or [])
                r.status = log.status
            elif f.request_id in served:
                r.deployment, r.model_version, r.endpoint = served[f.request_id]
        r.feedback_ids.append(int(f.id))
        r.last_at = _utc(f.at)
        if f.rating is not None:
            r.rating = float(f.rating)
        if f.correction:
            r.correction = f.correction
        if f.comment:
            r.comments.append(f.comment)
    out = list(by_request.values())
    if sel.deployment is not None:
        out = [r for r in out if r.deployment == sel.deployment]
    if sel.model_version is not None:
        out = [r for r in out if r.model_version == sel.model_version]
    return out


def _served_by(s: Session, request_ids: set[str]) -> dict[str, tuple[str, str, str]]:
    """(deployment, model version, endpoint) from the usage rows of `request_ids`."""
    out: dict[str, tuple[str, str, str]] = {}
    ids = sorted(request_ids)
    for i in range(0, len(ids), 500):  # keep IN lists short on every database
        q = select(
            UsageRow.request_id, UsageRow.deployment, UsageRow.model_version, UsageRow.endpoint
        ).where(UsageRow.request_id.in_(ids[i : i + 500]))
        for rid, dep, mv, ep in s.execute(q):
            out[rid] = (dep, mv, ep)
    return out


# -- the client's conversation ---------------------------------------------------------------


class Unusable(Exception):
    """A request log that cannot give a conversation; `reason` is a short skip reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ServerText:
    """What a deployment put in front of client conversations, over all its versions."""

    system_prompts: list[str]
    grounding_heads: list[str]


def _template_head(template: str) -> str:
    """The fixed text a grounding template starts with (before its {sources} slot)."""
    return template.split("{sources}", 1)[0].strip()


class DeploymentTexts:
    """Server-added texts per deployment name, read once from the deployment's versions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, ServerText] = {}

    def get(self, deployment: str | None) -> ServerText:
        """The system prompts and grounding template heads `deployment` ever used (longest
        first, each also in its PII-masked form, which is what the log holds)."""
        key = deployment or ""
        if key in self._cache:
            return self._cache[key]
        prompts: set[str] = set()
        heads = {_template_head(ZH_TEMPLATE), _template_head(EN_TEMPLATE)}
        if deployment:
            from luodi.serve.deployments import history

            try:
                versions = history(self.store, deployment)
            except (NotFoundError, BadInputError):
                versions = []
            for v in versions:
                if v.spec.system_prompt:
                    prompts |= {v.spec.system_prompt, mask_pii(v.spec.system_prompt)[0]}
                if v.spec.rag.template and _template_head(v.spec.rag.template):
                    heads.add(_template_head(v.spec.rag.template))
        found = ServerText(
            system_prompts=sorted(prompts, key=len, reverse=True),
            grounding_heads=sorted(heads, key=len, reverse=True),
        )
        self._cache[key] = found
        return found


def _strip_system(
    content: str, server: ServerText, grounded: bool
) -> tuple[str | None, str | None]:
    """(the deployment's system prompt found at the start, the client's own system text)."""
    deployment_prompt = None
    for p in server.system_prompts:
        if content == p or content.startswith(p + "\n\n"):
            deployment_prompt = p
            content = content[len(p) :].lstrip("\n")
            break
    if grounded:  # the grounding block is appended last: cut from its head to the end
        for head in server.grounding_heads:
            at = content.find(head)
            if at >= 0:
                content = content[:at].rstrip("\n")
                break
    return deployment_prompt, (content if content.strip() else None)


def client_messages(
    r: Rated, texts: DeploymentTexts, keep_system_prompt: bool = False
) -> list[dict[str, str]]:
    """The client's conversation of request `r` ({role, content} dicts, system/user/assistant),
    without the deployment's system prompt (unless `keep_system_prompt`) and grounding.

    Raises Unusable(reason) for a purged log, a non-chat endpoint, an unreadable prompt, tool
    turns, or a conversation that does not end with a user turn.
    """
    if not r.logged or r.prompt_masked is None:
        raise Unusable("request_log_purged")
    if r.endpoint == "completions":
        prompt = r.prompt_masked
        if not prompt.strip():
            raise Unusable("empty_prompt")
        return [{"role": "user", "content": prompt}]
    if r.endpoint != "chat.completions":
        raise Unusable("not_a_chat_request")
    try:
        raw = json.loads(r.prompt_masked)
    except json.JSONDecodeError:  # e.g. cut at the recorder's size limit
        raise Unusable("unreadable_prompt") from None
    if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
        raise Unusable("unreadable_prompt")
    msgs: list[dict[str, str]] = []
    for m in raw:
        role, content = m.get("role"), m.get("content")
        if role not in CHAT_ROLES or m.get("tool_calls") or not isinstance(content, str):
            raise Unusable("tool_or_non_text_turns")
        msgs.append({"role": role, "content": content})
    if msgs and msgs[0]["role"] == "system":
        server = texts.get(r.deployment)
        deployment_prompt, own = _strip_system(msgs[0]["content"], server, bool(r.retrieved))
        head: list[dict[str, str]] = []
        if keep_system_prompt and deployment_prompt:
            own = f"{deployment_prompt}\n\n{own}" if own else deployment_prompt
        if own:
            head = [{"role": "system", "content": own}]
        msgs = head + msgs[1:]
    if not msgs or msgs[-1]["role"] != "user" or not msgs[-1]["content"].strip():
        raise Unusable("no_final_user_turn")
    return msgs


# -- prompts as text, and the key that dedups them -------------------------------------------

_NOT_WORD = re.compile(r"[\W_]+")


def prompt_text(turns: Iterable[dict[str, str]]) -> str:
    """A conversation before its answer as one string (what a preference record's `prompt`
    holds): the lone user question itself, or earlier turns as `user: …` / `assistant: …`
    lines before the last question. System turns are left out."""
    convo = [m for m in turns if m["role"] != "system"]
    if len(convo) == 1:
        return convo[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in convo)


def prompt_key(text: str) -> str:
    """`text` normalised for dedup: NFKC, lowercased, punctuation and whitespace removed."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text)).lower()


def record_prompt(rec: dict[str, Any], kind: str) -> str | None:
    """The prompt of a dataset record of `kind`: a qa record's turns before its last
    assistant answer, a preference record's prompt, the text of text/labeled records."""
    if kind == "qa":
        msgs = list(rec.get("messages") or [])
        last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=None)
        before = msgs[:last] if last is not None else msgs
        turns = [{"role": m["role"], "content": m.get("content") or ""} for m in before]
        return prompt_text(turns) if any(m["role"] != "system" for m in turns) else None
    if kind == "preference":
        return rec.get("prompt")
    return rec.get("text")
