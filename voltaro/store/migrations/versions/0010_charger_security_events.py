"""charger security events (SecurityEventNotification)

Issue 15: the 1.6 security extension's SecurityEventNotification is stored per charger
(its type, tech info, the charger's time and receipt) and shown in chargers.show.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import voltaro.store.schema

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "charger_security_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
        ),
        sa.Column("charger_id", sa.String(255), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("tech_info", sa.Text(), nullable=True),
        sa.Column("at", voltaro.store.schema.UtcDateTime(), nullable=False),
        sa.Column("received_at", voltaro.store.schema.UtcDateTime(), nullable=False),
    )
    op.create_index(
        "ix_charger_security_events", "charger_security_events", ["charger_id", "received_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_charger_security_events", table_name="charger_security_events")
    op.drop_table("charger_security_events")
