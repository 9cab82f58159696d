"""charger-supplied strings as Text; the quarantine table

Issue 10 §2.3: PostgreSQL refused values that validation (rightly) accepts — a unit
"kWh-Import-Register-Total", a measurand over 64 characters, a phase over 8, a context
over 32, an idTag over 64 — and the charger was told to retry forever. Every column that
holds a charger-supplied string becomes Text. SQLite ignores declared lengths, so there
the change is PostgreSQL-only.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import voltaro.store.schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (table, column, old type) for every column that becomes Text.
_WIDENED = (
    ("connectors", "status", sa.String(32)),
    ("status_history", "status", sa.String(32)),
    ("transactions", "id_tag", sa.String(64)),
    ("transactions", "tag_key", sa.String(64)),
    ("transactions", "stop_reason", sa.String(32)),
    ("transactions", "stop_id_tag", sa.String(64)),
    ("orphan_stops", "id_tag", sa.String(64)),
    ("orphan_stops", "reason", sa.String(32)),
    ("meter_values", "context", sa.String(32)),
    ("meter_values", "format", sa.String(16)),
    ("meter_values", "measurand", sa.String(64)),
    ("meter_values", "phase", sa.String(8)),
    ("meter_values", "location", sa.String(16)),
    ("meter_values", "unit", sa.String(16)),
    ("charger_configuration", "key", sa.String(64)),
    ("commands", "status", sa.String(64)),
    ("frames", "action", sa.String(64)),
    ("frames", "unique_id", sa.String(64)),
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column, old in _WIDENED:
            op.alter_column(table, column, type_=sa.Text(), existing_type=old)
    op.create_table(
        "quarantine",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("charger_id", sa.Text(), nullable=False),
        sa.Column("unique_id", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=True),
        sa.Column("frame", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("at", voltaro.store.schema.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quarantine_at", "quarantine", ["at"])
    op.create_index("ix_quarantine_charger", "quarantine", ["charger_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_quarantine_charger", table_name="quarantine")
    op.drop_index("ix_quarantine_at", table_name="quarantine")
    op.drop_table("quarantine")
    # The columns stay Text: narrowing them could fail on (or truncate) stored data.
