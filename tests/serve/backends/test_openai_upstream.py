"""The openai engine against a real fake upstream (FastAPI under uvicorn on 127.0.0.1): replies,
streams, tool calls and usage pass through; upstream errors map to the gateway's errors."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from luodi.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    BadInputError,
    RateLimitedError,
)
from luodi.serve.backends import BackendSpec, GenRequest, open_backend
from luodi.serve.backends.base import StreamDelta, StreamEnd
from luodi.serve.backends.openai import UpstreamBackend, UpstreamRequestError
from luodi.store import Store

SEEN: dict[str, Any] = {}
CALL = {"id": "call_abc", "type": "function", "function": {"name": "get_weather"}}
ARGS = '{"city": "北京"}'


def sse(objs: list[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for o in objs:
            yield f"data: {json.dumps(o, ensure_ascii=False)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


def fake_upstream() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "only-model", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        SEEN["chat"], SEEN["auth"] = body, request.headers.get("authorization")
        model, stream = body["model"], body.get("stream", False)
        if model == "bad":
            return JSONResponse({"error": {"message": "max_tokens is too large"}}, 422)
        if model == "down":
            return JSONResponse({"error": {"message": "CUDA out of memory"}}, 500)
        if model == "auth":
            return JSONResponse({"error": {"message": "invalid key"}}, 401)
        if model == "limited":
            return JSONResponse({"error": {"message": "slow down"}}, 429, {"Retry-After": "7"})
        if model == "slow":
            await asyncio.sleep(3)
        if model == "nousage" and stream and "stream_options" in body:
            return JSONResponse(
                {"error": {"message": "Unrecognized request argument: stream_options"}}, 400
            )
        if model == "tool":
            if not stream:
                return {
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": None,
                                "tool_calls": [
                                    {**CALL, "function": {**CALL["function"], "arguments": ARGS}}
                                ],
                            },
                            "finish_reason": "tool_calls",
                        }
                    ],
                    "usage": {"prompt_tokens": 30, "completion_tokens": 9},
                }
            head = {
                "index": 0,
                "id": CALL["id"],
                "function": {"name": "get_weather", "arguments": ""},
            }
            return sse(
                [
                    {
                        "choices": [
                            {"index": 0, "delta": {"role": "assistant", "tool_calls": [head]}}
                        ]
                    },
                    {
                        "choices": [
                            {
                                "index": 0,
                                "delta": {
                                    "tool_calls": [
                                        {"index": 0, "function": {"arguments": ARGS[:7]}}
                                    ]
                                },
                            }
                        ]
                    },
                    {
                        "choices": [
                            {
                                "index": 0,
                                "delta": {
                                    "tool_calls": [
                                        {"index": 0, "function": {"arguments": ARGS[7:]}}
                                    ]
                                },
                            }
                        ]
                    },
                    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
                    {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 9}},
                ]
            )
        if model == "endless":

            async def forever() -> AsyncIterator[bytes]:
                SEEN["endless_open"] = True
                try:
                    for i in range(10_000):
                        delta = {"choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}
                        yield f"data: {json.dumps(delta)}\n\n".encode()
                        await asyncio.sleep(0.01)
                finally:
                    SEEN["endless_open"] = False

            return StreamingResponse(forever(), media_type="text/event-stream")
        usage = None if model == "nousage" else {"prompt_tokens": 7, "completion_tokens": 3}
        if not stream:
            out: dict[str, Any] = {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "你好, there!"},
                        "finish_reason": "stop",
                    }
                ]
            }
            return out | ({"usage": usage} if usage else {})
        events = [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
            *(
                {"choices": [{"index": 0, "delta": {"content": t}}]}
                for t in ["你好", ", ", "there!"]
            ),
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ]
        if usage and body.get("stream_options", {}).get("include_usage"):
            events.append({"choices": [], "usage": usage})
        return sse(events)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        SEEN["completions"] = body
        if body.get("stream"):
            return sse(
                [
                    {"choices": [{"index": 0, "text": " Paris"}]},
                    {"choices": [{"index": 0, "text": ".", "finish_reason": "length"}]},
                    {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
                ]
            )
        return {
            "choices": [{"index": 0, "text": " Paris.", "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2},
        }

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        body = await request.json()
        rows = [
            {"object": "embedding", "index": i, "embedding": [float(i), 0.5]}
            for i in range(len(body["input"]))
        ]
        return {"data": rows[::-1], "usage": {"prompt_tokens": 11, "total_tokens": 11}}

    return app


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """Base URL of the fake upstream, served by uvicorn in a thread."""
    config = uvicorn.Config(fake_upstream(), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the fake upstream did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(10)


def backend(store: Store, url: str, model: str, **kw: Any) -> UpstreamBackend:
    b = open_backend(store, BackendSpec(model=f"openai:{url}#{model}", **kw))
    assert isinstance(b, UpstreamBackend)
    return b


def chat(**kw: Any) -> GenRequest:
    return GenRequest(messages=[{"role": "user", "content": "hi"}], prompt=None, **kw)


async def drain(b: UpstreamBackend, req: GenRequest) -> tuple[list[str], Any]:
    pieces = []
    async for ev in b.stream(req):
        if isinstance(ev, StreamDelta):
            pieces.append(ev.text)
        else:
            assert isinstance(ev, StreamEnd)
            return pieces, ev.result
    raise AssertionError("no StreamEnd")


def test_replies_streams_and_usage_pass_through(store: Store, upstream: str) -> None:
    b = backend(store, upstream, "fixed")
    assert b.ref == f"openai:{upstream}#fixed"

    async def main() -> None:
        r = await b.generate(chat(max_tokens=5, temperature=0, stop=["\n"], seed=3, user="u1"))
        assert (r.text, r.finish_reason, r.prompt_tokens, r.completion_tokens) == (
            "你好, there!",
            "stop",
            7,
            3,
        )
        assert not r.usage_estimated
        sent = SEEN["chat"]
        assert sent["messages"] == [{"role": "user", "content": "hi"}]
        assert (sent["max_tokens"], sent["temperature"], sent["stop"], sent["seed"]) == (
            5,
            0,
            ["\n"],
            3,
        )
        assert sent["user"] == "u1" and "stream" not in sent and SEEN["auth"] is None
        pieces, end = await drain(b, chat())
        assert pieces == ["你好", ", ", "there!"] and end.text == "你好, there!"
        assert (end.prompt_tokens, end.completion_tokens, end.finish_reason) == (7, 3, "stop")
        assert SEEN["chat"]["stream_options"] == {"include_usage": True}
        # Plain completions.
        plain = GenRequest(messages=None, prompt="The capital of France is", max_tokens=2)
        r = await b.generate(plain)
        assert (r.text, r.finish_reason, r.completion_tokens) == (" Paris.", "length", 2)
        assert SEEN["completions"]["prompt"] == "The capital of France is"
        pieces, end = await drain(b, plain)
        assert pieces == [" Paris", "."] and (end.finish_reason, end.prompt_tokens) == ("length", 5)
        # Embeddings come back in input order whatever order the upstream lists them in.
        vectors, tokens = await b.embed(["a", "b", "c"])
        assert vectors == [[0.0, 0.5], [1.0, 0.5], [2.0, 0.5]] and tokens == 11
        assert b.stats() == {"queue_depth": 0.0, "active": 0.0}
        await b.aclose()

    asyncio.run(main())


def test_tool_calls_pass_through(store: Store, upstream: str) -> None:
    b = backend(store, upstream, "tool")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]

    async def main() -> None:
        r = await b.generate(chat(tools=tools, tool_choice="auto"))
        assert SEEN["chat"]["tools"] == tools and SEEN["chat"]["tool_choice"] == "auto"
        assert r.finish_reason == "tool_calls" and r.text == ""
        assert [(c.id, c.name, json.loads(c.arguments)) for c in r.tool_calls] == [
            ("call_abc", "get_weather", {"city": "北京"})
        ]
        pieces, end = await drain(b, chat(tools=tools))
        assert pieces == [] and end.finish_reason == "tool_calls"
        assert [(c.id, c.name, c.arguments) for c in end.tool_calls] == [
            ("call_abc", "get_weather", ARGS)
        ]
        assert (end.prompt_tokens, end.completion_tokens) == (30, 9)

    asyncio.run(main())


def test_missing_usage_is_marked_and_stream_options_dropped(store: Store, upstream: str) -> None:
    b = backend(store, upstream, "nousage")

    async def main() -> None:
        r = await b.generate(chat())
        assert r.usage_estimated and (r.prompt_tokens, r.completion_tokens) == (0, 0)
        pieces, end = await drain(b, chat())  # rejected with stream_options, then retried
        assert "".join(pieces) == "你好, there!" and end.usage_estimated
        assert "stream_options" not in SEEN["chat"]
        await drain(b, chat())
        assert "stream_options" not in SEEN["chat"]  # not offered again

    asyncio.run(main())


def test_upstream_errors_map_to_gateway_errors(store: Store, upstream: str) -> None:
    async def main() -> None:
        with pytest.raises(UpstreamRequestError) as bad:
            await backend(store, upstream, "bad").generate(chat())
        assert isinstance(bad.value, BadInputError) and bad.value.http_status == 422
        assert "max_tokens is too large" in bad.value.message
        with pytest.raises(UpstreamRequestError):
            await drain(backend(store, upstream, "bad"), chat())
        for model in ("down", "auth"):
            with pytest.raises(BackendUnavailableError) as down:
                await backend(store, upstream, model).generate(chat())
            assert not isinstance(down.value, BackendTimeoutError)
            assert down.value.http_status == 502
        assert "CUDA out of memory" in str(down.value) or "invalid key" in str(down.value)
        with pytest.raises(BackendUnavailableError, match="CUDA out of memory"):
            await drain(backend(store, upstream, "down"), chat())
        with pytest.raises(RateLimitedError) as limited:
            await backend(store, upstream, "limited").generate(chat())
        assert limited.value.retry_after == 7
        slow = backend(store, upstream, "slow", timeout_s=0.3)
        with pytest.raises(BackendTimeoutError) as late:
            await slow.generate(chat())
        assert late.value.http_status == 504
        with pytest.raises(BackendTimeoutError):
            await drain(slow, chat())
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
        with pytest.raises(BackendUnavailableError, match="cannot reach"):
            await backend(store, dead, "m").generate(chat())

    asyncio.run(main())


def test_closing_a_stream_closes_the_upstream_request(store: Store, upstream: str) -> None:
    b = backend(store, upstream, "endless")

    async def main() -> None:
        gen = b.stream(chat())
        first = await gen.__anext__()
        assert isinstance(first, StreamDelta) and first.text == "w0 "
        assert b.stats()["active"] == 1
        await gen.aclose()
        assert b.stats()["active"] == 0
        deadline = time.monotonic() + 5
        while SEEN.get("endless_open"):
            assert time.monotonic() < deadline, "the upstream kept streaming"
            await asyncio.sleep(0.02)

    asyncio.run(main())


def test_spec_key_and_model_discovery(
    store: Store, upstream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", "sk-test-123")
    b = backend(store, upstream, "fixed", api_key_env="FAKE_UPSTREAM_KEY")
    asyncio.run(b.generate(chat()))
    assert SEEN["auth"] == "Bearer sk-test-123"
    with pytest.raises(BadInputError, match="NOT_SET_ANYWHERE"):
        backend(store, upstream, "fixed", api_key_env="NOT_SET_ANYWHERE")
    only = open_backend(store, BackendSpec(model=f"openai:{upstream}"))
    assert only.ref == f"openai:{upstream}#only-model"
    with pytest.raises(BadInputError, match="openai:http"):
        open_backend(store, BackendSpec(model="openai:ftp://x#m"))
