"""Eval tasks, each registered by name in `TASKS` (importing this package registers them)."""

from luodi.eval.tasks import (
    choice,
    classify,
    efficiency,
    generate,
    perplexity,
    retrieval,
    robustness,
    safety,
)
from luodi.eval.tasks.base import TASKS, EvalTask, Problem, TaskCounts, TaskEnv, TaskResult

__all__ = [
    "TASKS",
    "EvalTask",
    "Problem",
    "TaskCounts",
    "TaskEnv",
    "TaskResult",
    "choice",
    "classify",
    "efficiency",
    "generate",
    "perplexity",
    "retrieval",
    "robustness",
    "safety",
]
