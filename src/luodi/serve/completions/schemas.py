"""The OpenAI (legacy) completions protocol."""

from __future__ import annotations

from pydantic import Field, model_validator

from luodi.serve.chat.schemas import SamplingFields


class CompletionRequest(SamplingFields):
    """POST /v1/completions."""

    prompt: str | list[str] = Field(description="A prompt or a list of prompts.")
    echo: bool = Field(default=False, description="Not served (use false).")
    suffix: str | None = Field(default=None, description="Not served.")
    best_of: int | None = Field(default=None, description="Only 1 (or n) is served.")

    @model_validator(mode="after")
    def _checks(self) -> CompletionRequest:
        if self.echo:
            raise ValueError("echo is not supported by this gateway")
        if self.suffix:
            raise ValueError("suffix is not supported by this gateway")
        if self.best_of not in (None, 1, self.n):
            raise ValueError("best_of other than n is not supported")
        if isinstance(self.prompt, list) and not self.prompt:
            raise ValueError("prompt must not be an empty list")
        return self

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)
