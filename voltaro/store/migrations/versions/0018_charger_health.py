"""per-charger health counters, one row per charger and clock hour

Issue 19: connections, seconds online, command timeouts, CALLERRORs sent and received,
the smallest lag of the charger's timestamps and its heartbeat intervals, counted per
UTC hour (voltaro/domain/charger_health.py) and kept 48 hours.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import voltaro.store.schema

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "charger_health",
        sa.Column("charger_id", sa.String(255), primary_key=True),
        sa.Column("hour", voltaro.store.schema.UtcDateTime(), primary_key=True),
        sa.Column("connects", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("online_s", sa.Float(), nullable=False, server_default="0"),
        sa.Column("command_timeouts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("call_errors_sent", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("call_errors_received", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("clock_samples", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("min_lag_s", sa.Float(), nullable=True),
        sa.Column("heartbeat_intervals", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("heartbeat_sum_s", sa.Float(), nullable=False, server_default="0"),
        sa.Column("heartbeat_sumsq_s", sa.Float(), nullable=False, server_default="0"),
    )
    op.create_index("ix_charger_health_hour", "charger_health", ["hour"])


def downgrade() -> None:
    op.drop_index("ix_charger_health_hour", table_name="charger_health")
    op.drop_table("charger_health")
