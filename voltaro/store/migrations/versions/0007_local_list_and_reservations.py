"""local list state per charger; reservations

Issue 16: the Local Authorization List a charger last accepted (version and entries,
for differential updates) and the reservations sent with ReserveNow.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import voltaro.store.schema

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "local_list_state",
        sa.Column("charger_id", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("entries", sa.Text(), nullable=True),
        sa.Column("synced_at", voltaro.store.schema.UtcDateTime(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["charger_id"], ["charge_points.charger_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("charger_id"),
    )
    op.create_table(
        "reservations",
        sa.Column("reservation_id", sa.Integer(), nullable=False),
        sa.Column("charger_id", sa.String(255), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("id_tag", sa.Text(), nullable=False),
        sa.Column("parent_id_tag", sa.Text(), nullable=True),
        sa.Column("expiry_date", voltaro.store.schema.UtcDateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("transaction_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("created_at", voltaro.store.schema.UtcDateTime(), nullable=False),
        sa.Column("ended_at", voltaro.store.schema.UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("reservation_id"),
    )
    op.create_index("ix_reservations_charger", "reservations", ["charger_id", "state"])
    op.create_index("ix_reservations_expiry", "reservations", ["expiry_date"])


def downgrade() -> None:
    op.drop_index("ix_reservations_expiry", table_name="reservations")
    op.drop_index("ix_reservations_charger", table_name="reservations")
    op.drop_table("reservations")
    op.drop_table("local_list_state")
