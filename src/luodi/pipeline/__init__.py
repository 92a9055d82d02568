"""Pipelines: a YAML DAG over luodi's stages, cached by input hashes, resumable.

`load_pipeline(file)` checks a pipeline file before anything runs; `run_pipeline(store,
pipeline)` runs it and records the run; `show_pipeline_run` / `list_pipeline_runs` read runs
back. Stage kinds live in `STAGES` (see `luodi.pipeline.stages`).
"""

from luodi.pipeline.base import STAGES, StageContext, StageKind, StageOutput, StageRejected
from luodi.pipeline.records import (
    PipelineRunSummary,
    list_pipeline_runs,
    pipeline_of_run,
    show_pipeline_run,
)
from luodi.pipeline.run import PipelineRunResult, StageRecord, run_pipeline
from luodi.pipeline.spec import LoadedPipeline, PipelineSpec, StageSpec, load_pipeline

__all__ = [
    "STAGES",
    "LoadedPipeline",
    "PipelineRunResult",
    "PipelineRunSummary",
    "PipelineSpec",
    "StageContext",
    "StageKind",
    "StageOutput",
    "StageRecord",
    "StageRejected",
    "StageSpec",
    "list_pipeline_runs",
    "load_pipeline",
    "pipeline_of_run",
    "run_pipeline",
    "show_pipeline_run",
]
