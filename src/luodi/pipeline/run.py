"""Running a pipeline: the DAG in order, stages cached by the hash of their inputs, resumable.

Each stage's cache key is the sha256 of its kind, its config (defaults filled in, relative
paths made absolute, each `${{ steps.ID.output }}` counted by the output's content hash rather
than its version number) and what it reads: the content hashes of the artifacts it uses and
the sha256 of the files it reads (ingest and kb walk their folders). When an earlier run of
the same pipeline finished a stage with the same key and its output still exists unchanged
(and, for register and deploy, still holds: the model is still in that stage, the deployment
still serves that version), the output is reused and the stage is "cached".

A stage that fails is marked failed and the stages that need it (directly or not) skipped;
stages that do not need it still run. The next run of the pipeline reuses every stage that
succeeded, so it continues from the failed stage: that is resuming (`resume` names the failed
run, which the record keeps; without it the newest run, when it failed, is the one resumed).

Every run is a row of the `runs` table (kind "pipeline") while it runs, and when it ends a
"pipeline_run" artifact NAME:vN whose parents are every artifact a stage made or used (role:
the stage id) and whose folder holds run.json (the stages with status, key, output, time,
error) and pipeline.yaml. While it runs, run.json is kept in <home>/pipelines/RUN/ after each
stage, so even a run killed outright leaves what its finished stages made for the next run.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from luodi.errors import BadInputError, LuodiError, NotFoundError
from luodi.pipeline.base import StageContext, StageKind, StageOutput, StageRejected
from luodi.pipeline.spec import LoadedPipeline, PipelineSpec, anchor, build_config, substitute
from luodi.pipeline.stages import STAGES
from luodi.progress import Progress, no_progress, quiet_hf_bars
from luodi.store import ArtifactInfo, Store
from luodi.store.runs import RunInfo, Runs

RUN_KIND = "pipeline"
RECORD_KIND = "pipeline_run"
RUN_FILE = "run.json"
SPEC_FILE = "pipeline.yaml"
Status = Literal["pending", "ran", "cached", "failed", "skipped"]


class StageRecord(BaseModel):
    """One stage in one pipeline run."""

    id: str = Field(description="The stage id.")
    uses: str = Field(description="Stage kind.")
    needs: list[str] = Field(description="Stages it waited for (references included).")
    status: Status = Field(description="ran, cached (output reused), failed, skipped, pending.")
    key: str | None = Field(default=None, description="Cache key: sha256 of kind, config, inputs.")
    output: StageOutput | None = Field(default=None, description="The version it made or reused.")
    cached_from: str | None = Field(default=None, description="Run whose output was reused.")
    used: list[str] = Field(default_factory=list, description="Input artifacts, KIND NAME:vN.")
    config: dict[str, Any] | None = Field(default=None, description="The config it ran with.")
    seconds: float | None = Field(default=None, description="Wall time (key and run).")
    error: str | None = Field(default=None, description="Why it failed or was skipped.")


class PipelineRunResult(BaseModel):
    """A pipeline run: its stages and where it is recorded."""

    run_id: str = Field(description="Id of the run (`luodi pipeline show RUN`).")
    pipeline: str = Field(description="Pipeline name.")
    status: Literal["running", "succeeded", "failed", "interrupted"]
    file: str | None = Field(default=None, description="The pipeline file it ran.")
    base_dir: str = Field(description="Folder relative paths started from.")
    resumed_from: str | None = Field(default=None, description="The failed run it continued.")
    started_at: datetime
    ended_at: datetime | None = None
    record: str | None = Field(default=None, description="The pipeline_run artifact, NAME:vN.")
    stages: list[StageRecord]
    spec: dict[str, Any] = Field(description="The pipeline as run (with: as written).")

    def stage(self, stage_id: str) -> StageRecord:
        """The record of stage `stage_id`; NotFoundError naming the stages otherwise."""
        for s in self.stages:
            if s.id == stage_id:
                return s
        raise NotFoundError(
            f"no stage {stage_id!r}; stages: {', '.join(s.id for s in self.stages)}"
        )

    @property
    def error(self) -> str | None:
        """The first failed stage's error, with its id."""
        for s in self.stages:
            if s.status == "failed":
                return f"stage {s.id} ({s.uses}) failed: {s.error}"
        return None


# -- state on disk ------------------------------------------------------------------------
def _work_file(store: Store, run_id: str) -> Path:
    return store.settings.home.resolve() / "pipelines" / run_id / RUN_FILE


def _save(store: Store, res: PipelineRunResult) -> None:
    path = _work_file(store, res.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(res.model_dump_json(indent=2), encoding="utf-8")
    tmp.replace(path)  # readers never see half a file


def load_state(store: Store, run: RunInfo) -> PipelineRunResult | None:
    """What run `run` recorded: its artifact's run.json, or while (or if killed while) it
    ran, the working copy; None when neither exists."""
    if run.artifact_ref:
        try:
            info = store.resolve(run.artifact_ref, RECORD_KIND)
            res = PipelineRunResult.model_validate_json((info.path / RUN_FILE).read_text("utf-8"))
            return res.model_copy(update={"record": info.ref})
        except (NotFoundError, OSError):
            pass
    path = _work_file(store, run.id)
    if path.is_file():
        return PipelineRunResult.model_validate_json(path.read_text("utf-8"))
    return None


# -- cache --------------------------------------------------------------------------------
def _key(
    uses: str, config: dict[str, Any], inputs: dict[str, str], outputs: dict[str, StageOutput]
) -> str:
    text = json.dumps(config, sort_keys=True, ensure_ascii=False, default=str)
    for out in outputs.values():  # an upstream output counts by content, not version number
        name = out.ref.rpartition(":v")[0]
        pattern = rf"(?<![\w.\-]){re.escape(out.ref)}(?!\d)"
        text = re.sub(pattern, f"{name}@{out.kind}@{out.content_hash}", text)
    blob = json.dumps({"uses": uses, "config": text, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _still_there(store: Store, out: StageOutput) -> bool:
    try:
        return store.resolve(out.ref, out.kind).content_hash == out.content_hash
    except LuodiError:
        return False


def _cached(
    store: Store, kind: StageKind, key: str, cfg: Any, history: list[PipelineRunResult]
) -> tuple[StageOutput, str] | None:
    """(output, run id) of the newest earlier success with this key that still holds."""
    for past in history:
        for s in past.stages:
            if s.key != key or s.status not in ("ran", "cached") or s.output is None:
                continue
            if not _still_there(store, s.output):
                continue
            try:
                if kind.valid is not None and not kind.valid(store, s.output, cfg):
                    continue
            except LuodiError:
                continue
            return s.output, past.run_id
    return None


# -- running ------------------------------------------------------------------------------
def _history(store: Store, name: str) -> tuple[list[RunInfo], list[PipelineRunResult]]:
    runs = Runs(store).list(kind=RUN_KIND, name=name)
    states = [st for r in reversed(runs) if (st := load_state(store, r)) is not None]
    return runs, states  # states newest first


def _resumed(store: Store, name: str, runs: list[RunInfo], resume: str | None) -> str | None:
    if resume is None:
        last = runs[-1] if runs else None
        return last.id if last is not None and last.status in ("failed", "interrupted") else None
    run = Runs(store).get(resume)
    if run.kind != RUN_KIND or run.name != name:
        raise BadInputError(
            f"run {run.short_id} is a {run.kind} run of {run.name!r}, not of pipeline {name!r}"
        )
    if run.status == "succeeded":
        raise BadInputError(f"run {run.short_id} of {name} succeeded; there is nothing to resume")
    return run.id


def _scoped(progress: Progress, stage_id: str) -> Progress:
    def scoped(**kw: Any) -> None:
        progress(**{**kw, "task": f"{stage_id}: {kw['task']}"})

    return scoped  # type: ignore[return-value]


def _run_stage(
    ctx: StageContext,
    pipe: LoadedPipeline,
    rec: StageRecord,
    outputs: dict[str, StageOutput],
    history: list[PipelineRunResult],
) -> None:
    """Fill `rec` by reusing a cached output or running the stage (exceptions propagate)."""
    spec = pipe.stage(rec.id)
    kind = STAGES.get(spec.uses)
    refs = {sid: out.ref for sid, out in outputs.items()}
    cfg = build_config(kind.config, substitute(spec.with_, refs), f"stage {rec.id!r} ({spec.uses})")
    cfg = anchor(cfg, pipe.base_dir)
    rec.config = cfg.model_dump(mode="json", by_alias=True)
    inputs = kind.inputs(ctx, cfg)
    rec.used = list(dict.fromkeys(f"{u.kind} {u.ref}" for u in ctx.used))
    rec.key = _key(
        spec.uses, rec.config, inputs, {d: outputs[d] for d in rec.needs if d in outputs}
    )
    hit = _cached(ctx.store, kind, rec.key, cfg, history)
    if hit is not None:
        rec.output, rec.cached_from = hit
        rec.status = "cached"
        return
    try:
        with quiet_hf_bars():  # the pipeline's own progress is the one to show
            rec.output = kind.run(ctx, cfg)
    except StageRejected as exc:
        rec.output = exc.output
        raise
    rec.status = "ran"


def run_pipeline(
    store: Store,
    pipe: LoadedPipeline,
    progress: Progress = no_progress,
    *,
    resume: str | None = None,
) -> PipelineRunResult:
    """Run `pipe` (see the module docstring) and record it; returns the run, failed or not.

    BadInputError before anything runs when `resume` names a run of another pipeline or one
    that succeeded. A stage's own errors fail that stage (recorded, not raised); Ctrl-C marks
    the run interrupted, records it and is raised again.
    """
    runs_repo = Runs(store)
    runs, history = _history(store, pipe.spec.name)
    resumed_from = _resumed(store, pipe.spec.name, runs, resume)
    spec_data = pipe.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    run_id = runs_repo.start(
        RUN_KIND,
        pipe.spec.name,
        {"file": pipe.file, "base_dir": str(pipe.base_dir), "resumed_from": resumed_from},
    )
    res = PipelineRunResult(
        run_id=run_id,
        pipeline=pipe.spec.name,
        status="running",
        file=pipe.file,
        base_dir=str(pipe.base_dir),
        resumed_from=resumed_from,
        started_at=datetime.now(UTC),
        stages=[
            StageRecord(id=s.id, uses=s.uses, needs=pipe.deps[s.id], status="pending")
            for s in pipe.order
        ],
        spec=spec_data,
    )
    _save(store, res)
    outputs: dict[str, StageOutput] = {}
    progress(task="pipeline", total=len(res.stages), message=pipe.spec.name)
    try:
        for rec in res.stages:
            blocked = [d for d in rec.needs if res.stage(d).status in ("failed", "skipped")]
            if blocked:
                rec.status = "skipped"
                rec.error = f"needs {', '.join(blocked)}, which did not succeed"
            else:
                progress(task="pipeline", message=f"{rec.id} ({rec.uses})")
                ctx = StageContext(store, pipe.base_dir, _scoped(progress, rec.id))
                clock = time.perf_counter()
                try:
                    _run_stage(ctx, pipe, rec, outputs, history)
                    outputs[rec.id] = rec.output  # type: ignore[assignment]  # set on success
                except LuodiError as exc:
                    rec.status, rec.error = "failed", exc.message
                except KeyboardInterrupt:
                    rec.status, rec.error = "failed", "interrupted"
                    raise
                except Exception as exc:  # a bug or library error: recorded, the run goes on
                    rec.status, rec.error = "failed", f"unexpected {type(exc).__name__}: {exc}"
                    rec.error += "\n" + traceback.format_exc(limit=8)
                finally:
                    rec.seconds = round(time.perf_counter() - clock, 3)
            progress(task="pipeline", advance=1)
            _save(store, res)
    except KeyboardInterrupt:
        _finish(store, runs_repo, res, "interrupted")
        raise
    failed = any(s.status == "failed" for s in res.stages)
    return _finish(store, runs_repo, res, "failed" if failed else "succeeded")


def _parents(store: Store, res: PipelineRunResult) -> list[tuple[ArtifactInfo, str]]:
    """Every artifact a stage made (first) or used, once each, with the stage id as role."""
    seen: set[tuple[str, str]] = set()
    out: list[tuple[ArtifactInfo, str]] = []
    wanted = [(s.output.kind, s.output.ref, s.id) for s in res.stages if s.output is not None]
    for s in res.stages:
        wanted += [(*u.split(" ", 1), s.id) for u in s.used]  # type: ignore[misc]
    for kind, ref, role in wanted:
        if (kind, ref) in seen:
            continue
        seen.add((kind, ref))
        try:
            out.append((store.resolve(ref, kind), role))
        except LuodiError:
            continue  # e.g. a model reached by NAME@STAGE: it is listed under its NAME:vN too
    return out


def _finish(
    store: Store, runs_repo: Runs, res: PipelineRunResult, status: Any
) -> PipelineRunResult:
    """Register the pipeline_run artifact and end the run row (both, whatever happened)."""
    res.status = status
    res.ended_at = datetime.now(UTC)
    record: ArtifactInfo | None = None
    meta = {
        "run_id": res.run_id,
        "status": status,
        "resumed_from": res.resumed_from,
        "stages": {
            s.id: {"status": s.status, "output": s.output.ref if s.output else None}
            for s in res.stages
        },
    }
    try:
        spec = PipelineSpec.model_validate(res.spec)
        with store.create(RECORD_KIND, res.pipeline, parents=_parents(store, res), meta=meta) as d:
            # run.json leaves `record` empty: the version number exists only once registered
            (d.path / SPEC_FILE).write_text(spec.to_yaml(res.file or SPEC_FILE), encoding="utf-8")
            (d.path / RUN_FILE).write_text(res.model_dump_json(indent=2), encoding="utf-8")
        record = d.artifact
    finally:
        if record is not None:
            res.record = record.ref
        _save(store, res)
        runs_repo.finish(res.run_id, status, artifact=record, error=res.error)
    return res
