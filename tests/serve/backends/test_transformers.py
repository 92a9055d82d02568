"""The transformers engine on a tiny model trained to memorise answers: stream == generate ==
the eval target's generation, batching changes no reply, fair queueing, stop strings, length,
context errors, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from luodi.errors import BackendUnavailableError, BadInputError, NotFoundError
from luodi.eval.targets import GenerationParams, LocalCausalTarget
from luodi.serve.backends import BackendSpec, GenRequest, GenResult, open_backend, resolve_engine
from luodi.serve.backends.base import StreamDelta, StreamEnd
from luodi.serve.backends.scheduler import FairQueue, Job
from luodi.serve.backends.transformers import TransformersBackend, pick_dtype
from luodi.store import Store
from tests.serve.backends.conftest import QA


def chat(q: str, **kw: Any) -> GenRequest:
    return GenRequest(messages=[{"role": "user", "content": q}], prompt=None, temperature=0, **kw)


def plain(p: str, **kw: Any) -> GenRequest:
    return GenRequest(messages=None, prompt=p, temperature=0, **kw)


async def collect(backend: Any, req: GenRequest) -> tuple[list[str], GenResult]:
    pieces: list[str] = []
    async for ev in backend.stream(req):
        if isinstance(ev, StreamDelta):
            pieces.append(ev.text)
        else:
            assert isinstance(ev, StreamEnd)
            return pieces, ev.result
    raise AssertionError("stream ended without StreamEnd")


@pytest.fixture(scope="module")
def backend(helpdesk_home: Any) -> Iterator[TransformersBackend]:
    from luodi.config import Settings

    store = Store(Settings(home=helpdesk_home))
    b = open_backend(store, BackendSpec(model="helpdesk", dtype="float32", max_batch=8))
    store.close()
    assert isinstance(b, TransformersBackend)
    yield b
    asyncio.run(b.aclose())


def test_generate_stream_and_eval_target_agree(backend: TransformersBackend) -> None:
    assert backend.ref == "helpdesk:v1"
    assert next(backend.model.parameters()).dtype == torch.float32
    target = LocalCausalTarget(backend.model, backend.tokenizer, ref="helpdesk:v1")
    reqs = [chat(q, max_tokens=40) for q, _ in QA] + [plain("Monday to", max_tokens=12)]
    params = GenerationParams(max_new_tokens=40)
    expected = target.generate([r.messages for r in reqs[:-1]], params)  # type: ignore[misc]
    expected += target.generate(["Monday to"], GenerationParams(max_new_tokens=12))

    async def main() -> None:
        for req, (_, answer), want in zip(reqs, [*QA, ("", "")], expected, strict=True):
            result = await backend.generate(req)
            pieces, end = await collect(backend, req)
            assert result.text.strip() == want
            assert "".join(pieces) == end.text == result.text
            assert end == result and not any("\ufffd" in p for p in pieces)
            if answer:  # the memorised answer, ended by the end token
                assert result.text.strip() == answer and result.finish_reason == "stop"
                assert len(pieces) > 1  # streamed, not one block
                ids = backend.tokenizer.apply_chat_template(
                    req.messages, tokenize=True, add_generation_prompt=True, return_dict=False
                )
                assert result.prompt_tokens == len(ids)
                reply_ids = backend.tokenizer(answer, add_special_tokens=False)["input_ids"]
                assert result.completion_tokens == len(reply_ids)

    asyncio.run(main())


def test_batched_replies_equal_replies_alone(backend: TransformersBackend) -> None:
    reqs = [chat(q, max_tokens=30 + 5 * i) for i, (q, _) in enumerate(QA)]
    reqs += [plain(p, max_tokens=m) for p, m in [("Open", 8), ("年假", 20), ("Your dep", 5)]]
    reqs += [chat("Monday?", max_tokens=3)]

    async def main() -> tuple[list[GenResult], list[GenResult], dict[str, float]]:
        alone = [await backend.generate(r) for r in reqs]  # one at a time: batches of one
        before = backend.stats()
        with backend.scheduler.hold():  # let the burst queue up, then run as one batch
            tasks = [asyncio.create_task(backend.generate(r)) for r in reqs]
            while backend.stats()["queue_depth"] < len(reqs):
                await asyncio.sleep(0.001)
        together = await asyncio.gather(*tasks)
        after = backend.stats()
        return alone, list(together), {"batches": after["batches"] - before["batches"]}

    alone, together, ran = asyncio.run(main())
    assert ran["batches"] == 1 and backend.stats()["largest_batch"] == len(reqs)
    assert together == alone
    assert {r.finish_reason for r in alone} == {"stop", "length"}


def test_one_users_burst_does_not_starve_another(backend: TransformersBackend) -> None:
    fair = TransformersBackend(backend.model, backend.tokenizer, ref="helpdesk:v1", max_batch=2)
    order: list[str] = []

    async def one(name: str, user: str) -> None:
        await fair.generate(chat(QA[0][0], max_tokens=12, user=user))
        order.append(name)

    async def main() -> None:
        with fair.scheduler.hold():
            tasks = [asyncio.create_task(one(f"a{i}", "alice")) for i in range(10)]
            tasks.append(asyncio.create_task(one("b", "bob")))
            while fair.stats()["queue_depth"] < 11:
                await asyncio.sleep(0.001)
        await asyncio.gather(*tasks)
        await fair.aclose()

    asyncio.run(main())
    assert len(order) == 11
    assert order.index("b") < order.index("a9")
    assert order.index("b") <= 1  # bob rode in the first batch, not behind alice's ten


def _job(user: str, key: Any) -> Job:
    loop = asyncio.new_event_loop()
    loop.close()
    return Job(req=plain("x", user=user), payload=None, key=key, loop=loop)


def test_fair_queue_round_robin_and_batch_keys() -> None:
    q = FairQueue()
    a = [_job("a", "greedy") for _ in range(4)]
    b = [_job("b", "greedy"), _job("b", None)]
    c = [_job("c", ("sample", 0.7))]
    for j in [*a, *b, *c]:
        q.push(j)
    assert len(q) == 7
    assert q.take(3) == [a[0], b[0], a[1]]  # a and b in turn; c's key differs: it waits
    assert q.take(8) == [c[0]]  # c was passed over: it goes next, alone with its key
    a[3].cancelled.set()  # a cancelled job is dropped, never run
    assert q.take(8) == [b[1]]  # key None: alone
    assert q.take(8) == [a[2]]
    assert len(q) == 0 and q.take(8) == []


def test_stop_strings_and_length(backend: TransformersBackend) -> None:
    q, answer = QA[0]  # "Monday to Friday, 9am to 6pm."

    async def main() -> None:
        for stop, text in [([" to"], "Monday"), (["Fri", "xyz"], "Monday to "), (["!!"], answer)]:
            r = await backend.generate(chat(q, max_tokens=40, stop=stop))
            pieces, end = await collect(backend, chat(q, max_tokens=40, stop=stop))
            assert r.text.strip() == text.strip() and r.finish_reason == "stop"
            assert "".join(pieces) == end.text == r.text
        r = await backend.generate(chat(q, max_tokens=3))
        pieces, end = await collect(backend, chat(q, max_tokens=3))
        assert (r.finish_reason, r.completion_tokens) == ("length", 3)
        assert answer.startswith(r.text.strip()) and len(r.text.strip()) < len(answer)
        assert "".join(pieces) == end.text == r.text

    asyncio.run(main())


def test_prompt_too_long_for_the_context(backend: TransformersBackend) -> None:
    long = "Monday " * 3000

    async def main() -> None:
        with pytest.raises(BadInputError) as err:
            await backend.generate(plain(long, max_tokens=7))
        msg = err.value.message
        n = len(backend.tokenizer(long)["input_ids"])
        assert str(n) in msg and "max_tokens is 7" in msg and str(backend.max_context) in msg
        with pytest.raises(BadInputError):
            await collect(backend, chat(long, max_tokens=7))
        # Fits alone, but not with the room asked for the reply.
        fits = plain("Monday " * 5, max_tokens=backend.max_context)
        with pytest.raises(BadInputError, match="context"):
            await backend.generate(fits)

    asyncio.run(main())


def test_cancelled_stream_stops_its_row_and_frees_the_slot(random_lm: Any) -> None:
    model, tok = random_lm
    b = TransformersBackend(model, tok, ref="random", max_batch=1)
    req = plain("Monday to Friday", max_tokens=400)

    async def main() -> None:
        full = await b.generate(req)
        assert (full.finish_reason, full.completion_tokens) == ("length", 400)
        before = b.stats()["tokens_generated"]
        gen = b.stream(req)
        first = await gen.__anext__()
        assert isinstance(first, StreamDelta)
        await gen.aclose()  # the client went away
        after_short = await b.generate(plain("Open", max_tokens=5))  # the slot is free
        assert after_short.completion_tokens == 5
        spent = b.stats()["tokens_generated"] - before - 5
        assert spent < 200  # the cancelled row stopped long before its 400 tokens
        assert b.stats()["queue_depth"] == 0 and b.stats()["active"] == 0
        await b.aclose()

    asyncio.run(main())


def test_engine_resolution_and_errors(helpdesk_store: Store) -> None:
    assert resolve_engine(helpdesk_store, BackendSpec(model="helpdesk@candidate")) == (
        "transformers"
    )
    assert resolve_engine(helpdesk_store, BackendSpec(model="openai:http://h:1/v1#m")) == "openai"
    assert resolve_engine(helpdesk_store, BackendSpec(model="e5")) == "embedding"
    spec = BackendSpec(model="helpdesk", engine="transformers")
    assert resolve_engine(helpdesk_store, spec) == "transformers"
    with pytest.raises(NotFoundError, match="helpdesk"):
        open_backend(helpdesk_store, BackendSpec(model="nope"))


def test_bfloat16_weights_when_asked(helpdesk_store: Store) -> None:
    assert pick_dtype("float32") == torch.float32 and pick_dtype("bfloat16") == torch.bfloat16
    b = open_backend(helpdesk_store, BackendSpec(model="helpdesk:v1", dtype="bfloat16"))
    assert isinstance(b, TransformersBackend)
    assert next(b.model.parameters()).dtype == torch.bfloat16
    r = asyncio.run(b.generate(chat(QA[0][0], max_tokens=40)))
    assert r.text.strip() == QA[0][1]
    asyncio.run(b.aclose())


def test_closing_the_backend_ends_running_and_later_requests(random_lm: Any) -> None:
    model, tok = random_lm
    b = TransformersBackend(model, tok, ref="random", max_batch=1)

    async def main() -> None:
        gen = b.stream(plain("Monday to Friday", max_tokens=400))
        assert isinstance(await gen.__anext__(), StreamDelta)
        await b.aclose()
        with pytest.raises(BackendUnavailableError, match="shut down"):
            async for _ in gen:
                pass
        with pytest.raises(BackendUnavailableError, match="shut down"):
            await b.generate(plain("Open", max_tokens=5))
        assert b.model is None  # the weights can be freed

    asyncio.run(main())
