"""circuits and charger wiring for site load management

Issue 17: the site's circuit tree (limits per phase in A and/or kW) and, per charger,
the circuit it hangs off, its phase wiring, rating, fallback limit and priority.

Revision ID: 0015
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import voltaro.store.schema

revision = "0015"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "circuits",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("parent", sa.String(255), nullable=True),
        sa.Column("limit_amps", sa.Float(), nullable=True),
        sa.Column("limit_kw", sa.Float(), nullable=True),
        sa.Column("updated_at", voltaro.store.schema.UtcDateTime(), nullable=False),
    )
    op.create_table(
        "circuit_chargers",
        sa.Column("charger_id", sa.String(255), primary_key=True),
        sa.Column("circuit", sa.String(255), nullable=False),
        sa.Column("phases", sa.String(16), nullable=False),
        sa.Column("max_amps", sa.Float(), nullable=False),
        sa.Column("fallback_amps", sa.Float(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("updated_at", voltaro.store.schema.UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("circuit_chargers")
    op.drop_table("circuits")
