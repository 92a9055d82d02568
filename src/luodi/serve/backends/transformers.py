"""The transformers engine: a model version or base served from this process, batched.

The model loads through luodi.chat.load_chat_model (model versions with their adapters, base
folders, GGUF files through transformers). A Scheduler thread owns it: queued requests that
can share a forward pass (greedy ones; sampling ones with equal temperature and top_p and no
seed) run as one left-padded `generate` call of up to `max_batch` rows; a request with a seed
runs alone under that seed. A StoppingCriteria sees every new token of every row: it decodes
the row's ids (holding back an unfinished multi-byte character), streams the new text, ends
the row at an end token, a stop string, its own max_tokens or its consumer leaving, and the
other rows go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Hashable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from luodi.errors import BadInputError
from luodi.models.chat import ensure_chat_template, fit_embeddings, stop_token_ids
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

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_REPLACEMENT = "\ufffd"  # what decode shows for the bytes of an unfinished character


@lru_cache(maxsize=1)
def bf16_is_fast() -> bool:
    """Whether bfloat16 matmuls beat float32 on this CPU (checked once per process).

    CPUs announcing AVX-512 BF16 or AMX do; otherwise a small timing decides (best of a few
    runs, so a busy machine does not flip it): bf16 must be at least 20% faster.
    """
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
        if "avx512_bf16" in flags or "amx_bf16" in flags:
            return True
    best: dict[torch.dtype, float] = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(16, 512, dtype=dtype), torch.randn(512, 512, dtype=dtype)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(10):
                a @ b
            times.append(time.perf_counter() - start)
        best[dtype] = min(times)
    return best[torch.bfloat16] < 0.8 * best[torch.float32]


def pick_dtype(name: str) -> torch.dtype:
    """torch dtype for BackendSpec.dtype ("auto": bfloat16 when bf16_is_fast)."""
    if name == "auto":
        return torch.bfloat16 if bf16_is_fast() else torch.float32
    return _DTYPES[name]


class _Row:
    __slots__ = ("ids", "count", "done", "reply")

    def __init__(self, job: Job) -> None:
        self.ids: list[int] = []
        self.count = 0  # tokens of the reply (end token not counted)
        self.done = False
        self.reply = Reply(job)


class _Rows(StoppingCriteria):
    """Per-row bookkeeping run by `generate` after each step: stream, stop, finish."""

    def __init__(self, backend: TransformersBackend, jobs: list[Job]) -> None:
        self.backend = backend
        self.jobs = jobs
        self.rows = [_Row(j) for j in jobs]
        self.stop_ids = set(backend.stop_ids)

    def _end(self, row: _Row, reason: str) -> None:
        row.done = True
        if not row.reply.job.cancelled.is_set():
            row.reply.finish(reason, row.count)

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **_: Any) -> torch.BoolTensor:
        new = input_ids[:, -1].tolist()
        live = 0
        for row, token in zip(self.rows, new, strict=True):
            if row.done:
                continue
            job = row.reply.job
            if job.cancelled.is_set():
                row.done = True
                continue
            live += 1
            if token in self.stop_ids:
                self._end(row, "stop")
                continue
            row.ids.append(token)
            row.count += 1
            text = self.backend.decode(row.ids)
            at_limit = row.count >= job.req.max_tokens
            if row.reply.update(text if at_limit else text.rstrip(_REPLACEMENT)):
                self._end(row, "stop")
            elif at_limit:
                self._end(row, "length")
        self.backend.scheduler.tokens_generated += live
        return torch.tensor([r.done for r in self.rows], dtype=torch.bool)  # type: ignore[return-value]

    def finish_all(self) -> None:
        """End rows `generate` stopped without us (its own length limit)."""
        for row in self.rows:
            if not row.done:
                self._end(row, "length")


class TransformersBackend:
    """A causal LM in this process behind the Backend protocol (see the module docstring)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        ref: str,
        max_batch: int = 8,
        timeout_s: float = 120.0,
    ) -> None:
        self.ref = ref
        self.model = model
        self.tokenizer = ensure_chat_template(tokenizer)
        if not hasattr(model, "peft_config"):  # a PeftModel's embeddings already fit
            fit_embeddings(model, self.tokenizer)
        model.eval()
        limit = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_context = int(min(limit, self.tokenizer.model_max_length or limit))
        self.stop_ids = stop_token_ids(self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.stop_ids[0] if self.stop_ids else 0
        self.native_tools = template_supports_tools(self.tokenizer.chat_template)
        self.capabilities = frozenset({"chat", "completions", "stream", "tools"})
        self.timeout_s = timeout_s
        self._device = next(model.parameters()).device
        # The Rust tokenizer is shared by the event loop (encoding) and the worker (decoding).
        self._tok_lock = threading.Lock()
        self.scheduler = Scheduler(self._run_batch, max_batch=max_batch, name=f"model {ref}")

    # -- preparing (caller's thread) ------------------------------------------------------
    def encode_request(self, req: GenRequest) -> tuple[list[int], Any]:
        """(prompt token ids, the ToolSet offered or None) for `req`, checked against the
        context. BadInputError for a malformed request or a prompt that leaves no room for
        max_tokens (naming both numbers)."""
        check_request(req, self.ref, self.capabilities)
        toolset = None
        with self._tok_lock:
            if req.messages is not None:
                toolset = select_tools(req.tools, req.tool_choice)
                msgs = prepare_messages(req.messages, toolset, native=self.native_tools)
                extra = {"tools": toolset.schemas()} if toolset and self.native_tools else {}
                try:
                    text = self.tokenizer.apply_chat_template(
                        msgs, tokenize=False, add_generation_prompt=True, **extra
                    )
                except Exception as exc:  # the template's own checks (raise_exception)
                    raise BadInputError(
                        f"the conversation does not fit {self.ref}'s chat template: {exc}"
                    ) from None
                ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            else:
                ids = list(self.tokenizer(req.prompt, add_special_tokens=True)["input_ids"])
        if not ids:  # an empty prompt: start from the beginning-of-text token
            start = self.tokenizer.bos_token_id
            ids = [start if start is not None else self.pad_id]
        if len(ids) + req.max_tokens > self.max_context:
            raise BadInputError(
                f"the prompt has {len(ids)} tokens and max_tokens is {req.max_tokens}: together "
                f"more than {self.ref}'s context of {self.max_context} tokens; shorten the "
                "prompt or lower max_tokens"
            )
        return ids, toolset

    @staticmethod
    def batch_key(req: GenRequest) -> Hashable | None:
        """Requests with equal keys share a batch: greedy ones, or sampling ones with equal
        settings; a seeded sampling request runs alone (None) so its seed reproduces it."""
        if req.temperature == 0:
            return ("greedy",)
        if req.seed is None:
            return ("sample", req.temperature, req.top_p)
        return None

    def _job(self, req: GenRequest, want_deltas: bool) -> Job:
        ids, toolset = self.encode_request(req)
        return Job(
            req=req,
            payload=ids,
            key=self.batch_key(req),
            loop=asyncio.get_running_loop(),
            tools=toolset,
            want_deltas=want_deltas,
            prompt_tokens=len(ids),
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
        """Not served: a causal LM here does not make embeddings."""
        raise unsupported(self.ref, "embeddings")

    def stats(self) -> dict[str, float]:
        """queue_depth, active, tokens_generated."""
        return self.scheduler.stats()

    async def aclose(self) -> None:
        """Stop the worker (running requests end with an error at their next token) and drop
        the model so its memory can be freed; later requests fail."""
        if await asyncio.to_thread(self.scheduler.close):
            self.model = None  # type: ignore[assignment]

    # -- running (worker thread) ----------------------------------------------------------
    def decode(self, ids: list[int]) -> str:
        """Text of reply token ids (special tokens dropped)."""
        with self._tok_lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _sampling(self, req: GenRequest) -> dict[str, Any]:
        if req.temperature == 0:
            # Explicit, so a model's own sampling defaults cannot make greedy decoding random.
            return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return {"do_sample": True, "temperature": req.temperature, "top_p": req.top_p, "top_k": 0}

    def _run_batch(self, jobs: list[Job]) -> None:
        rows: list[list[int]] = [j.payload for j in jobs]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
        tracker = _Rows(self, jobs)
        first = jobs[0].req
        seeded = first.seed is not None and first.temperature > 0
        with contextlib.ExitStack() as stack:
            if seeded:  # the seed decides this request only: the global RNG is restored
                stack.enter_context(torch.random.fork_rng(devices=[]))
                torch.manual_seed(int(first.seed))  # type: ignore[arg-type]
            stack.enter_context(torch.inference_mode())
            self.model.generate(
                input_ids=ids.to(self._device),
                attention_mask=mask.to(self._device),
                max_new_tokens=max(j.req.max_tokens for j in jobs),
                eos_token_id=self.stop_ids or None,
                pad_token_id=self.pad_id,
                stopping_criteria=StoppingCriteriaList([tracker]),
                **self._sampling(first),
            )
        tracker.finish_all()


def open_transformers(store: Store, spec: BackendSpec) -> TransformersBackend:
    """Load spec.model (a model version or base) with transformers in spec.dtype."""
    from luodi.chat import load_chat_model

    model, tokenizer, ref = load_chat_model(store, spec.model.strip())
    dtype = pick_dtype(spec.dtype)
    if dtype != torch.float32:
        model = model.to(dtype)
    return TransformersBackend(
        model, tokenizer, ref=ref, max_batch=spec.max_batch, timeout_s=spec.timeout_s
    )


__all__ = ["TransformersBackend", "bf16_is_fast", "open_transformers", "pick_dtype"]
