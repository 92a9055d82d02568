"""The llama.cpp engine on the default base (SmolLM2-135M-Instruct GGUF) against llama_cpp.Llama
called directly with the same settings: same greedy text, same usage, stream == generate."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from luodi.config import Settings
from luodi.errors import BadInputError
from luodi.serve.backends import BackendSpec, GenRequest, GenResult, open_backend, resolve_engine
from luodi.serve.backends.base import StreamDelta, StreamEnd
from luodi.store import Store

llama_cpp = pytest.importorskip("llama_cpp")  # skipped only when llama-cpp-python is absent

pytestmark = pytest.mark.slow

# What llama-cpp-python is asked directly: the OpenAI sampling parameters only.
SAME = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """(the backend serving 'default', a llama_cpp.Llama on the same file)."""
    from luodi.serve.backends.llama_cpp import LlamaCppBackend

    store = Store(Settings(home=tmp_path_factory.mktemp("llama") / "home"))
    assert resolve_engine(store, BackendSpec(model="default")) == "llama_cpp"
    backend = open_backend(store, BackendSpec(model="default"))
    store.close()
    assert isinstance(backend, LlamaCppBackend)
    direct = llama_cpp.Llama(
        model_path=str(backend.gguf),
        n_ctx=2048,
        n_threads=os.cpu_count(),
        verbose=False,
        seed=0,
    )
    yield backend, direct
    asyncio.run(backend.aclose())
    direct.close()


async def stream_all(backend: Any, req: GenRequest) -> tuple[list[str], GenResult]:
    pieces = []
    async for ev in backend.stream(req):
        if isinstance(ev, StreamDelta):
            pieces.append(ev.text)
        else:
            assert isinstance(ev, StreamEnd)
            return pieces, ev.result
    raise AssertionError("no StreamEnd")


def chat(q: str, **kw: Any) -> GenRequest:
    return GenRequest(messages=[{"role": "user", "content": q}], prompt=None, temperature=0, **kw)


def test_default_base_serves_what_llama_cpp_says(served: tuple[Any, Any]) -> None:
    backend, direct = served
    assert Path(backend.gguf).suffix == ".gguf" and backend.ref.startswith("smollm2-135m-instruct")
    cases = [
        ("Hi!", 60),
        ("What is 2+2? Answer with one number.", 60),
        ("请用一句话介绍北京。", 24),
    ]

    async def main() -> None:
        for q, n in cases:
            want = direct.create_chat_completion(
                [{"role": "user", "content": q}], temperature=0, max_tokens=n, **SAME
            )
            r = await backend.generate(chat(q, max_tokens=n))
            assert r.text == want["choices"][0]["message"]["content"]
            assert r.finish_reason == want["choices"][0]["finish_reason"]
            usage = want["usage"]
            assert (r.prompt_tokens, r.completion_tokens) == (
                usage["prompt_tokens"],
                usage["completion_tokens"],
            )
            pieces, end = await stream_all(backend, chat(q, max_tokens=n))
            assert "".join(pieces) == end.text == r.text and end == r
            assert not any("\ufffd" in p for p in pieces)
        prompt = "The capital of France is"
        want = direct.create_completion(prompt, temperature=0, max_tokens=20, **SAME)
        r = await backend.generate(
            GenRequest(messages=None, prompt=prompt, temperature=0, max_tokens=20)
        )
        assert r.text == want["choices"][0]["text"]
        assert (r.prompt_tokens, r.completion_tokens, r.finish_reason) == (
            want["usage"]["prompt_tokens"],
            want["usage"]["completion_tokens"],
            "length",
        )

    asyncio.run(main())


def test_stop_strings_seed_and_context(served: tuple[Any, Any]) -> None:
    backend, _ = served

    async def main() -> None:
        full = await backend.generate(chat("Hi!", max_tokens=60))
        assert full.text.startswith("Hello! How")
        r = await backend.generate(chat("Hi!", max_tokens=60, stop=[" How"]))
        pieces, end = await stream_all(backend, chat("Hi!", max_tokens=60, stop=[" How"]))
        assert r.text == "Hello!" == "".join(pieces) == end.text and r.finish_reason == "stop"
        sampled = [
            await backend.generate(
                GenRequest(
                    messages=[{"role": "user", "content": "Write a word."}],
                    prompt=None,
                    temperature=1.0,
                    seed=s,
                    max_tokens=12,
                )
            )
            for s in (7, 7, 8)
        ]
        assert sampled[0].text == sampled[1].text != sampled[2].text  # the seed decides
        with pytest.raises(BadInputError, match="max_tokens is 100"):
            await backend.generate(chat("word " * 2100, max_tokens=100))

    asyncio.run(main())


def test_cancelled_stream_frees_the_model(served: tuple[Any, Any]) -> None:
    backend, _ = served
    req = GenRequest(messages=None, prompt="1, 2, 3, 4,", temperature=0, max_tokens=300)

    async def main() -> None:
        before = backend.stats()["tokens_generated"]
        gen = backend.stream(req)
        assert isinstance(await gen.__anext__(), StreamDelta)
        await gen.aclose()
        r = await backend.generate(chat("Hi!", max_tokens=5))
        assert r.completion_tokens == 5
        assert backend.stats()["tokens_generated"] - before - 5 < 150
        assert backend.stats()["active"] == 0 and backend.stats()["queue_depth"] == 0

    asyncio.run(main())
