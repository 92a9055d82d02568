"""Feedback to data: the request log joined with users' ratings and corrections becomes SFT
and DPO dataset versions (export.py), and per-version feedback figures with the topics users
rate badly (stats.py)."""

from luodi.feedback.export import FeedbackExportConfig, FeedbackExportResult, run_feedback_export
from luodi.feedback.stats import FeedbackStats, feedback_stats

__all__ = [
    "FeedbackExportConfig",
    "FeedbackExportResult",
    "FeedbackStats",
    "feedback_stats",
    "run_feedback_export",
]
