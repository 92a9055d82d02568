"""What chat and completions share: limits, the system prompt, labels, SSE framing and the
output guard over a stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse

from luodi.errors import BadInputError, LuodiError
from luodi.serve.backends.base import GenRequest, GenResult, StreamDelta, StreamEnd
from luodi.serve.config import LimitsConfig
from luodi.serve.gateway import Call
from luodi.serve.routing import LiveDeployment

DEFAULT_REFUSAL = "抱歉，这个请求我无法协助。 / Sorry, I can't help with that request."


def max_tokens_for(requested: int | None, dep: LiveDeployment, limits: LimitsConfig) -> int:
    """The request's max_tokens within the server's and the deployment's caps (400 beyond)."""
    cap = min(limits.max_tokens_cap, dep.spec.max_tokens or limits.max_tokens_cap)
    if requested is None:
        return min(limits.default_max_tokens, cap)
    if requested > cap:
        raise BadInputError(f"max_tokens {requested} is above this endpoint's limit of {cap}")
    return requested


def check_n(n: int, limits: LimitsConfig) -> None:
    """400 when more choices are asked for than the server allows."""
    if n > limits.max_n:
        raise BadInputError(f"n {n} is above the limit of {limits.max_n}")


def check_chars(chars: int, limits: LimitsConfig) -> None:
    """400 when the input text is longer than the server allows."""
    if chars > limits.max_input_chars:
        raise BadInputError(
            f"the input has {chars} characters; the limit is {limits.max_input_chars}"
        )


def refusal(call: Call) -> str:
    """The deployment guard's refusal message."""
    return getattr(call.deployment.guard, "refusal", None) or DEFAULT_REFUSAL


def label_suffix(call: Call) -> str:
    """The AI-generated label appended to reply text when the server says so."""
    cfg = call.gateway.config
    return f"\n\n{cfg.label}" if cfg.label_text else ""


def luodi_field(call: Call) -> dict[str, Any]:
    """The `luodi` response field: request id, the version that served, the AI label."""
    return {
        "request_id": call.request_id,
        "deployment": call.deployment.spec.name,
        "model_version": call.version,
        "ai_generated": True,
        "guard": call.guard_log,
        "retrieved": call.retrieved,
        "citations": call.citations,
        "tool_calls_executed": call.tools_executed,
        "served_by": call.served_by,
    }


def note_served_by(call: Call, result: GenResult) -> None:
    """Keep which member of a composite answered (GenResult.served_by) on the call, for the
    `luodi` field and the gateway's records; a single model leaves it unset."""
    if result.served_by is not None:
        call.served_by = result.served_by


def usage(call: Call) -> dict[str, int]:
    """The usage object."""
    return {
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "total_tokens": call.prompt_tokens + call.completion_tokens,
    }


def guarded_result(call: Call, result: GenResult) -> tuple[str, str]:
    """(reply text, finish_reason) after the output guard and the label."""
    text, blocked = call.check("output", result.text)
    if blocked:
        return refusal(call), "content_filter"
    return text + (label_suffix(call) if text else ""), result.finish_reason


def sse(obj: dict[str, Any] | str) -> bytes:
    """One server-sent event."""
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def sse_error(exc: BaseException) -> bytes:
    """An error event in the OpenAI shape (the client raises it as an APIError)."""
    if isinstance(exc, LuodiError):
        body = {"message": exc.message, "type": exc.error_type, "code": exc.code}
    else:
        body = {"message": "internal error", "type": "server_error", "code": "internal_error"}
    return sse({"error": body | {"param": None}})


async def guarded_stream(
    call: Call, events: AsyncIterator[StreamDelta | StreamEnd]
) -> AsyncIterator[tuple[str, str | None]]:
    """(text to send, finish_reason or None) pieces of one streamed reply.

    The output guard sees the text as it streams and holds back only the tail that could
    still turn into a match; when it blocks, what was not yet sent is replaced by the
    refusal and the reply ends with finish_reason content_filter (a clean end, not a cut).
    """
    policy = call.deployment.guard
    sg = policy.output_stream() if policy is not None else None
    sent: list[str] = []
    try:
        async for ev in events:
            if isinstance(ev, StreamEnd):
                note_served_by(call, ev.result)
                call.prompt_tokens += ev.result.prompt_tokens
                call.completion_tokens += ev.result.completion_tokens
                if sg is not None:
                    step = sg.finish()
                    if step.verdict is not None:
                        call.note_verdict("output", step.verdict)
                    if step.blocked:
                        yield refusal(call), "content_filter"
                        return
                    if step.emit:
                        sent.append(step.emit)
                        yield step.emit, None
                suffix = label_suffix(call) if sent else ""
                if suffix:
                    sent.append(suffix)
                    yield suffix, None
                yield "", ev.result.finish_reason
                return
            piece = ev.text
            if not piece:
                continue
            call.first_token()
            if sg is not None:
                step = sg.feed(piece)
                if step.verdict is not None:
                    call.note_verdict("output", step.verdict)
                if step.blocked:
                    yield refusal(call), "content_filter"
                    return
                piece = step.emit
            if piece:
                sent.append(piece)
                yield piece, None
    finally:
        call.response_text += "".join(sent)
        close = getattr(events, "aclose", None)
        if close is not None:  # stops the backend's generation when we end early
            await close()


def now() -> int:
    """`created` timestamps."""
    return int(time.time())


@contextmanager
def recording_failure(call: Call) -> Iterator[None]:
    """Record the call as failed when the body raises (then re-raise)."""
    try:
        yield
    except BaseException as exc:
        call.gateway.fail(call, exc)
        raise


async def generate(call: Call, req: GenRequest) -> GenResult:
    """One whole reply from the call's backend, its tokens added to the call's usage."""
    with call.route.lease() as backend:
        result = await backend.generate(req)
    note_served_by(call, result)
    call.prompt_tokens += result.prompt_tokens
    call.completion_tokens += result.completion_tokens
    return result


async def _recorded(call: Call, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The SSE body: the chunks, then [DONE]; a failure after the headers went out is sent as
    an error event; the call is recorded when the stream ends (499 if the client left)."""
    status, error = 200, None
    try:
        async for chunk in chunks:
            yield chunk
        yield sse("[DONE]")
    except asyncio.CancelledError:
        status, error = 499, "client_closed"
        raise
    except Exception as exc:
        status = getattr(exc, "http_status", 500)
        error = getattr(exc, "error_type", "server_error")
        yield sse_error(exc)
        yield sse("[DONE]")
    finally:
        call.finish(status, error)


async def respond(
    call: Call,
    *,
    obj: str,
    model: str,
    stream: bool,
    chunks: Callable[[], AsyncIterator[bytes]],
    choices: Callable[[], Awaitable[list[dict[str, Any]]]],
) -> JSONResponse | StreamingResponse:
    """The response of a generation call: an SSE stream of `chunks()`, or the JSON object
    `obj` with `choices()`, usage and the `luodi` field. The call is recorded either way."""
    headers = {"x-luodi-model-version": call.version}
    if stream:
        return StreamingResponse(
            _recorded(call, chunks()),
            media_type="text/event-stream",
            headers=headers | {"cache-control": "no-cache"},
        )
    with recording_failure(call):
        made = await choices()
    call.finish(200)
    return JSONResponse(
        {
            "id": call.request_id,
            "object": obj,
            "created": now(),
            "model": model,
            "system_fingerprint": call.version,
            "choices": made,
            "usage": usage(call),
            "luodi": luodi_field(call),
        },
        headers=headers,
    )
