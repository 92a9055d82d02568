"""Serving: teams, API keys, usage records, request logs and feedback.

Revision ID: 0003
Revises: 0002

Only adds tables, so it upgrades a 0002 database in place without touching its rows.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# 64-bit ids where traffic grows the table; SQLite's INTEGER PRIMARY KEY is 64-bit already.
_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("team", sa.String(128), sa.ForeignKey("teams.name"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("endpoints", sa.JSON(), nullable=True),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tokens_per_day", sa.BigInteger(), nullable=True),
        sa.Column("tokens_per_month", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_api_keys_team", "api_keys", ["team"])
    op.create_table(
        "usage_records",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("team", sa.String(128), nullable=False),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(300), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(64), nullable=True),
    )
    op.create_index("ix_usage_records_request_id", "usage_records", ["request_id"])
    op.create_index("ix_usage_records_at", "usage_records", ["at"])
    # quota baselines and per-key / per-team reports scan one key or team over a period
    op.create_index("ix_usage_records_key_id_at", "usage_records", ["key_id", "at"])
    op.create_index("ix_usage_records_team_at", "usage_records", ["team", "at"])
    op.create_table(
        "request_logs",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("team", sa.String(128), nullable=False),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(300), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("prompt_masked", sa.Text(), nullable=False),
        sa.Column("response_masked", sa.Text(), nullable=False),
        sa.Column("retrieved", sa.JSON(), nullable=False),
        sa.Column("guard", sa.JSON(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
    )
    op.create_index("ix_request_logs_at", "request_logs", ["at"])
    op.create_index("ix_request_logs_key_id", "request_logs", ["key_id"])
    op.create_index("ix_request_logs_team", "request_logs", ["team"])
    op.create_table(
        "feedback",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("team", sa.String(128), nullable=False),
        sa.Column("rating_raw", sa.String(64), nullable=True),
        sa.Column("scale", sa.String(16), nullable=True),
        sa.Column("rating", sa.Float(), nullable=True),
        sa.Column("correction", sa.Text(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
    )
    op.create_index("ix_feedback_request_id", "feedback", ["request_id"])
    op.create_index("ix_feedback_at", "feedback", ["at"])
    op.create_index("ix_feedback_key_id", "feedback", ["key_id"])
    op.create_index("ix_feedback_team", "feedback", ["team"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("request_logs")
    op.drop_table("usage_records")
    op.drop_table("api_keys")
    op.drop_table("teams")
