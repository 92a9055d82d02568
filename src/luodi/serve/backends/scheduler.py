"""Fair queueing and batching for local engines, and the per-request reply bookkeeping.

A local model is owned by one worker thread (`Scheduler`). Requests wait in a `FairQueue`
that serves callers round-robin by `GenRequest.user`, so one caller's fifty requests do not
starve another's one. The worker takes up to `max_batch` requests whose settings can share a
forward pass (equal `Job.key`; a None key runs alone) and hands them to the engine's
`run_batch`. Results travel back to the caller's event loop through `loop.call_soon_threadsafe`
into the job's asyncio queue, so the thread never blocks on a slow client.

`Reply` turns the growing text of one request into stream events: it cuts the text at the
first stop string, holds back a tail that may still become a stop string or a tool call, and
at the end parses tool calls and sends the StreamEnd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

from luodi.errors import BackendTimeoutError, BackendUnavailableError, LuodiError
from luodi.serve.backends.base import GenRequest, GenResult, StreamDelta, StreamEnd
from luodi.serve.backends.tools import ToolSet, parse_tool_calls, visible_text

log = logging.getLogger("luodi.serve.backends")


@dataclass(eq=False)
class Job:
    """One request waiting for or running on a local engine.

    `payload` is what the engine prepared (token ids, a prompt); `key` says which jobs may
    share a batch (None: alone); `want_deltas` is False for non-streaming calls.
    """

    req: GenRequest
    payload: Any
    key: Hashable | None
    loop: asyncio.AbstractEventLoop
    tools: ToolSet | None = None
    want_deltas: bool = True
    prompt_tokens: int = 0
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: bool = False

    @property
    def user(self) -> str:
        return self.req.user or ""

    def post(self, event: Any) -> None:
        """Hand an event (StreamDelta, StreamEnd or an exception) to the caller's loop."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the caller's loop is closed: nobody is listening
            self.cancelled.set()

    def fail(self, exc: BaseException) -> None:
        """End the job with an error (a LuodiError reaches the caller as it is)."""
        if not self.done:
            self.done = True
            self.post(exc)


class FairQueue:
    """Jobs by user, taken round-robin: the next job comes from the user served longest ago."""

    def __init__(self) -> None:
        self._users: OrderedDict[str, deque[Job]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, job: Job) -> None:
        """Queue `job` behind its user's earlier jobs."""
        self._users.setdefault(job.user, deque()).append(job)
        self._size += 1

    def _drop_cancelled(self) -> None:
        for user in list(self._users):
            q = self._users[user]
            kept = deque(j for j in q if not j.cancelled.is_set())
            self._size -= len(q) - len(kept)
            if kept:
                self._users[user] = kept
            else:
                del self._users[user]

    def take(self, limit: int) -> list[Job]:
        """Up to `limit` jobs sharing one key, one per user per round, users in turn.

        A user whose next job has another key keeps its place for the next batch; a job
        with key None is taken alone. Cancelled jobs are dropped.
        """
        self._drop_cancelled()
        batch: list[Job] = []
        while len(batch) < limit:
            progressed = False
            for user in list(self._users):
                if len(batch) >= limit:
                    break
                q = self._users[user]
                job = q[0]
                if batch and (job.key is None or job.key != batch[0].key):
                    continue
                q.popleft()
                self._size -= 1
                batch.append(job)
                progressed = True
                del self._users[user]  # served: to the back of the line
                if q:
                    self._users[user] = q
                if job.key is None:
                    return batch
            if not progressed:
                break
        return batch


class Scheduler:
    """A worker thread that owns a model and runs queued jobs through `run_batch`.

    `run_batch(jobs)` must end every job (Reply.finish or Job.fail); whatever it raises ends
    the jobs it left open with BackendUnavailableError (a LuodiError passes as it is).
    """

    def __init__(
        self, run_batch: Callable[[list[Job]], None], *, max_batch: int, name: str
    ) -> None:
        self._run = run_batch
        self.max_batch = max_batch
        self.name = name
        self._queue = FairQueue()
        self._cond = threading.Condition()
        self._closed = False
        self._held = 0
        self._running: list[Job] = []
        self.tokens_generated = 0
        self.batches = 0
        self.largest_batch = 0
        self._thread = threading.Thread(target=self._loop, name=f"luodi-{name}", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue a job; BackendUnavailableError when the scheduler is closed."""
        with self._cond:
            if self._closed:
                raise BackendUnavailableError(f"{self.name} is shut down")
            self._queue.push(job)
            self._cond.notify()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """While held, the worker starts no new batch (the running one goes on); jobs queue.

        For maintenance (drain, swap) and to let a burst of requests form full batches.
        """
        with self._cond:
            self._held += 1
        try:
            yield
        finally:
            with self._cond:
                self._held -= 1
                self._cond.notify_all()

    @property
    def active(self) -> int:
        """Jobs of the running batch that have not ended (finished, failed or cancelled)."""
        return sum(1 for j in self._running if not j.done and not j.cancelled.is_set())

    def stats(self) -> dict[str, float]:
        """queue_depth (waiting jobs), active (running), tokens_generated, batches run and
        the largest batch (since start)."""
        return {
            "queue_depth": float(len(self._queue)),
            "active": float(self.active),
            "tokens_generated": float(self.tokens_generated),
            "batches": float(self.batches),
            "largest_batch": float(self.largest_batch),
        }

    def _loop(self) -> None:
        while True:
            with self._cond:
                while (not len(self._queue) or self._held) and not self._closed:
                    self._cond.wait()
                if self._closed:
                    break
                batch = self._queue.take(self.max_batch)
                self._running = batch
                if batch:
                    self.batches += 1
                    self.largest_batch = max(self.largest_batch, len(batch))
            if not batch:
                continue
            try:
                self._run(batch)
            except BaseException as exc:  # reported to the callers, the worker lives on
                err = exc if isinstance(exc, LuodiError) else None
                if err is None:
                    log.exception("%s failed while generating", self.name)
                    err = BackendUnavailableError(
                        f"{self.name} failed while generating: {type(exc).__name__}: {exc}"
                    )
                for job in batch:
                    job.fail(err)
            finally:
                self._running = []
        self._fail_waiting()

    def _fail_waiting(self) -> None:
        with self._cond:
            while len(self._queue):
                for job in self._queue.take(len(self._queue) or 1):
                    job.fail(BackendUnavailableError(f"{self.name} is shut down"))

    def close(self, timeout: float = 30.0) -> bool:
        """Stop taking jobs and fail the waiting and running ones (the engine stops a running
        job at its next token); True once the worker has ended (within `timeout` s)."""
        with self._cond:
            self._closed = True
            for job in self._running:
                job.fail(BackendUnavailableError(f"{self.name} is shut down"))
                job.cancelled.set()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()


class Reply:
    """The growing text of one job: stop strings, held-back tails, deltas, the final result."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.stops = [s for s in job.req.stop if s]
        self.text = ""  # the reply so far, cut at a stop string
        self.sent = ""  # what has been streamed: always a prefix of the reply
        self.stopped = False  # a stop string was found

    def _held(self, text: str) -> int:
        """Characters at the end of `text` that may be the start of a stop string."""
        held = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(text)), held, -1):
                if text.endswith(s[:k]):
                    held = k
                    break
        return held

    def _send(self, text: str) -> None:
        if len(text) > len(self.sent) and text.startswith(self.sent):
            self.job.post(StreamDelta(text[len(self.sent) :]))
            self.sent = text

    def update(self, text: str) -> bool:
        """Take the whole reply decoded so far; True when a stop string has ended it."""
        if self.stopped:
            return True
        cut = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if cut:
            text, self.stopped = text[: min(cut)], True
        self.text = text
        if self.job.want_deltas:
            safe = text if self.stopped else text[: len(text) - self._held(text)]
            if self.job.tools is not None:
                safe = visible_text(safe)
            self._send(safe)
        return self.stopped

    def finish(self, finish_reason: str, completion_tokens: int) -> GenResult:
        """Send the rest of the text and the StreamEnd; returns the result."""
        text, calls = self.text, []
        if self.job.tools is not None:
            text, calls = parse_tool_calls(self.text, self.job.tools.names)
            if calls:
                finish_reason = "tool_calls"
        result = GenResult(
            text=text,
            finish_reason="stop" if self.stopped and not calls else finish_reason,
            prompt_tokens=self.job.prompt_tokens,
            completion_tokens=completion_tokens,
            tool_calls=calls,
        )
        if self.job.want_deltas:
            self._send(text)
        self.job.done = True
        self.job.post(StreamEnd(result))
        return result


async def job_events(
    job: Job, submit: Callable[[Job], None], timeout_s: float
) -> AsyncIterator[StreamDelta | StreamEnd]:
    """Submit `job` and yield its events until the StreamEnd; an error event is raised.

    Leaving early (the consumer stopped, the task was cancelled) cancels the job, which its
    engine notices at the next token. BackendTimeoutError when no event came for `timeout_s`.
    """
    submit(job)
    try:
        while True:
            try:
                event = await asyncio.wait_for(job.queue.get(), timeout_s)
            except TimeoutError:
                raise BackendTimeoutError(
                    f"the model did not answer within {timeout_s:g} s (it may be overloaded)"
                ) from None
            if isinstance(event, BaseException):
                raise event
            yield event
            if isinstance(event, StreamEnd):
                return
    finally:
        job.cancelled.set()


__all__ = ["FairQueue", "Job", "Reply", "Scheduler", "job_events"]


async def job_result(
    job: Job, submit: Callable[[Job], None], timeout_s: float, ref: str
) -> GenResult:
    """Submit `job` and return its whole reply (the StreamEnd's result); see job_events."""
    async for event in job_events(job, submit, timeout_s):
        if isinstance(event, StreamEnd):
            return event.result
    raise BackendUnavailableError(f"{ref} ended a reply without a result")
