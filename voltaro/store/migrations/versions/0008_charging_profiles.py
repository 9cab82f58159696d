"""charging profiles sent to chargers

Issue 16 (Smart Charging): each SetChargingProfile with the charger's answer; cleared
when a matching ClearChargingProfile was accepted.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import voltaro.store.schema

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "charging_profiles",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("charger_id", sa.String(255), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("stack_level", sa.Integer(), nullable=False),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("sent_at", voltaro.store.schema.UtcDateTime(), nullable=False),
        sa.Column("cleared_at", voltaro.store.schema.UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_charging_profiles_charger", "charging_profiles", ["charger_id", "cleared_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_charging_profiles_charger", table_name="charging_profiles")
    op.drop_table("charging_profiles")
