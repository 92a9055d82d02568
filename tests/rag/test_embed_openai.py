"""The OpenAI-compatible embedder against a real HTTP server that serves all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from luodi.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    BadInputError,
    NotFoundError,
)
from luodi.rag.embed import API_KEY_ENV, OpenAIEmbedder, open_embedder

TEXTS = ["How many days of annual leave do I get?", "The VPN guide is on the intranet.", "hi"]


@dataclass
class Upstream:
    """What the fake server saw and how it answers next."""

    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    tokenize: bool = False
    fail: tuple[int, str] | None = None
    drop_one: bool = False
    delay: float = 0.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    minilm = open_embedder("minilm")
    state = Upstream()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(
                {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
            )
            time.sleep(state.delay)
            if state.fail:
                status, message = state.fail
                return self._send(status, {"error": {"message": message, "type": "x"}})
            if self.path == "/tokenize":
                if not state.tokenize:
                    return self._send(404, {"detail": "Not Found"})
                return self._send(200, {"count": len(body["prompt"].split()) + 2})
            if self.path != "/v1/embeddings":
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            texts = body["input"]
            vectors = minilm.embed_passages(texts) * 3.0  # not unit length: the client scales
            data = [
                {"object": "embedding", "index": i, "embedding": v.tolist()}
                for i, v in enumerate(vectors)
            ][::-1]  # out of order: the client must sort by index
            if state.drop_one:
                data = data[1:]
            self._send(200, {"object": "list", "data": data, "model": body["model"]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def test_vectors_equal_the_model_the_endpoint_serves(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    emb = open_embedder(f"openai:{upstream.base}/#all-MiniLM-L6-v2")
    assert isinstance(emb, OpenAIEmbedder)
    assert emb.name == f"openai:{upstream.base}#all-MiniLM-L6-v2" and emb.dim == 384
    assert len(upstream.requests) == 1  # the dimension probe
    assert emb is open_embedder(f"openai:{upstream.base}/#all-MiniLM-L6-v2")
    assert len(upstream.requests) == 1
    reference = open_embedder("minilm").embed_passages(TEXTS)
    for got in (emb.embed_queries(TEXTS), emb.embed_passages(TEXTS)):
        assert got.dtype == np.float32 and got.shape == (3, 384)
        np.testing.assert_allclose(got, reference, atol=1e-6)
    assert emb.embed_queries([]).shape == (0, 384)
    sent = upstream.requests[1]
    assert sent["path"] == "/v1/embeddings" and sent["auth"] == "Bearer EMPTY"
    assert sent["body"] == {"model": "all-MiniLM-L6-v2", "input": TEXTS, "encoding_format": "float"}
    with pytest.raises(BadInputError):
        emb.embed_queries("one string")  # type: ignore[arg-type]


def test_batches_keep_order_and_the_api_key_is_sent(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(API_KEY_ENV, "sk-local-123")
    emb = OpenAIEmbedder(f"{upstream.base}#m", batch_size=2)
    many = [f"sentence number {i} about leave" for i in range(5)]
    got = emb.embed_passages(many)
    np.testing.assert_allclose(got, open_embedder("minilm").embed_passages(many), atol=1e-6)
    inputs = [r["body"]["input"] for r in upstream.requests[1:]]
    assert inputs == [many[0:2], many[2:4], many[4:5]]
    assert {r["auth"] for r in upstream.requests} == {"Bearer sk-local-123"}


def test_e5_models_get_their_prefixes(upstream: Upstream) -> None:
    emb = OpenAIEmbedder(f"{upstream.base}#intfloat/multilingual-e5-small")
    emb.embed_queries(["年假有几天"])
    emb.embed_passages(["年假十天"])
    assert [r["body"]["input"] for r in upstream.requests[1:]] == [
        ["query: 年假有几天"],
        ["passage: 年假十天"],
    ]
    plain = OpenAIEmbedder(f"{upstream.base}#bge-m3")
    plain.embed_queries(["x"])
    assert upstream.requests[-1]["body"]["input"] == ["x"]


def test_token_counts_from_tokenize_or_an_estimate(upstream: Upstream) -> None:
    emb = OpenAIEmbedder(f"{upstream.base}#m")
    # No /tokenize (404): the documented estimate, 1 per CJK char + 1 per 4 other chars + 2.
    assert emb.count_tokens(["年假十天", "hello world", ""]) == [6, 5, 2]
    assert emb._tokenize is False
    upstream.tokenize = True
    served = OpenAIEmbedder(f"{upstream.base}#m")
    assert served.count_tokens(["one two three", "four"]) == [5, 3]
    assert upstream.requests[-1] == {
        "path": "/tokenize",
        "auth": "Bearer EMPTY",
        "body": {"model": "m", "prompt": "four"},
    }


def test_upstream_failures_are_clear_errors(upstream: Upstream) -> None:
    emb = OpenAIEmbedder(f"{upstream.base}#m")
    cases = [
        (400, "input is too long", BadInputError, "refused the texts: input is too long"),
        (404, "model 'm' not found", NotFoundError, "model 'm' not found"),
        (401, "bad key", BackendUnavailableError, API_KEY_ENV),
        (503, "overloaded", BackendUnavailableError, r"failed \(503\): overloaded"),
    ]
    for status, message, error, match in cases:
        upstream.fail = (status, message)
        with pytest.raises(error, match=match):
            emb.embed_queries(["x"])
    upstream.fail = None
    upstream.drop_one = True
    with pytest.raises(BackendUnavailableError, match="returned 1 vectors for 2 texts"):
        emb.embed_queries(["a", "b"])
    upstream.drop_one = False
    quick = OpenAIEmbedder(f"{upstream.base}#m", timeout=0.2)
    upstream.delay = 0.5
    with pytest.raises(BackendTimeoutError, match="timed out"):
        quick.embed_queries(["x"])
    upstream.delay = 0.0


def test_bad_references_and_unreachable_endpoints() -> None:
    for ref in ("openai:localhost:8000#m", "openai:http://127.0.0.1:9/v1", "openai:#m"):
        with pytest.raises(BadInputError, match="openai:http://HOST:PORT/v1#MODEL"):
            open_embedder(ref)
    with pytest.raises(BackendUnavailableError, match="cannot be reached"):
        OpenAIEmbedder("http://127.0.0.1:9/v1#m", timeout=2)
    with pytest.raises(NotFoundError, match="openai:http://HOST:PORT/v1#MODEL"):
        open_embedder("bge-large-zh")
