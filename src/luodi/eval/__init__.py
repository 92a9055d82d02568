"""Evaluation: suites of tasks over dataset versions, run against a target, stored as EvalRuns.

`run_eval(store, target, suite)` scores a model version, base, local path or OpenAI-compatible
endpoint on a suite (`load_suite(path)`) and registers an "eval_run" artifact; metrics live in
`luodi.eval.metrics`, comparisons and gates in `luodi.eval.compare`.
"""

from luodi.eval.runner import EvalRunResult, TaskSummary, production_run, run_eval, show_run
from luodi.eval.suite import Suite, load_suite, parse_suite
from luodi.eval.targets import GenerationParams, Target, TargetError, open_target
from luodi.eval.tasks import TASKS, EvalTask, TaskResult

__all__ = [
    "TASKS",
    "EvalRunResult",
    "EvalTask",
    "GenerationParams",
    "Suite",
    "Target",
    "TargetError",
    "TaskResult",
    "TaskSummary",
    "load_suite",
    "open_target",
    "parse_suite",
    "production_run",
    "run_eval",
    "show_run",
]
