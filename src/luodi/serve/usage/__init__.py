"""Usage metering, the masked request log, feedback storage and usage reports."""

from luodi.serve.usage.feedback import FeedbackInfo, add_feedback, list_feedback, normalise_rating
from luodi.serve.usage.recorder import (
    RequestLogEvent,
    UsageEvent,
    UsageRecorder,
    purge_request_logs,
)
from luodi.serve.usage.report import (
    GROUPS,
    ReportRow,
    UsageReport,
    export_csv,
    parse_period,
    percentile,
    usage_report,
)

__all__ = [
    "GROUPS",
    "FeedbackInfo",
    "ReportRow",
    "RequestLogEvent",
    "UsageEvent",
    "UsageRecorder",
    "UsageReport",
    "add_feedback",
    "export_csv",
    "list_feedback",
    "normalise_rating",
    "parse_period",
    "percentile",
    "purge_request_logs",
    "usage_report",
]
