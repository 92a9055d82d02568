"""The embedding engine: a luodi.rag.embed Embedder behind the Backend protocol.

Serves /v1/embeddings only. Texts are embedded as queries, which for e5 means its "query: "
prefix: the one e5 asks for when texts are compared with each other (the API does not say
whether a text is a query or a document). The embedder runs in a worker thread so the event
loop stays free; one call runs at a time (the embedder's own lock).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from luodi.errors import BackendTimeoutError, BackendUnavailableError, LuodiError
from luodi.rag.embed import Embedder, open_embedder
from luodi.serve.backends.base import (
    BackendSpec,
    GenRequest,
    GenResult,
    StreamDelta,
    StreamEnd,
    unsupported,
)
from luodi.store import Store


class EmbeddingBackend:
    """Embeddings from one embedder; generation requests are refused (BadInputError)."""

    def __init__(self, embedder: Embedder, *, timeout_s: float = 120.0) -> None:
        self.embedder = embedder
        self.ref = embedder.name
        self.capabilities = frozenset({"embeddings"})
        self.timeout_s = timeout_s
        self._active = 0
        self._waiting = 0
        self._closed = False

    async def generate(self, req: GenRequest) -> GenResult:
        """Not served: an embedder does not generate text."""
        raise unsupported(self.ref, "text generation (it is an embedding model)")

    async def stream(self, req: GenRequest) -> AsyncIterator[StreamDelta | StreamEnd]:
        """Not served: an embedder does not generate text."""
        raise unsupported(self.ref, "text generation (it is an embedding model)")
        yield  # pragma: no cover - makes this an async generator like the protocol's

    def _run(self, texts: list[str]) -> tuple[list[list[float]], int]:
        self._waiting -= 1
        self._active += 1
        try:
            vectors = self.embedder.embed_queries(texts)
            tokens = sum(self.embedder.count_tokens(texts))
        finally:
            self._active -= 1
        return vectors.tolist(), tokens

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """(one unit-length vector per text, tokens read)."""
        if self._closed:
            raise BackendUnavailableError(f"embedder {self.ref} is shut down")
        self._waiting += 1
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._run, texts), self.timeout_s)
        except LuodiError:
            raise
        except TimeoutError:
            raise BackendTimeoutError(
                f"embedder {self.ref} did not answer within {self.timeout_s:g} s"
            ) from None
        except Exception as exc:  # the engine failed: the server's side, not the client's
            raise BackendUnavailableError(
                f"embedder {self.ref} failed: {type(exc).__name__}: {exc}"
            ) from exc

    def stats(self) -> dict[str, float]:
        """queue_depth (calls waiting for the embedder), active (running)."""
        return {"queue_depth": float(max(self._waiting, 0)), "active": float(self._active)}

    async def aclose(self) -> None:
        """Refuse later calls (the embedder stays cached for the process)."""
        self._closed = True


def open_embedding(store: Store, spec: BackendSpec) -> EmbeddingBackend:
    """The embedder spec.model names ('minilm', 'e5' or a sentence-transformers folder)."""
    return EmbeddingBackend(open_embedder(spec.model), timeout_s=spec.timeout_s)


__all__ = ["EmbeddingBackend", "open_embedding"]
