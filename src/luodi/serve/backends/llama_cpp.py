"""The llama.cpp engine: a GGUF base model (the default SmolLM2 among them) on llama-cpp-python.

llama.cpp is the fastest CPU engine for GGUF files but a `Llama` object is not thread-safe,
so one worker thread owns it and runs one request at a time, taken from the same fair queue
as the transformers engine. Chat messages are rendered with the GGUF's own chat template (the
formatter llama-cpp-python's `create_chat_completion` uses), with tools offered the way
tools.py does for every local model (never llama.cpp's own tool handlers), and generated with
`create_completion(stream=True)`. Sampling follows the OpenAI parameters only: temperature
and top_p (llama.cpp's top_k and min_p filters are off, so replies match other engines').
Token counts come from the library's sampling loop (a stopping criterion sees every token).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from luodi.errors import BadInputError, MissingDependencyError
from luodi.models.chat import chatml_template
from luodi.serve.backends.base import (
    BackendSpec,
    GenRequest,
    GenResult,
    StreamDelta,
    StreamEnd,
    check_request,
    unsupported,
)
from luodi.serve.backends.scheduler import Job, Reply, Scheduler, job_events, job_result
from luodi.serve.backends.tools import prepare_messages, select_tools, template_supports_tools
from luodi.store import Store

N_CTX = 2048


def _llama_module() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingDependencyError(
            "the llama_cpp engine needs llama-cpp-python: pip install 'luodi[llama]' "
            f"(it compiles once, ~4 minutes), or use engine: transformers ({exc})"
        ) from exc
    return llama_cpp


class _TokenCounter:
    """A llama.cpp stopping criterion: counts sampled tokens and stops a cancelled job.

    The library calls it once per sampled token with the context so far (its length grows
    by one each call) and once more after the loop with an unchanged length, not counted.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.sampled = 0
        self._length = -1

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> bool:
        if len(input_ids) > self._length:
            self._length = len(input_ids)
            self.sampled += 1
        return self.job.cancelled.is_set()


class LlamaCppBackend:
    """A GGUF model on llama-cpp-python behind the Backend protocol (see the module docstring)."""

    def __init__(
        self,
        gguf: Path,
        *,
        ref: str,
        n_ctx: int = N_CTX,
        seed: int = 0,
        timeout_s: float = 120.0,
    ) -> None:
        llama_cpp = _llama_module()
        self._llama_cpp = llama_cpp
        self.ref = ref
        self.gguf = gguf
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(gguf),
                n_ctx=n_ctx,
                n_threads=os.cpu_count(),
                verbose=False,
                seed=seed,
            )
        except (ValueError, RuntimeError) as exc:
            raise BadInputError(f"llama.cpp cannot load {gguf}: {exc}") from exc
        self.n_ctx = n_ctx
        self.template = self.llm.metadata.get("tokenizer.chat_template") or chatml_template()
        self.native_tools = template_supports_tools(self.template)
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.formatter = Jinja2ChatFormatter(
            template=self.template,
            eos_token=self._token_text(self.llm.token_eos()),
            bos_token=self._token_text(self.llm.token_bos()),
        )
        self.capabilities = frozenset({"chat", "completions", "stream", "tools"})
        self.timeout_s = timeout_s
        self.scheduler = Scheduler(self._run_batch, max_batch=1, name=f"llama.cpp {ref}")

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    # -- preparing (caller's thread) ------------------------------------------------------
    def render(self, req: GenRequest) -> tuple[str, bool, Any]:
        """(prompt text, whether it is a rendered chat, the ToolSet offered or None)."""
        check_request(req, self.ref, self.capabilities)
        if req.messages is None:
            return str(req.prompt), False, None
        toolset = select_tools(req.tools, req.tool_choice)
        msgs = prepare_messages(req.messages, toolset, native=self.native_tools)
        tools = toolset.schemas() if toolset is not None and self.native_tools else None
        try:
            rendered = self.formatter(messages=msgs, tools=tools)
        except Exception as exc:  # the template's own checks (raise_exception)
            raise BadInputError(
                f"the conversation does not fit {self.ref}'s chat template: {exc}"
            ) from None
        return rendered.prompt, True, toolset

    def _job(self, req: GenRequest, want_deltas: bool) -> Job:
        text, is_chat, toolset = self.render(req)
        return Job(
            req=req,
            payload=(text, is_chat),
            key=None,  # one at a time: llama.cpp runs a single sequence here
            loop=asyncio.get_running_loop(),
            tools=toolset,
            want_deltas=want_deltas,
        )

    async def generate(self, req: GenRequest) -> GenResult:
        """The whole reply (see Backend.generate)."""
        job = self._job(req, want_deltas=False)
        return await job_result(job, self.scheduler.submit, self.timeout_s, self.ref)

    async def stream(self, req: GenRequest) -> AsyncIterator[StreamDelta | StreamEnd]:
        """The reply piece by piece, then a StreamEnd (see Backend.stream)."""
        job = self._job(req, want_deltas=True)
        async for event in job_events(job, self.scheduler.submit, self.timeout_s):
            yield event

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Not served: this backend generates text."""
        raise unsupported(self.ref, "embeddings")

    def stats(self) -> dict[str, float]:
        """queue_depth, active, tokens_generated."""
        return self.scheduler.stats()

    async def aclose(self) -> None:
        """Stop the worker (a running request ends with an error at its next token) and free
        the model; later requests fail."""
        if await asyncio.to_thread(self.scheduler.close):
            self.llm.close()  # only once no thread is inside it

    # -- running (worker thread) ----------------------------------------------------------
    def prompt_ids(self, text: str, is_chat: bool) -> list[int]:
        """Token ids as llama-cpp-python makes them: a rendered chat carries its own special
        tokens; a plain prompt gets the model's BOS when its vocabulary asks for one."""
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=not is_chat, special=True)
        return list(ids) or [self.llm.token_bos()]

    def _run_batch(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._run(job)

    def _run(self, job: Job) -> None:
        req = job.req
        text, is_chat = job.payload
        ids = self.prompt_ids(text, is_chat)
        if len(ids) + req.max_tokens > self.n_ctx:
            job.fail(
                BadInputError(
                    f"the prompt has {len(ids)} tokens and max_tokens is {req.max_tokens}: "
                    f"together more than {self.ref}'s context of {self.n_ctx} tokens; shorten "
                    "the prompt or lower max_tokens"
                )
            )
            return
        job.prompt_tokens = len(ids)
        reply = Reply(job)
        counter = _TokenCounter(job)
        if req.seed is not None:
            # Logits of a prompt reused from the KV cache differ in the last bits from a fresh
            # evaluation, enough to change a sample: a seeded request always starts fresh.
            self.llm.reset()
        seed = req.seed if req.seed is not None else random.randrange(2**31)
        chunks = self.llm.create_completion(
            prompt=ids,
            max_tokens=req.max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
            stop=[],
            seed=seed,
            stream=True,
            stopping_criteria=self._llama_cpp.StoppingCriteriaList([counter]),
        )
        out, finish = "", "length"
        try:
            for chunk in chunks:
                choice = chunk["choices"][0]
                out += choice["text"]
                if reply.update(out) or job.cancelled.is_set():
                    break
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        finally:
            chunks.close()  # stops the library's generator: no more tokens are sampled
        sampled = counter.sampled
        # The end-of-reply token is sampled but not part of the reply.
        completion = sampled - 1 if finish == "stop" and not reply.stopped else sampled
        self.scheduler.tokens_generated += sampled
        if not job.cancelled.is_set():
            reply.finish(finish, completion)


def open_llama_cpp(store: Store, spec: BackendSpec) -> LlamaCppBackend:
    """spec.model as a GGUF base model ('default' is SmolLM2) on llama-cpp-python.

    BadInputError when spec.model is not a GGUF base (a model version, an HF folder: serve
    those with engine transformers); MissingDependencyError without llama-cpp-python.
    """
    from luodi.models.base import resolve_base
    from luodi.train.versions import resolve_model

    _llama_module()
    model = spec.model.strip()
    try:
        info = resolve_model(store, model)
    except BadInputError:
        info = None
    if info is not None:
        raise BadInputError(
            f"{info.ref} is a trained model version (HF weights); llama.cpp serves GGUF base "
            "models: use engine transformers"
        )
    base = resolve_base(store, model)
    if base.meta.get("format") != "gguf":
        raise BadInputError(
            f"base model {base.ref} is not a GGUF file ({base.meta.get('format')}); llama.cpp "
            "serves GGUF models: use engine transformers"
        )
    gguf = Path(str(base.meta["path"])) / str(base.meta["gguf_file"])
    if not gguf.is_file():
        raise BadInputError(f"base model {base.ref}: {gguf} no longer exists")
    return LlamaCppBackend(gguf, ref=base.ref, timeout_s=spec.timeout_s)


__all__ = ["LlamaCppBackend", "open_llama_cpp"]
