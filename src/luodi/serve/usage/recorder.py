"""The usage recorder: the request path hands it events; a background thread writes them.

`record_usage` and `record_request` append to a deque (well under a microsecond) and never
touch the database; a writer thread inserts them in batches every `interval_s` seconds or as
soon as `batch_size` are waiting. Prompts and responses are PII-masked (`mask_pii`) in that
thread before the insert, so raw text is never stored, only held in memory until its batch is
written (at most `interval_s` plus one write).

If the database fails, the batch is put back and retried (up to `max_buffer` waiting events,
beyond which the oldest are dropped with an error in the log); a row the database rejects (a
duplicate request id) is skipped alone, the rest of its batch is written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, delete, insert, or_, update
from sqlalchemy.exc import IntegrityError

from luodi.data.ops.pii import mask_pii
from luodi.errors import BadInputError
from luodi.store import Store
from luodi.store.models import ApiKeyRow, RequestLogRow, UsageRow

if TYPE_CHECKING:
    from luodi.serve.auth import Principal
    from luodi.serve.usage.feedback import FeedbackInfo

log = logging.getLogger("luodi.serve")

TRUNCATED = " …[truncated]"


@dataclass(slots=True)
class UsageEvent:
    """One served request, for metering: a row of usage_records. `at` is aware UTC."""

    request_id: str
    at: datetime
    key_id: str
    team: str
    deployment: str
    model_version: str
    endpoint: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: int = 200
    error_type: str | None = None


@dataclass(slots=True)
class RequestLogEvent:
    """What one request asked and got, for the request log (masked when written)."""

    request_id: str
    at: datetime
    key_id: str
    team: str
    deployment: str
    model_version: str
    endpoint: str
    prompt: str = ""
    response: str = ""
    retrieved: list[str] = field(default_factory=list)
    guard: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200


def _take(q: deque[Any]) -> list[Any]:
    """Pop what is in `q` now (popleft is atomic, so producers can keep appending)."""
    out = []
    try:
        for _ in range(len(q)):
            out.append(q.popleft())
    except IndexError:
        pass
    return out


def purge_request_logs(store: Store, older_than_days: int, now: datetime | None = None) -> int:
    """Delete request logs older than `older_than_days` days (usage rows stay for billing,
    feedback stays as training data); returns how many were deleted."""
    if not 0 <= older_than_days <= 36500:
        raise BadInputError(f"older_than_days must be 0 to 36500, not {older_than_days}")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    with store.engine.begin() as conn:
        result = conn.execute(delete(RequestLogRow).where(RequestLogRow.at < cutoff))
    return int(result.rowcount or 0)


class UsageRecorder:
    """Background batched writer of usage rows and masked request logs.

    `mask_allow` lists strings never masked (the company's public hotline, say);
    `retention_days` makes the writer thread delete request logs older than that once an hour.
    """

    def __init__(
        self,
        store: Store,
        interval_s: float = 0.2,
        batch_size: int = 200,
        mask_allow: Iterable[str] = (),
        max_text_chars: int = 100_000,
        retention_days: int | None = None,
        max_buffer: int = 100_000,
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.mask_allow = tuple(mask_allow)
        self.max_text_chars = max_text_chars
        self.retention_days = retention_days
        self.max_buffer = max_buffer
        self._usage: deque[UsageEvent] = deque()
        self._logs: deque[RequestLogEvent] = deque()
        self._listeners: list[Callable[[UsageEvent], None]] = []
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._last_purge = float("-inf")
        self.written = {"usage": 0, "logs": 0, "dropped": 0}
        self._thread = threading.Thread(target=self._run, name="luodi-usage-writer", daemon=True)
        self._thread.start()

    # -- the request path -------------------------------------------------------------------
    def add_listener(self, fn: Callable[[UsageEvent], None]) -> None:
        """Call `fn(event)` for every usage event as it is recorded (quotas count tokens)."""
        self._listeners.append(fn)

    def record_usage(self, event: UsageEvent) -> None:
        """Queue a usage row; never blocks and never raises for a listener's fault."""
        self._usage.append(event)
        for fn in self._listeners:
            try:
                fn(event)
            except Exception:  # a counting bug must not fail the request being recorded
                log.exception("usage listener failed")
        if len(self._usage) >= self.batch_size:
            self._wake.set()

    def record_request(self, event: RequestLogEvent) -> None:
        """Queue a request log (masked before it is written); never blocks."""
        self._logs.append(event)
        if len(self._logs) >= self.batch_size:
            self._wake.set()

    def record_feedback(
        self,
        request_id: str,
        rating: object = None,
        correction: str | None = None,
        comment: str | None = None,
        key: Principal | None = None,
        scale: str = "auto",
    ) -> FeedbackInfo:
        """Store feedback on a request now (see `luodi.serve.usage.feedback.add_feedback`);
        the request's own log may still be queued here, so it is looked for after a flush."""
        from luodi.serve.usage.feedback import add_feedback

        return add_feedback(
            self.store,
            request_id,
            rating,
            correction=correction,
            comment=comment,
            key=key,
            scale=scale,
            recorder=self,
            mask_allow=self.mask_allow,
        )

    # -- writing ----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            try:
                self.flush()
                self._maybe_purge()
            except Exception as exc:  # keep the thread alive; the events were put back
                log.warning("usage writer: %s (will retry)", exc)
                self._stop.wait(min(5.0, self.interval_s * 10))

    def _maybe_purge(self) -> None:
        if self.retention_days is None or time.monotonic() - self._last_purge < 3600:
            return
        self._last_purge = time.monotonic()
        n = self.purge(self.retention_days)
        if n:
            log.info("deleted %d request logs older than %d days", n, self.retention_days)

    def _mask(self, text: str) -> str:
        masked, _ = mask_pii(text, self.mask_allow) if text else (text, None)
        if len(masked) > self.max_text_chars:
            masked = masked[: self.max_text_chars] + TRUNCATED
        return masked

    def _log_row(self, e: RequestLogEvent) -> dict[str, Any]:
        return {
            "request_id": e.request_id,
            "at": e.at,
            "key_id": e.key_id,
            "team": e.team,
            "deployment": e.deployment,
            "model_version": e.model_version,
            "endpoint": e.endpoint,
            "prompt_masked": self._mask(e.prompt),
            "response_masked": self._mask(e.response),
            "retrieved": list(e.retrieved),
            "guard": list(e.guard),
            "status": e.status,
        }

    def flush(self) -> int:
        """Write everything recorded so far; returns the number of rows written. Raises the
        database's error after putting the events back (they are retried later)."""
        with self._write_lock:
            usage, logs = _take(self._usage), _take(self._logs)
            if not usage and not logs:
                return 0
            try:
                log_rows = [self._log_row(e) for e in logs]
                usage_rows = [asdict(e) for e in usage]
                self._write(usage_rows, log_rows)
            except Exception:
                self._put_back(usage, logs)
                raise
            return len(usage_rows) + len(log_rows)

    def _write(self, usage_rows: list[dict[str, Any]], log_rows: list[dict[str, Any]]) -> None:
        try:
            with self.store.engine.begin() as conn:
                if usage_rows:
                    conn.execute(insert(UsageRow), usage_rows)
                    self._touch_keys(conn, usage_rows)
                if log_rows:
                    conn.execute(insert(RequestLogRow), log_rows)
        except IntegrityError:  # one bad row (a repeated request id): write the others alone
            for table, rows in ((UsageRow, usage_rows), (RequestLogRow, log_rows)):
                for row in rows:
                    try:
                        with self.store.engine.begin() as conn:
                            conn.execute(insert(table), [row])
                            if table is UsageRow:
                                self._touch_keys(conn, [row])
                    except IntegrityError as exc:
                        self.written["dropped"] += 1
                        log.error(
                            "dropped a %s row for request %s: %s",
                            table.__tablename__,
                            row["request_id"],
                            exc.orig,
                        )
        self.written["usage"] += len(usage_rows)
        self.written["logs"] += len(log_rows)

    @staticmethod
    def _touch_keys(conn: Any, usage_rows: list[dict[str, Any]]) -> None:
        """Move each key's last_used_at forward to its newest request in the batch."""
        last: dict[str, datetime] = {}
        for r in usage_rows:
            if r["key_id"] not in last or r["at"] > last[r["key_id"]]:
                last[r["key_id"]] = r["at"]
        stmt = (
            update(ApiKeyRow)
            .where(
                and_(
                    ApiKeyRow.key_id == bindparam("k"),
                    or_(ApiKeyRow.last_used_at.is_(None), ApiKeyRow.last_used_at < bindparam("t")),
                )
            )
            .values(last_used_at=bindparam("t"))
            .execution_options(synchronize_session=False)
        )
        conn.execute(stmt, [{"k": k, "t": t} for k, t in last.items()])

    def _put_back(self, usage: list[UsageEvent], logs: list[RequestLogEvent]) -> None:
        for q, items in ((self._usage, usage), (self._logs, logs)):
            q.extendleft(reversed(items))
            excess = len(q) - self.max_buffer
            if excess > 0:
                for _ in range(excess):
                    q.popleft()
                self.written["dropped"] += excess
                log.error("usage writer: dropped %d queued events (database unavailable)", excess)

    def purge(self, older_than_days: int, now: datetime | None = None) -> int:
        """Delete request logs older than `older_than_days` days (see purge_request_logs)."""
        return purge_request_logs(self.store, older_than_days, now)

    def close(self) -> None:
        """Stop the writer and write what is left (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join()
        try:
            self.flush()
        except Exception as exc:
            lost = len(self._usage) + len(self._logs)
            log.error("usage writer: %d events not written at shutdown: %s", lost, exc)

    def __enter__(self) -> UsageRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
