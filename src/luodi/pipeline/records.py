"""Reading pipeline runs back: one run (by id, by record NAME:vN, or a pipeline's newest) and
the list of runs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

from luodi.errors import BadInputError, NotFoundError
from luodi.pipeline.run import RECORD_KIND, RUN_FILE, RUN_KIND, PipelineRunResult, load_state
from luodi.pipeline.spec import LoadedPipeline, parse_pipeline
from luodi.store import Store, parse_ref
from luodi.store.runs import RunInfo, Runs


class PipelineRunSummary(BaseModel):
    """One line of `luodi pipeline list`."""

    run_id: str = Field(description="Run id.")
    pipeline: str = Field(description="Pipeline name.")
    status: str = Field(description="running, succeeded, failed or interrupted.")
    started_at: datetime
    ended_at: datetime | None = None
    record: str | None = Field(default=None, description="The pipeline_run artifact, NAME:vN.")
    counts: dict[str, int] = Field(description="Stages per status: ran, cached, failed, ...")
    resumed_from: str | None = None
    error: str | None = None


def _state(store: Store, run: RunInfo) -> PipelineRunResult:
    res = load_state(store, run)
    if res is None:
        raise NotFoundError(f"pipeline run {run.short_id} left no record (its files are gone)")
    return res


def show_pipeline_run(store: Store, ref: str) -> PipelineRunResult:
    """The pipeline run `ref` names: a run id (or a prefix of at least 4 characters), a
    pipeline_run record NAME:vN, or a pipeline NAME (its newest run). NotFoundError naming
    the pipelines that have runs otherwise."""
    runs = Runs(store)
    try:
        run = runs.get(ref)
    except BadInputError:  # NotFoundError too: maybe a name
        run = None
    if run is not None:
        if run.kind != RUN_KIND:
            raise BadInputError(f"run {run.short_id} is a {run.kind} run, not a pipeline run")
        return _state(store, run)
    name, version = parse_ref(ref)
    if version is not None:
        info = store.resolve(ref, RECORD_KIND)
        res = PipelineRunResult.model_validate_json((info.path / RUN_FILE).read_text("utf-8"))
        return res.model_copy(update={"record": info.ref})
    mine = runs.list(kind=RUN_KIND, name=name)
    if not mine:
        known = sorted({r.name for r in runs.list(kind=RUN_KIND)})
        raise NotFoundError(
            f"no pipeline run {ref!r}; pipelines with runs: {', '.join(known) or 'none yet'}"
        )
    return _state(store, mine[-1])


def list_pipeline_runs(store: Store, name: str | None = None) -> list[PipelineRunSummary]:
    """Every pipeline run (of pipeline `name` when given), oldest first."""
    out = []
    for run in Runs(store).list(kind=RUN_KIND, name=name):
        res = load_state(store, run)
        counts: dict[str, int] = {}
        for s in res.stages if res else []:
            counts[s.status] = counts.get(s.status, 0) + 1
        out.append(
            PipelineRunSummary(
                run_id=run.id,
                pipeline=run.name,
                status=run.status,
                started_at=run.started_at,
                ended_at=run.ended_at,
                record=run.artifact_ref,
                counts=counts,
                resumed_from=res.resumed_from if res else None,
                error=run.error.splitlines()[0] if run.error else None,
            )
        )
    return out


def pipeline_of_run(store: Store, ref: str) -> LoadedPipeline:
    """The pipeline a run ran (its stored spec, checked again), to run it once more."""
    res = show_pipeline_run(store, ref)
    return parse_pipeline(res.spec, Path(res.base_dir), res.file)
