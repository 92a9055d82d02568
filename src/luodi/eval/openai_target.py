"""An OpenAI-compatible endpoint as an eval target (vLLM, a hosted model, luodi's own server).

`openai:http://host:port/v1#MODEL` opens it. Generation uses chat completions (completions for
plain prompts); log-likelihoods use completions with `echo` and `logprobs`, probed when the
target is opened: a server that does not return prompt log-probabilities can only `generate`.
The API key is $LUODI_EVAL_API_KEY, else $OPENAI_API_KEY, else "EMPTY".
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from luodi.errors import BadInputError, NotFoundError
from luodi.eval.streaming import TokenStream
from luodi.eval.targets import GenerationParams, Prompt, TargetError, Unsupported

OPENAI_PREFIX = "openai:"


class OpenAITarget(Unsupported):
    """An OpenAI-compatible endpoint: chat completions for generation, completions with
    `echo` + `logprobs` for log-likelihoods (when the server returns them).

    Requests run `concurrency` at a time; replies keep the prompts' order. Errors from the
    server or the connection become TargetError (the client retries `max_retries` times).
    """

    def __init__(
        self,
        base_url: str,
        model: str | None,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 2,
        concurrency: int = 4,
    ) -> None:
        import openai

        self._openai = openai
        key = api_key or os.environ.get("LUODI_EVAL_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.client = openai.OpenAI(
            base_url=base_url, api_key=key or "EMPTY", timeout=timeout, max_retries=max_retries
        )
        self.base_url, self.concurrency, self.artifact = base_url, concurrency, None
        self.ref = f"{OPENAI_PREFIX}{base_url}"
        self.model_name = self._check_model(model)
        self.ref = f"{OPENAI_PREFIX}{base_url}#{self.model_name}"
        caps = {"generate", "stream"}
        if self._probe_logprobs():
            caps |= {"loglikelihood", "rolling_loglikelihood"}
        self.capabilities = frozenset(caps)

    def _check_model(self, model: str | None) -> str:
        """The model name, checked against /v1/models when the server lists them."""
        o = self._openai
        try:
            served = [m.id for m in self.client.models.list()]
        except o.APIConnectionError as exc:
            raise BadInputError(f"cannot reach {self.base_url}: {exc}") from exc
        except o.APIStatusError:  # listing models is optional for a compatible server
            served = []
        if model is None:
            if len(served) != 1:
                raise BadInputError(
                    f"name the model: {OPENAI_PREFIX}{self.base_url}#MODEL (served: "
                    f"{', '.join(served) or 'unknown'})"
                )
            return served[0]
        if served and model not in served:
            raise NotFoundError(
                f"{self.base_url} does not serve model {model!r}; it serves: {', '.join(served)}"
            )
        return model

    def _probe_logprobs(self) -> bool:
        try:
            lp = self._echo("Hello world")
        except TargetError:
            return False
        return lp is not None

    def _echo(self, prompt: str) -> Any:
        """The completions API's logprobs for `prompt` echoed back (None when not returned)."""
        o = self._openai
        try:
            res = self.client.completions.create(
                model=self.model_name,
                prompt=prompt,
                max_tokens=1,
                temperature=0.0,
                echo=True,
                logprobs=1,
            )
        except (o.APIStatusError, o.APIConnectionError, o.APITimeoutError) as exc:
            raise TargetError(f"{self.ref} failed: {exc}") from exc
        lp = res.choices[0].logprobs if res.choices else None
        if lp is None or not lp.token_logprobs or lp.text_offset is None:
            return None
        return lp

    def describe(self) -> dict[str, Any]:
        """Kind, URL, model name and what the endpoint can do."""
        return {
            "kind": "openai",
            "ref": self.ref,
            "base_url": self.base_url,
            "model": self.model_name,
            "content_hash": None,
            "capabilities": sorted(self.capabilities),
        }

    def _map(self, fn: Any, items: Sequence[Any]) -> list[Any]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(fn, items))

    def _scored(self, prompt: str, start: int) -> tuple[float, int]:
        """Sum and count of the echoed log-probs of the prompt's tokens from char `start` on."""
        lp = self._echo(prompt)
        if lp is None:
            raise TargetError(f"{self.ref} stopped returning prompt log-probabilities")
        offsets = list(lp.text_offset)
        total, count = 0.0, 0
        for i, (off, value) in enumerate(zip(offsets, lp.token_logprobs, strict=False)):
            if off >= len(prompt):
                break  # the generated token
            end = offsets[i + 1] if i + 1 < len(offsets) else len(prompt)
            if end > start and value is not None:
                total += float(value)
                count += 1
        return total, count

    def loglikelihood(
        self, contexts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[float]:
        """Log P(continuation | context) from the echoed prompt's token log-probs."""
        if "loglikelihood" not in self.capabilities:
            raise self._no("score log-likelihoods (its completions API returns no logprobs)")
        for c in contexts:
            if not isinstance(c, str):
                raise BadInputError(
                    f"{self.ref} scores plain-text prompts only; use prompt_style: plain"
                )
        pairs = [(str(c) + x, len(str(c))) for c, x in zip(contexts, continuations, strict=True)]
        return [s for s, _ in self._map(lambda p: self._scored(*p), pairs)]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[tuple[float, int]]:
        """Sum and count of each text's token log-probs (the first token has none)."""
        if "rolling_loglikelihood" not in self.capabilities:
            raise self._no("score log-likelihoods (its completions API returns no logprobs)")
        return self._map(lambda t: self._scored(t, 0), list(texts))

    def _common(self, params: GenerationParams) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "seed": params.seed,
        }

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]:
        """Chat completions for messages, completions for plain prompts."""
        o = self._openai
        common = self._common(params)

        def one(prompt: Prompt) -> str:
            try:
                if isinstance(prompt, str):
                    res = self.client.completions.create(prompt=prompt, **common)
                    return (res.choices[0].text or "").strip()
                chat = self.client.chat.completions.create(messages=list(prompt), **common)
                return (chat.choices[0].message.content or "").strip()
            except (o.APIStatusError, o.APIConnectionError, o.APITimeoutError) as exc:
                raise TargetError(f"{self.ref} failed: {exc}") from exc

        return self._map(one, list(prompts))

    def stream(self, prompt: Prompt, params: GenerationParams) -> TokenStream:
        """The reply streamed (`stream: true`), one piece per chunk with text.

        The token count is the server's `usage.completion_tokens` (asked for with
        `stream_options.include_usage`); a server that sends no usage leaves the count of text
        chunks, marked `exact = False`. Errors, also mid-stream, raise TargetError.
        """
        o = self._openai
        common = {
            **self._common(params),
            "stream": True,
            "stream_options": {"include_usage": True},
        }

        def produce(out: TokenStream) -> Iterator[str]:
            usage = None
            try:
                if isinstance(prompt, str):
                    chunks: Any = self.client.completions.create(prompt=prompt, **common)
                else:
                    chunks = self.client.chat.completions.create(messages=list(prompt), **common)
                with chunks:
                    for chunk in chunks:
                        if getattr(chunk, "usage", None) is not None:
                            usage = chunk.usage
                        if not chunk.choices:
                            continue
                        choice = chunk.choices[0]
                        delta = getattr(choice, "delta", None)
                        text = delta.content if delta is not None else getattr(choice, "text", "")
                        if text:
                            out.completion_tokens += 1
                            yield text
            except o.APIError as exc:  # status, connection, timeout, or an error event mid-stream
                raise TargetError(f"{self.ref} failed: {exc}") from exc
            if usage is not None and usage.completion_tokens is not None:
                out.completion_tokens = int(usage.completion_tokens)
            else:
                out.exact = False

        return TokenStream(produce)


def parse_openai_ref(ref: str) -> tuple[str, str | None]:
    """(base URL, model name or None) of `openai:http://HOST:PORT/v1#MODEL`."""
    url, _, model = ref.removeprefix(OPENAI_PREFIX).partition("#")
    if not url.startswith(("http://", "https://")):
        raise BadInputError(
            f"invalid endpoint target {ref!r}: expected openai:http://HOST:PORT/v1#MODEL"
        )
    return url.rstrip("/"), (model or None)
