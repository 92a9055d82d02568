"""The openai engine: any OpenAI-compatible server upstream (vLLM, a hosted model, another
luodi), `openai:http://HOST:PORT/v1#MODEL`.

Requests go straight through one pooled keep-alive aiohttp session (no SDK in the hot path;
aiohttp's C parser costs ~0.2 ms a round trip here where httpx costs ~0.8 ms, which decides
the gateway's added latency): chat completions, completions and embeddings, streamed ones
parsed from SSE line by line.
Tool calls and usage pass through; a stream asks for usage (`stream_options.include_usage`),
and an upstream that rejects that option is asked again without it. When the upstream reports
no usage, the counts are 0 and `usage_estimated` is set: nothing is guessed.

Errors: an upstream 4xx is the client's mistake and comes back as UpstreamRequestError (a
BadInputError with the upstream's status and message), except 401/403 (the gateway's own key
is wrong: BackendUnavailableError) and 429 (RateLimitedError with the upstream's Retry-After);
5xx and connection failures are BackendUnavailableError, timeouts BackendTimeoutError.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx

from luodi.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    BadInputError,
    RateLimitedError,
)
from luodi.serve.backends.base import (
    OPENAI_PREFIX,
    BackendSpec,
    GenRequest,
    GenResult,
    StreamDelta,
    StreamEnd,
    ToolCall,
    check_request,
)
from luodi.store import Store

_ALL = frozenset({"chat", "completions", "embeddings", "stream", "tools"})


class UpstreamRequestError(BadInputError):
    """The upstream refused the request as malformed (a 4xx); `http_status` is its status."""

    code = "upstream_bad_request"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.http_status = status


def parse_ref(ref: str) -> tuple[str, str | None]:
    """(base URL, model or None) of `openai:http://HOST:PORT/v1#MODEL`.

    The same form as luodi.eval.openai_target.parse_openai_ref, parsed here so a gateway that
    serves only upstreams never imports the eval stack (and torch with it).
    """
    url, _, model = ref.strip().removeprefix(OPENAI_PREFIX).partition("#")
    if not url.startswith(("http://", "https://")):
        raise BadInputError(f"invalid upstream {ref!r}: expected openai:http://HOST:PORT/v1#MODEL")
    return url.rstrip("/"), (model or None)


class _Failed:
    """An upstream error response, read whole."""

    def __init__(self, status: int, body: bytes, headers: Any, reason: str | None) -> None:
        self.status_code = status
        self.body = body
        self.headers = headers
        self.reason = reason or ""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _message(resp: _Failed) -> str:
    """The upstream's error message (OpenAI shape, FastAPI's detail, or the body's start)."""
    try:
        data = json.loads(resp.body)
    except ValueError:
        return resp.text[:500].strip() or resp.reason
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        for key in ("message", "detail", "error"):
            if data.get(key):
                value = data[key]
                return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return json.dumps(data, ensure_ascii=False)[:500]


class UpstreamBackend:
    """An OpenAI-compatible server behind the Backend protocol (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.ref = f"{OPENAI_PREFIX}{self.base_url}#{model}"
        self.capabilities = _ALL
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        connect = min(timeout_s, 10.0)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=connect)
        # A stream may run longer than timeout_s in all; it fails when the upstream is silent.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=connect, sock_read=timeout_s
        )
        # One pooled session per event loop: connections belong to the loop that opened them.
        self._client: aiohttp.ClientSession | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._usage_option = True  # cleared when the upstream rejects stream_options
        self._active = 0
        self._closed = False

    # -- transport ------------------------------------------------------------------------
    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise BackendUnavailableError(f"upstream {self.ref} is shut down")
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=512, limit_per_host=0),
                json_serialize=json.dumps,
            )
            self._client_loop = loop
        return self._client

    def _error(self, resp: _Failed) -> Exception:
        status, msg = resp.status_code, _message(resp)
        where = f"upstream {self.base_url}"
        if status in (401, 403):
            return BackendUnavailableError(
                f"{where} refused the gateway's credentials ({status}): {msg}; check the "
                "route's api_key_env"
            )
        if status == 429:
            try:
                retry = float(resp.headers.get("retry-after", "1"))
            except ValueError:
                retry = 1.0
            return RateLimitedError(f"{where} is rate limited: {msg}", retry_after=retry)
        if 400 <= status < 500:
            return UpstreamRequestError(f"{where} rejected the request ({status}): {msg}", status)
        return BackendUnavailableError(f"{where} failed ({status}): {msg}")

    def _transport_error(self, exc: Exception) -> Exception:
        if isinstance(exc, TimeoutError):
            return BackendTimeoutError(
                f"upstream {self.base_url} did not answer within {self.timeout_s:g} s"
            )
        return BackendUnavailableError(
            f"cannot reach upstream {self.base_url}: {type(exc).__name__}: {exc}"
        )

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._active += 1
        try:
            async with self._http().post(self.base_url + path, json=body) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise self._error(_Failed(resp.status, raw, resp.headers, resp.reason))
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._transport_error(exc) from exc
        finally:
            self._active -= 1
        try:
            data = json.loads(raw)
        except ValueError:
            raise BackendUnavailableError(
                f"upstream {self.base_url} answered {path} with something other than JSON"
            ) from None
        if not isinstance(data, dict):
            raise BackendUnavailableError(f"upstream {self.base_url} sent an unexpected answer")
        return data

    # -- requests -------------------------------------------------------------------------
    def _body(self, req: GenRequest, stream: bool) -> tuple[str, dict[str, Any]]:
        check_request(req, self.ref, self.capabilities)
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
        }
        optional = {"stop": req.stop or None, "seed": req.seed, "user": req.user}
        if req.messages is not None:
            path = "/chat/completions"
            body["messages"] = req.messages
            optional |= {"tools": req.tools or None, "tool_choice": req.tool_choice}
        else:
            path = "/completions"
            body["prompt"] = req.prompt
        body |= {k: v for k, v in optional.items() if v is not None}
        if stream:
            body["stream"] = True
            if self._usage_option:
                body["stream_options"] = {"include_usage": True}
        return path, body

    @staticmethod
    def _usage(data: dict[str, Any]) -> tuple[int, int, bool]:
        usage = data.get("usage")
        if not isinstance(usage, dict):
            return 0, 0, True
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), False

    async def generate(self, req: GenRequest) -> GenResult:
        """The whole reply from the upstream (see Backend.generate)."""
        path, body = self._body(req, stream=False)
        data = await self._post(path, body)
        choices = data.get("choices") or []
        if not choices:
            raise BackendUnavailableError(f"upstream {self.base_url} returned no choices")
        choice = choices[0]
        calls: list[ToolCall] = []
        if req.messages is not None:
            message = choice.get("message") or {}
            text = message.get("content") or ""
            for c in message.get("tool_calls") or []:
                fn = c.get("function") or {}
                calls.append(
                    ToolCall(
                        id=str(c.get("id")),
                        name=str(fn.get("name")),
                        arguments=str(fn.get("arguments") or "{}"),
                    )
                )
        else:
            text = choice.get("text") or ""
        prompt_tokens, completion_tokens, missing = self._usage(data)
        return GenResult(
            text=text,
            finish_reason=choice.get("finish_reason") or ("tool_calls" if calls else "stop"),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            tool_calls=calls,
            usage_estimated=missing,
        )

    async def stream(self, req: GenRequest) -> AsyncIterator[StreamDelta | StreamEnd]:
        """The reply as the upstream streams it, then a StreamEnd (see Backend.stream).
        Closing the iterator closes the upstream connection, which stops its generation."""
        path, body = self._body(req, stream=True)
        self._active += 1
        try:
            async for event in self._stream(path, body, chat=req.messages is not None):
                yield event
        finally:
            self._active -= 1

    async def _stream(
        self, path: str, body: dict[str, Any], *, chat: bool
    ) -> AsyncIterator[StreamDelta | StreamEnd]:
        failed: _Failed | None = None
        try:
            async with self._http().post(
                self.base_url + path, json=body, timeout=self._stream_timeout
            ) as resp:
                if resp.status >= 400:
                    failed = _Failed(resp.status, await resp.read(), resp.headers, resp.reason)
                else:
                    async for event in self._events(resp, chat=chat):
                        yield event
                    return
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._transport_error(exc) from exc
        assert failed is not None
        if failed.status_code == 400 and "stream_options" in body:
            if "stream_options" in _message(failed):
                self._usage_option = False  # this upstream does not know the option
                retry = {k: v for k, v in body.items() if k != "stream_options"}
                async for event in self._stream(path, retry, chat=chat):
                    yield event
                return
        raise self._error(failed)

    async def _events(
        self, resp: aiohttp.ClientResponse, *, chat: bool
    ) -> AsyncIterator[StreamDelta | StreamEnd]:
        """Deltas of an SSE response (choice 0), then the StreamEnd with usage and calls."""
        pieces: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finish: str | None = None
        usage: Any = None
        async for raw in resp.content:
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line.startswith("data:"):
                continue  # blank separators, comments, event names
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                obj = json.loads(data)
            except json.JSONDecodeError:
                raise BackendUnavailableError(
                    f"upstream {self.base_url} sent a malformed stream event"
                ) from None
            if obj.get("error"):
                err = obj["error"]
                msg = err.get("message") if isinstance(err, dict) else str(err)
                raise BackendUnavailableError(f"upstream {self.base_url} failed: {msg}")
            usage = obj.get("usage") or usage
            for choice in obj.get("choices") or []:
                if choice.get("index", 0) != 0:
                    continue
                delta = (choice.get("delta") or {}) if chat else {}
                text = delta.get("content") if chat else choice.get("text")
                for tc in delta.get("tool_calls") or []:
                    slot = calls.setdefault(
                        int(tc.get("index", 0)), {"id": "", "name": "", "arguments": ""}
                    )
                    fn = tc.get("function") or {}
                    slot["id"] = tc.get("id") or slot["id"]
                    slot["name"] += fn.get("name") or ""
                    slot["arguments"] += fn.get("arguments") or ""
                if text:
                    pieces.append(text)
                    yield StreamDelta(text)
                finish = choice.get("finish_reason") or finish
        prompt_tokens, completion_tokens, missing = self._usage({"usage": usage})
        tool_calls = [
            ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"] or "{}")
            for _, c in sorted(calls.items())
        ]
        yield StreamEnd(
            GenResult(
                text="".join(pieces),
                finish_reason=finish or ("tool_calls" if tool_calls else "stop"),
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                tool_calls=tool_calls,
                usage_estimated=missing,
            )
        )

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """(vectors in the order of `texts`, prompt tokens the upstream counted)."""
        data = await self._post("/embeddings", {"model": self.model, "input": list(texts)})
        rows = sorted(data.get("data") or [], key=lambda d: int(d.get("index", 0)))
        if len(rows) != len(texts):
            raise BackendUnavailableError(
                f"upstream {self.base_url} returned {len(rows)} embeddings for {len(texts)} texts"
            )
        usage = data.get("usage") or {}
        tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
        return [list(map(float, r["embedding"])) for r in rows], tokens

    def stats(self) -> dict[str, float]:
        """queue_depth (always 0: the upstream queues), active (requests in flight)."""
        return {"queue_depth": 0.0, "active": float(self._active)}

    async def aclose(self) -> None:
        """Close the connection pool; later requests fail."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.close()


def _api_key(spec: BackendSpec) -> str | None:
    if spec.api_key_env is None:
        return None  # never forward a key the route did not name (e.g. OPENAI_API_KEY)
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise BadInputError(
            f"the upstream's API key variable {spec.api_key_env} (api_key_env) is not set"
        )
    return key


def _only_model(base_url: str, api_key: str | None, timeout_s: float) -> str:
    """The one model an upstream lists at /models (when the ref names none)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        resp = httpx.get(f"{base_url}/models", headers=headers, timeout=min(timeout_s, 10.0))
        served = [str(m["id"]) for m in resp.json().get("data", [])] if resp.is_success else []
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        served = []
    if len(served) != 1:
        raise BadInputError(
            f"name the upstream model: {OPENAI_PREFIX}{base_url}#MODEL (it lists: "
            f"{', '.join(served) or 'nothing readable'})"
        )
    return served[0]


def open_upstream(store: Store, spec: BackendSpec) -> UpstreamBackend:
    """The upstream spec.model names; the key from $spec.api_key_env when set. Nothing is
    contacted unless the ref names no model (then /models must list exactly one)."""
    base_url, model = parse_ref(spec.model)
    key = _api_key(spec)
    if model is None:
        model = _only_model(base_url, key, spec.timeout_s)
    return UpstreamBackend(base_url, model, api_key=key, timeout_s=spec.timeout_s)


__all__ = ["UpstreamBackend", "UpstreamRequestError", "open_upstream", "parse_ref"]
