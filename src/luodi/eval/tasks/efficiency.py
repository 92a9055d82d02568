"""`efficiency`: how fast the target answers, and what it costs in memory and disk.

For each question of a qa dataset (the conversation before its last assistant turn; `limit`
bounds how many) one reply is streamed, greedily, one request at a time, after `warmup`
untimed requests (first-call costs: lazy initialisation, caches). Per item, measured from the
call to the first piece of text: `ttft_s` (time to first token; for a local model the first
generated token, for an endpoint the first chunk with text; the whole latency when the reply
is empty), `latency_s` (until the last piece), `completion_tokens` and `tokens_per_s`
(completion tokens / latency).

Metrics: `ttft_p50`, `ttft_p95`, `latency_p50`, `latency_p95` (seconds; percentiles with
linear interpolation, as numpy.percentile), `tokens_per_s` (all completion tokens / all
generation time), and for a model running in this process `peak_rss_bytes` (the process's
peak resident set size after the task, from getrusage) and `rss_growth_bytes` (how much that
peak rose during the task); `disk_bytes`, the size on disk of the model version's files (a
base model's own folder or file). An endpoint has no RSS or disk figures here: they are
absent from the metrics and `details` says why.

These numbers are measurements: they change from run to run and machine to machine. The
task class is marked `measured = True` and its details say `reproducible: false` and list
`measured_metrics`, so a reproducibility check (same suite, target and seed give identical
numbers) can compare every other task exactly and leave this one out; the runner lists it in
the run's meta `measured_tasks`, and comparisons give its metrics a difference but no
significance test (a gate rule naming one still checks it).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from luodi.data.records import Record
from luodi.eval.targets import GenerationParams, Message, Target, TargetError
from luodi.eval.tasks.base import (
    EvalTask,
    ProblemLog,
    TaskEnv,
    TaskResult,
    in_batches,
    register,
    require,
    result,
)
from luodi.eval.tasks.generate import split_conversation
from luodi.progress import Progress
from luodi.store import ArtifactInfo

MEASURED_METRICS = (
    "ttft_p50",
    "ttft_p95",
    "latency_p50",
    "latency_p95",
    "tokens_per_s",
    "peak_rss_bytes",
    "rss_growth_bytes",
    "disk_bytes",
)


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far, in bytes (ru_maxrss is KiB on Linux,
    bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def path_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (symlinks not followed)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def model_files(artifact: ArtifactInfo) -> Path:
    """Where a model's weights live: a base model registered from a folder or GGUF file
    points at it (meta `path`); a model version's files are its artifact folder."""
    source = artifact.meta.get("path") if artifact.kind == "base_model" else None
    return Path(source) if source and Path(source).exists() else artifact.path


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation; 0.0 for no values."""
    return float(np.percentile(values, q)) if values else 0.0


def _in_process(target: Target) -> bool:
    """True for a model loaded in this process (its memory is this process's)."""
    return target.describe().get("kind") != "openai"


@register
class EfficiencyTask(EvalTask):
    """Time to first token, latency percentiles, tokens/s, peak RSS and size on disk."""

    task_type: ClassVar[str] = "efficiency"
    record_kinds: ClassVar[tuple[str, ...]] = ("qa",)
    main_score: ClassVar[str | None] = "latency_s"
    measured: ClassVar[bool] = True
    """Its numbers are timings and memory: not reproducible, left out of exact comparisons."""

    task: Literal["efficiency"] = Field(default="efficiency", description="efficiency")
    max_new_tokens: int = Field(default=64, ge=1, description="Longest reply, in tokens.")
    warmup: int = Field(
        default=1, ge=0, description="Untimed requests first (the first questions, repeated)."
    )
    system: str | None = Field(
        default=None, description="System prompt for conversations that have none."
    )

    def check_target(self, target: Target) -> None:
        """The target must stream replies."""
        require(target, "stream", self.label, "Use a causal model or an endpoint.")

    def _prompt(self, messages: list[Message]) -> list[Message]:
        if self.system and not (messages and messages[0]["role"] == "system"):
            return [{"role": "system", "content": self.system}, *messages]
        return messages

    def run(
        self, target: Target, records: list[Record], progress: Progress, env: TaskEnv
    ) -> TaskResult:
        """Stream one reply per question, timing each; memory and disk figures around it."""
        log = ProblemLog()
        work: list[tuple[Record, list[Message]]] = []
        for rec in records:
            conv = split_conversation(rec)
            if conv is None:
                log.add(rec, "skipped", "no user question before a non-empty assistant answer")
            else:
                work.append((rec, self._prompt(conv[0])))
        params = GenerationParams(
            max_new_tokens=self.max_new_tokens, temperature=0.0, seed=env.seed
        )
        local = _in_process(target)
        rss_before = peak_rss_bytes()
        warm_error: str | None = None
        try:
            for _, prompt in work[: self.warmup]:
                progress(task=self.label, message="warming up")
                for _ in target.stream(prompt, params):
                    pass
        except TargetError as exc:
            warm_error = exc.message

        def score(batch: Sequence[tuple[Record, list[Message]]]) -> list[dict[str, Any]]:
            out = []
            for rec, prompt in batch:
                start = time.perf_counter()
                stream = target.stream(prompt, params)
                first: float | None = None
                pieces = []
                for piece in stream:
                    if first is None:
                        first = time.perf_counter()
                    pieces.append(piece)
                end = time.perf_counter()
                latency = end - start
                ttft = (first if first is not None else end) - start
                tokens = stream.completion_tokens
                speed = tokens / latency if latency > 0 else 0.0
                users = [m["content"] for m in prompt if m["role"] == "user"]
                out.append(
                    {
                        "id": rec.get("id"),
                        "location": rec.get("location"),
                        "input": users[-1] if users else "",
                        "prediction": "".join(pieces).strip(),
                        "ttft_s": ttft,
                        "latency_s": latency,
                        "completion_tokens": tokens,
                        "tokens_exact": stream.exact,
                        "tokens_per_s": speed,
                        "scores": {"ttft_s": ttft, "latency_s": latency, "tokens_per_s": speed},
                    }
                )
            return out

        if warm_error is None:
            items, error = in_batches(work, self.batch_size, score, progress, self.label)
        else:
            items, error = [], warm_error
        rss_after = peak_rss_bytes()
        ttfts = [it["ttft_s"] for it in items]
        latencies = [it["latency_s"] for it in items]
        tokens = sum(it["completion_tokens"] for it in items)
        seconds = sum(latencies)
        metrics: dict[str, float] = {
            "ttft_p50": percentile(ttfts, 50),
            "ttft_p95": percentile(ttfts, 95),
            "latency_p50": percentile(latencies, 50),
            "latency_p95": percentile(latencies, 95),
            "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        }
        details: dict[str, Any] = {
            "reproducible": False,
            "measured_metrics": list(MEASURED_METRICS),
            "completion_tokens": tokens,
            "generation_seconds": seconds,
            "tokens_exact": all(it["tokens_exact"] for it in items),
            "warmup": min(self.warmup, len(work)),
            "requests": "sequential, one stream at a time",
        }
        if local:
            metrics["peak_rss_bytes"] = float(rss_after)
            metrics["rss_growth_bytes"] = float(max(0, rss_after - rss_before))
            details["rss"] = {"before_bytes": rss_before, "after_bytes": rss_after}
        else:
            details["rss"] = {
                "peak_rss_bytes": None,
                "reason": "the model runs in another process (an endpoint): its memory is not "
                "visible from here",
            }
        if target.artifact is not None:
            where = model_files(target.artifact)
            metrics["disk_bytes"] = float(path_bytes(where))
            details["disk"] = {"path": str(where), "bytes": int(metrics["disk_bytes"])}
        else:
            details["disk"] = {
                "bytes": None,
                "reason": "the target is not a registered model version or base (an endpoint "
                "or an in-memory model): there are no files to measure",
            }
        return result(
            metrics=metrics,
            items=items,
            records=len(records),
            log=log,
            error=error,
            details=details,
            prompt={"system": self.system, "generation": params.model_dump(), "streamed": True},
        )
