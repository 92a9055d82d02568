"""Eval targets: what a suite is run against, behind one protocol.

A target reference is one of:
- `NAME`, `NAME:vN`, `NAME@STAGE`: a registered model version (a causal LM, or a classifier
  trained by the classify stage);
- a registered base model, `default`, or the path of an HF model folder / GGUF file;
- `openai:http://host:port/v1#MODEL`: any OpenAI-compatible endpoint (vLLM, a hosted model,
  luodi's own server). The API key is $LUODI_EVAL_API_KEY, else $OPENAI_API_KEY, else "EMPTY".
- a composite (`NAME`, `NAME:vN`, `composite:NAME`; luodi.collab): a domain and a general model
  scored through the member each item is routed to (luodi.collab.target).

Targets say what they can do in `capabilities`; tasks check them before a run starts, so an
impossible suite fails at once with nothing stored:
- `generate`: replies to chat messages (or plain prompts);
- `loglikelihood`: log P(continuation | context) for plain-text contexts;
- `chat_loglikelihood`: the same with chat messages as context (rendered with the model's chat
  template; local models only: an HTTP API does not expose the template);
- `rolling_loglikelihood`: the log-likelihood of whole texts (perplexity);
- `classify`: label names for texts (classifier versions);
- `stream`: one reply streamed as it is generated (`stream(prompt, params)`, a TokenStream
  that counts the tokens), for time-to-first-token measurements.
A local causal model can do all but `classify`; an endpoint can `generate` and `stream`, and the
log-likelihood ones when its `/v1/completions` returns prompt log-probabilities
(`echo` + `logprobs`, as vLLM does), which is probed when it is opened.

Failures while scoring (a server error, a dropped connection, running out of memory) raise
TargetError, which tasks turn into partial results.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from luodi.errors import BadInputError, StageFailedError
from luodi.eval.streaming import TokenStream, stream_generate
from luodi.progress import quiet_hf_bars
from luodi.store import ArtifactInfo, Store

Message = dict[str, str]
Prompt = str | list[Message]


class TargetError(StageFailedError):
    """The target failed while scoring (server error, connection lost, out of memory)."""


class GenerationParams(BaseModel):
    """How replies are generated; recorded in the run so it can be reproduced."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(default=64, ge=1, description="Longest reply, in tokens.")
    temperature: float = Field(
        default=0.0, ge=0.0, description="0 decodes greedily (the same reply every run)."
    )
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    seed: int = Field(default=0, description="Sampling seed (set by the run's seed).")


class Target(Protocol):
    """Something a suite can be scored against."""

    ref: str
    """The resolved reference (NAME:vN, a base, or openai:URL#MODEL)."""
    capabilities: frozenset[str]
    artifact: ArtifactInfo | None
    """The registered model version or base, for lineage (None for an endpoint)."""

    def describe(self) -> dict[str, Any]:
        """What identifies the target in run.json: kind, ref, content hash, settings."""
        ...

    def loglikelihood(
        self, contexts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[float]:
        """Sum of log P(continuation tokens | context) for each pair, in natural log."""
        ...

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[tuple[float, int]]:
        """(sum of token log-probabilities, number of tokens scored) of each whole text."""
        ...

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]:
        """The reply to each prompt (chat messages or plain text), stripped."""
        ...

    def classify(self, texts: Sequence[str]) -> list[str]:
        """The label name a classifier gives each text."""
        ...

    def stream(self, prompt: Prompt, params: GenerationParams) -> TokenStream:
        """The reply to one prompt as it is generated (pieces joined and stripped equal
        `generate([prompt], params)[0]` for a greedy local model)."""
        ...


def _render_key(prompt: Prompt) -> Any:
    return prompt if isinstance(prompt, str) else tuple((m["role"], m["content"]) for m in prompt)


def _accepts(model: Any, name: str) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(base.forward).parameters


class _Job:
    """One forward sequence: `ids` in, log-probs of `targets` read at its last positions."""

    __slots__ = ("ids", "reads", "requests")

    def __init__(self, ids: list[int], reads: int, requests: list[tuple[int, list[int]]]) -> None:
        self.ids, self.reads, self.requests = ids, reads, requests


class Unsupported:
    """Base of targets: what a target cannot do raises the BadInputError tasks check for."""

    ref: str

    def _no(self, what: str) -> BadInputError:
        return BadInputError(f"target {self.ref} cannot {what}")

    def loglikelihood(
        self, contexts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[float]:
        """Not available on this target."""
        raise self._no("score log-likelihoods")

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[tuple[float, int]]:
        """Not available on this target."""
        raise self._no("score log-likelihoods")

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]:
        """Not available on this target."""
        raise self._no("generate text")

    def classify(self, texts: Sequence[str]) -> list[str]:
        """Not available on this target."""
        raise self._no("classify texts (it is not a classifier version)")

    def stream(self, prompt: Prompt, params: GenerationParams) -> TokenStream:
        """Not available on this target."""
        raise self._no("stream replies")


class NoTarget(Unsupported):
    """The target of a run whose tasks call no model (retrieval only, `needs_target()` false
    for every task): it can do nothing, is recorded as kind "none", and adds no parent."""

    ref = "none"
    capabilities: frozenset[str] = frozenset()
    artifact: ArtifactInfo | None = None

    def describe(self) -> dict[str, Any]:
        """kind and ref "none": no model was scored."""
        return {"kind": "none", "ref": self.ref, "content_hash": None}


def _sampling(params: GenerationParams) -> dict[str, Any]:
    """`generate` keyword arguments for greedy decoding or sampling."""
    if params.temperature > 0:
        return {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
    # Explicit, so a model's own sampling defaults cannot turn greedy decoding random.
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


class LocalCausalTarget(Unsupported):
    """A causal LM in this process: batched log-likelihoods and batched generation.

    Contexts and continuations are tokenized apart (spaces ending a context move to the
    continuation, as in lm-eval-harness). Requests whose continuation is one token and whose
    contexts are identical (a multiple-choice item's options) share one forward pass of the
    context; others run context + continuation. Sequences are sorted by length and left-padded
    into batches of `batch_size`, and only the logits of the positions read are computed.
    Inputs longer than the model's context are cut from the left (counted in `truncated`).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        ref: str,
        artifact: ArtifactInfo | None = None,
        kind: str = "model",
        batch_size: int = 16,
    ) -> None:
        from luodi.models.chat import ensure_chat_template, fit_embeddings

        self.model, self.ref, self.artifact, self.kind = model, ref, artifact, kind
        self.tokenizer = ensure_chat_template(tokenizer)
        if not hasattr(model, "peft_config"):  # a PeftModel's embeddings already fit
            fit_embeddings(model, self.tokenizer)
        self.model.eval()
        self.batch_size = batch_size
        limit = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_length = int(min(limit, tokenizer.model_max_length or limit))
        self.capabilities = frozenset(
            {"generate", "loglikelihood", "chat_loglikelihood", "rolling_loglikelihood", "stream"}
        )
        self.truncated = 0
        self._keep = _accepts(model, "logits_to_keep")
        self._positions = _accepts(model, "position_ids")
        self._device = next(model.parameters()).device

    def describe(self) -> dict[str, Any]:
        """Kind, ref, content hash and the model's size."""
        return {
            "kind": self.kind,
            "ref": self.ref,
            "content_hash": self.artifact.content_hash if self.artifact else None,
            "model_class": type(self.model).__name__,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "max_length": self.max_length,
            "batch_size": self.batch_size,
        }

    # -- encoding ------------------------------------------------------------------------
    def _texts(self, prompts: Sequence[Prompt]) -> list[str]:
        """Prompt texts: chat messages rendered with the template and the assistant header."""
        keys = [_render_key(p) for p in prompts]
        chats = {k: list(p) for k, p in zip(keys, prompts, strict=True) if not isinstance(p, str)}
        rendered: dict[Any, str] = {}
        if chats:  # one call for all conversations: the per-call overhead dominates small ones
            texts = self.tokenizer.apply_chat_template(
                list(chats.values()), tokenize=False, add_generation_prompt=True
            )
            rendered = dict(zip(chats, texts, strict=True))
        return [k if isinstance(k, str) else rendered[k] for k in keys]

    def _encode(self, texts: Sequence[str], chat: Sequence[bool]) -> list[list[int]]:
        """Token ids; plain texts get the tokenizer's special tokens (BOS), rendered chats
        already contain theirs."""
        out: list[list[int]] = [[] for _ in texts]
        for flag in (True, False):
            idx = [i for i, c in enumerate(chat) if c == flag]
            if idx:
                enc = self.tokenizer([texts[i] for i in idx], add_special_tokens=not flag)
                for i, ids in zip(idx, enc["input_ids"], strict=True):
                    out[i] = list(ids)
        return out

    # -- scoring -------------------------------------------------------------------------
    def _run_jobs(self, jobs: list[_Job], n: int) -> list[float]:
        """Forward the jobs in length-sorted, left-padded batches; summed log-probs per request."""
        out = [0.0] * n
        order = sorted(range(len(jobs)), key=lambda j: (-len(jobs[j].ids), j))
        pad = self.tokenizer.pad_token_id or 0
        for start in range(0, len(order), self.batch_size):
            batch = [jobs[j] for j in order[start : start + self.batch_size]]
            width = max(len(job.ids) for job in batch)
            keep = max(job.reads for job in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, job in enumerate(batch):
                ids[row, width - len(job.ids) :] = torch.tensor(job.ids, dtype=torch.long)
                mask[row, width - len(job.ids) :] = 1
            kwargs: dict[str, Any] = {
                "input_ids": ids.to(self._device),
                "attention_mask": mask.to(self._device),
            }
            if self._positions:
                kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(self._device)
            if self._keep:
                kwargs["logits_to_keep"] = keep
            try:
                with torch.inference_mode():
                    logits = self.model(**kwargs).logits[:, -keep:, :]
            except RuntimeError as exc:  # out of memory and other runtime failures
                raise TargetError(f"{self.ref} failed in a forward pass: {exc}") from exc
            logp = torch.log_softmax(logits.float(), dim=-1)
            # One gather for the whole batch: (row, position, token) of every target token.
            rows, positions, tokens, owners = [], [], [], []
            for row, job in enumerate(batch):
                for req, targets in job.requests:
                    rows += [row] * len(targets)
                    positions += range(keep - len(targets), keep)
                    tokens += targets
                    owners += [req] * len(targets)
            values = logp[rows, positions, tokens].tolist()
            for req, value in zip(owners, values, strict=True):
                out[req] += value
        return out

    def _cut(self, ids: list[int], reads: int) -> list[int]:
        if len(ids) <= self.max_length:
            return ids
        if reads > self.max_length:
            raise BadInputError(
                f"a continuation of {reads} tokens does not fit {self.ref}'s context of "
                f"{self.max_length} tokens"
            )
        self.truncated += 1
        return ids[-self.max_length :]

    def _pairs(
        self, contexts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[tuple[list[int], list[int]]]:
        """(context ids, continuation ids) per pair, each distinct string encoded once.

        As in lm-eval-harness, spaces ending a context belong to the continuation and the two
        are tokenized apart, so an answer's tokens do not depend on what precedes it.
        """
        ctx_of: dict[tuple[str, bool], list[int]] = {}
        cont_of: dict[str, list[int]] = {}
        keys: list[tuple[tuple[str, bool], str]] = []
        for text, prompt, cont in zip(self._texts(contexts), contexts, continuations, strict=True):
            head = text.rstrip(" ")
            key, tail = (head, not isinstance(prompt, str)), text[len(head) :] + cont
            ctx_of[key], cont_of[tail] = [], []
            keys.append((key, tail))
        unique = list(ctx_of)
        for key, ids in zip(
            unique, self._encode([k[0] for k in unique], [k[1] for k in unique]), strict=True
        ):
            ctx_of[key] = ids
        tails = list(cont_of)
        if tails:
            enc = self.tokenizer(tails, add_special_tokens=False)["input_ids"]
            cont_of.update((t, list(ids)) for t, ids in zip(tails, enc, strict=True))
        return [(ctx_of[k], cont_of[t]) for k, t in keys]

    def loglikelihood(
        self, contexts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[float]:
        """Sum of log P(continuation | context) per pair (see the class docstring)."""
        if len(contexts) != len(continuations):
            raise ValueError("contexts and continuations differ in length")
        groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
        jobs: list[_Job] = []
        for i, (ctx, cont) in enumerate(self._pairs(contexts, continuations)):
            full = ctx + cont
            if not cont:
                raise BadInputError(f"empty continuation {continuations[i]!r} cannot be scored")
            if not ctx:
                raise BadInputError("an empty context cannot be scored: give a prompt")
            if len(cont) == 1:
                groups.setdefault(tuple(ctx), []).append((i, cont))
            else:
                jobs.append(_Job(self._cut(full[:-1], len(cont)), len(cont), [(i, cont)]))
        for ctx_key, reqs in groups.items():
            jobs.append(_Job(self._cut(list(ctx_key), 1), 1, reqs))
        return self._run_jobs(jobs, len(contexts))

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[tuple[float, int]]:
        """Every token of each text scored, the first one after BOS (or EOS when there is no
        BOS); texts longer than the context are scored in disjoint windows."""
        prefix = self.tokenizer.bos_token_id
        if prefix is None:
            prefix = self.tokenizer.eos_token_id
        encoded = self._encode(list(texts), [False] * len(texts))
        jobs: list[_Job] = []
        owners: list[int] = []
        counts = [0] * len(texts)
        for i, ids in enumerate(encoded):
            if prefix is not None and ids and ids[0] == prefix:
                ids = ids[1:]  # the tokenizer added BOS itself
            if prefix is None:  # nothing to predict the first token from: it is not scored
                seq, tokens = ids, ids[1:]
            else:
                seq, tokens = [prefix, *ids], ids
            counts[i] = len(tokens)
            for a in range(0, len(tokens), self.max_length):
                window = seq[a : a + self.max_length + 1]
                jobs.append(_Job(window[:-1], len(window) - 1, [(len(owners), window[1:])]))
                owners.append(i)
        sums = self._run_jobs(jobs, len(owners))
        totals = [0.0] * len(texts)
        for owner, value in zip(owners, sums, strict=True):
            totals[owner] += value
        return list(zip(totals, counts, strict=True))

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]:
        """Replies in length-sorted, left-padded batches; greedy unless temperature > 0."""
        from luodi.models.chat import stop_token_ids

        texts = self._texts(prompts)
        encoded = self._encode(texts, [not isinstance(p, str) for p in prompts])
        room = max(1, self.max_length - params.max_new_tokens)
        pad = self.tokenizer.pad_token_id or 0
        sampling = _sampling(params)
        # Length-sorted batches pad less; replies go back to the prompts' order.
        order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))
        out: list[str] = [""] * len(encoded)
        for b, start in enumerate(range(0, len(order), self.batch_size)):
            idx = order[start : start + self.batch_size]
            rows = []
            for i in idx:
                ids = encoded[i]
                if len(ids) > room:
                    self.truncated += 1
                    ids = ids[-room:]
                rows.append(ids)
            width = max(len(r) for r in rows)
            ids_t = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids_t)
            for i, r in enumerate(rows):
                ids_t[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
                mask[i, width - len(r) :] = 1
            torch.manual_seed(params.seed + b)  # sampling reproducible batch by batch
            try:
                with torch.inference_mode():
                    gen = self.model.generate(
                        input_ids=ids_t.to(self._device),
                        attention_mask=mask.to(self._device),
                        max_new_tokens=params.max_new_tokens,
                        eos_token_id=stop_token_ids(self.tokenizer) or None,
                        pad_token_id=pad,
                        **sampling,
                    )
            except RuntimeError as exc:
                raise TargetError(f"{self.ref} failed while generating: {exc}") from exc
            for i, row in zip(idx, gen[:, width:], strict=True):
                out[i] = self.tokenizer.decode(row, skip_special_tokens=True).strip()
        return out

    def stream(self, prompt: Prompt, params: GenerationParams) -> TokenStream:
        """The reply to `prompt`, one piece per generated token (a piece is empty while a
        token ends inside a multi-byte character, or for a special token).

        `model.generate` runs in a worker thread and hands each token over as it is made, so
        the first piece arrives after the prompt's forward pass and one decoding step. The
        same prompt and parameters give what `generate` gives (one row, no padding). A failure
        in generation raises TargetError after the pieces already produced.
        """
        from luodi.models.chat import stop_token_ids

        (text,) = self._texts([prompt])
        (ids,) = self._encode([text], [not isinstance(prompt, str)])
        room = max(1, self.max_length - params.max_new_tokens)
        if len(ids) > room:
            self.truncated += 1
            ids = ids[-room:]
        input_ids = torch.tensor([ids], dtype=torch.long, device=self._device)
        kwargs = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "max_new_tokens": params.max_new_tokens,
            "eos_token_id": stop_token_ids(self.tokenizer) or None,
            "pad_token_id": self.tokenizer.pad_token_id or 0,
            **_sampling(params),
        }

        def fail(exc: BaseException) -> TargetError:
            return TargetError(f"{self.ref} failed while generating: {exc}")

        # Seeded as `generate`'s first batch, so a sampled stream matches it too.
        return stream_generate(self.model, self.tokenizer, kwargs, seed=params.seed, fail=fail)


class LocalClassifierTarget(Unsupported):
    """A classifier version (classify stage): label names via luodi.train.classify.predict."""

    def __init__(
        self, model: Any, tokenizer: Any, *, ref: str, artifact: ArtifactInfo, batch_size: int = 16
    ) -> None:
        self.model, self.tokenizer, self.ref, self.artifact = model, tokenizer, ref, artifact
        self.batch_size = batch_size
        config = artifact.meta.get("config") or {}
        self.cutoff_len = int(config.get("cutoff_len") or 512)
        self.labels = [str(x) for x in artifact.meta.get("labels") or []]
        self.capabilities = frozenset({"classify"})

    def describe(self) -> dict[str, Any]:
        """Kind, ref, content hash, labels and the cutoff used for encoding."""
        return {
            "kind": "classifier",
            "ref": self.ref,
            "content_hash": self.artifact.content_hash,
            "labels": self.labels,
            "cutoff_len": self.cutoff_len,
        }

    def classify(self, texts: Sequence[str]) -> list[str]:
        """Label names, encoded as in training (the version's cutoff_len)."""
        from luodi.train.classify import predict

        try:
            return predict(
                self.model,
                self.tokenizer,
                list(texts),
                cutoff_len=self.cutoff_len,
                batch_size=self.batch_size,
            )
        except RuntimeError as exc:
            raise TargetError(f"{self.ref} failed while classifying: {exc}") from exc


def open_target(store: Store, ref: str, *, batch_size: int = 16) -> Target:
    """The target `ref` names (see the module docstring), loaded and ready to score.

    Model versions of the classify stage open as classifiers; reward models are refused
    (they score answers, they do not produce them). NotFoundError naming the known models and
    bases when `ref` is none of the forms; BadInputError for an untrained tiny base or an
    endpoint that cannot be reached or does not serve the model.
    """
    from luodi.eval.openai_target import OPENAI_PREFIX, OpenAITarget, parse_openai_ref
    from luodi.models.loading import load_base
    from luodi.registry.stages import resolve_model_or_base
    from luodi.train.versions import load_model_version

    ref = ref.strip()
    if ref.startswith(OPENAI_PREFIX):
        return OpenAITarget(*parse_openai_ref(ref))
    from luodi.collab.composite import find_composite

    if find_composite(store, ref) is not None:  # a composite scores through its members
        from luodi.collab.target import open_composite_target

        return open_composite_target(store, ref, batch_size=batch_size)
    info = resolve_model_or_base(
        store, ref, "target", "a target can also be openai:http://HOST:PORT/v1#MODEL"
    )
    if info.kind == "model":
        if info.meta.get("task") == "classify" and not info.meta.get("labels"):
            raise BadInputError(
                f"{info.ref} is a reward model: it scores answers and cannot be evaluated as "
                "a target; evaluate the policy model instead"
            )
        with quiet_hf_bars():
            model_, tokenizer = load_model_version(store, info.ref)
        if info.meta.get("task") == "classify":
            return LocalClassifierTarget(
                model_, tokenizer, ref=info.ref, artifact=info, batch_size=batch_size
            )
        return LocalCausalTarget(
            model_, tokenizer, ref=info.ref, artifact=info, kind="model", batch_size=batch_size
        )
    base = info
    if base.meta.get("format") == "tiny":
        raise BadInputError(
            f"{base.ref} is an untrained tiny model (its tokenizer is trained with it); "
            "evaluate a model version trained from it"
        )
    with quiet_hf_bars():
        model_, tokenizer = load_base(base)
    return LocalCausalTarget(
        model_, tokenizer, ref=base.ref, artifact=base, kind="base_model", batch_size=batch_size
    )
