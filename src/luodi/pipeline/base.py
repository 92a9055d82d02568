"""The contract of a pipeline stage kind, and the registry the kinds are found in by name.

A stage kind wraps one of luodi's stage functions (the same one its CLI command calls, with
the same config model): `config` validates a stage's `with`, `inputs` names what the stage
reads (artifact content hashes, file sha256) for the cache key, `run` calls the stage
function and returns its output version, `check` adds load-time checks pydantic cannot do
(a suite file that must parse) and `valid` tells whether a cached output still holds (a
model still in the stage a `register` put it in).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from luodi.errors import StageFailedError
from luodi.progress import Progress, no_progress
from luodi.registry import Registry
from luodi.store import ArtifactInfo, Store
from luodi.store.hashing import sha256_file


class StageOutput(BaseModel):
    """What a stage made (or, for `register`, acted on): one artifact version."""

    kind: str = Field(description="Artifact kind: dataset, model, eval_run, eval_gate, ...")
    ref: str = Field(description="NAME:vN of the output.")
    content_hash: str = Field(description="Content hash of the output version.")
    detail: dict[str, Any] = Field(
        default_factory=dict, description="A few figures of the result (rows, metrics, ...)."
    )

    @classmethod
    def of(cls, info: ArtifactInfo, **detail: Any) -> StageOutput:
        """The output naming artifact `info`."""
        return cls(kind=info.kind, ref=info.ref, content_hash=info.content_hash, detail=detail)


class StageRejected(StageFailedError):
    """The stage ran and made its output, but the output says stop (a failed gate, a
    partial eval run): the stage fails and its dependants are skipped."""

    def __init__(self, message: str, output: StageOutput) -> None:
        super().__init__(message)
        self.output = output


@dataclass
class StageContext:
    """What a stage runs with: the store, the progress callback, the folder relative paths
    in the pipeline file start from, and the artifacts its `inputs` found (lineage)."""

    store: Store
    base_dir: Path
    progress: Progress = no_progress
    used: list[ArtifactInfo] = field(default_factory=list)

    def artifact(self, info: ArtifactInfo | None, label: str) -> dict[str, str]:
        """{label: kind@content hash} of an input artifact (nothing for None), noted as used.

        The version number is left out on purpose: the same content under another version
        number is the same input."""
        if info is None:
            return {}
        self.used.append(info)
        return {label: f"{info.kind}@{info.content_hash}"}


@dataclass(frozen=True)
class StageKind:
    """One kind of pipeline stage (see the module docstring)."""

    name: str
    help: str
    config: type[BaseModel]
    run: Callable[[StageContext, Any], StageOutput]
    inputs: Callable[[StageContext, Any], dict[str, str]]
    check: Callable[[Any], None] | None = None
    valid: Callable[[Store, StageOutput, Any], bool] | None = None
    output_kind: str = field(default="")


STAGES: Registry[StageKind] = Registry("pipeline stage kind")


def stage_kind(
    name: str,
    help: str,
    config: type[BaseModel],
    *,
    inputs: Callable[[StageContext, Any], dict[str, str]],
    check: Callable[[Any], None] | None = None,
    valid: Callable[[Store, StageOutput, Any], bool] | None = None,
    output_kind: str = "",
) -> Callable[[Callable[[StageContext, Any], StageOutput]], Callable[..., StageOutput]]:
    """Decorator registering a `run(ctx, cfg) -> StageOutput` function as stage kind `name`."""

    def deco(run: Callable[[StageContext, Any], StageOutput]) -> Callable[..., StageOutput]:
        STAGES.add(
            name,
            StageKind(name, help, config, run, inputs, check, valid, output_kind),
        )
        return run

    return deco


# -- helpers for `inputs` ------------------------------------------------------------------
def files_input(paths: Iterable[Path], label: str = "file") -> dict[str, str]:
    """{`label` PATH: sha256} of every file under `paths` (folders walked; hidden files and
    folders skipped, as the loaders do). A missing path is a NotFoundError."""
    from luodi.errors import NotFoundError

    out: dict[str, str] = {}
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise NotFoundError(f"{p} does not exist")
        if p.is_dir():
            found = sorted(
                q
                for q in p.rglob("*")
                if q.is_file() and not any(x.startswith(".") for x in q.relative_to(p).parts)
            )
        else:
            found = [p]
        for q in found:
            out[f"{label} {q.resolve()}"] = sha256_file(q)
    return out


def file_input(path: Path | None, label: str) -> dict[str, str]:
    """{label: sha256} of one optional file (nothing for None; NotFoundError when missing)."""
    return {} if path is None else files_input([path], label)


def model_like(store: Store, ref: str) -> ArtifactInfo | None:
    """The artifact a model reference names: a model version (`NAME`, `NAME:vN`,
    `NAME@stage`), else a base model ('default', `tiny:<preset>`, a registered base or a
    path); None for an OpenAI endpoint or an embedder name. Unknown: NotFoundError."""
    from luodi.errors import BadInputError
    from luodi.models.base import resolve_base
    from luodi.rag.embed import EMBEDDERS
    from luodi.train.versions import resolve_model

    ref = ref.strip()
    if ref.startswith("openai:") or ref in EMBEDDERS.names():
        return None
    try:
        return resolve_model(store, ref)
    except BadInputError:
        if "@" in ref:
            raise
    return resolve_base(store, ref)
