"""Serving backends behind one protocol: local transformers and llama.cpp engines, an
OpenAI-compatible upstream, embedders and composites (a domain and a general model).

Each engine registers in BACKENDS under its name; its module (and torch, llama.cpp, httpx)
is imported only when a backend of that engine is opened, so a gateway serving only
upstreams starts without loading torch. `open_backend(store, spec)` opens the one a
BackendSpec names.
"""

from __future__ import annotations

from luodi.serve.backends.base import (
    BACKENDS,
    Backend,
    BackendSpec,
    GenRequest,
    GenResult,
    StreamDelta,
    StreamEnd,
    ToolCall,
    open_backend,
    resolve_engine,
)
from luodi.store import Store


@BACKENDS.register("transformers")
def _transformers(store: Store, spec: BackendSpec) -> Backend:
    from luodi.serve.backends.transformers import open_transformers

    return open_transformers(store, spec)


@BACKENDS.register("llama_cpp")
def _llama_cpp(store: Store, spec: BackendSpec) -> Backend:
    from luodi.serve.backends.llama_cpp import open_llama_cpp

    return open_llama_cpp(store, spec)


@BACKENDS.register("openai")
def _openai(store: Store, spec: BackendSpec) -> Backend:
    from luodi.serve.backends.openai import open_upstream

    return open_upstream(store, spec)


@BACKENDS.register("embedding")
def _embedding(store: Store, spec: BackendSpec) -> Backend:
    from luodi.serve.backends.embedding import open_embedding

    return open_embedding(store, spec)


@BACKENDS.register("composite")
def _composite(store: Store, spec: BackendSpec) -> Backend:
    from luodi.serve.backends.composite import open_composite

    return open_composite(store, spec)


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendSpec",
    "GenRequest",
    "GenResult",
    "StreamDelta",
    "StreamEnd",
    "ToolCall",
    "open_backend",
    "resolve_engine",
]
