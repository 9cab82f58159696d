"""Several nodes on one PostgreSQL: node leases, charger ownership, routed commands and
the event outbox

Issue 18 (docs/scaling.md). The tables exist on SQLite too so that the migration chain
stays one; only a multi-node deployment (PostgreSQL) writes them.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import voltaro.store.schema

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_nodes",
        sa.Column("node_id", sa.String(64), primary_key=True),
        sa.Column("incarnation", sa.String(36), nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("started_at", voltaro.store.schema.UtcDateTime(), nullable=False),
        sa.Column("lease_until", voltaro.store.schema.UtcDateTime(), nullable=False),
    )
    op.create_table(
        "charger_owners",
        sa.Column("charger_id", sa.String(255), primary_key=True),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("incarnation", sa.String(36), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("connected_at", voltaro.store.schema.UtcDateTime(), nullable=False),
        sa.Column("remote_addr", sa.Text(), nullable=True),
    )
    op.create_index("ix_charger_owners_node", "charger_owners", ["node_id"])
    op.create_table(
        "routed_commands",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("charger_id", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("origin_node", sa.String(64), nullable=False),
        sa.Column("owner_node", sa.String(64), nullable=True),
        sa.Column("owner_epoch", sa.BigInteger(), nullable=True),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_at", voltaro.store.schema.UtcDateTime(), nullable=False),
        sa.Column("answered_at", voltaro.store.schema.UtcDateTime(), nullable=True),
    )
    op.create_index("ix_routed_commands_created_at", "routed_commands", ["created_at"])
    op.create_table(
        "cluster_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", voltaro.store.schema.UtcDateTime(), nullable=False),
        sa.Column("origin_node", sa.String(64), nullable=False),
        sa.Column("charger_id", sa.String(255), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_index("ix_cluster_events_at", "cluster_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_cluster_events_at", table_name="cluster_events")
    op.drop_table("cluster_events")
    op.drop_index("ix_routed_commands_created_at", table_name="routed_commands")
    op.drop_table("routed_commands")
    op.drop_index("ix_charger_owners_node", table_name="charger_owners")
    op.drop_table("charger_owners")
    op.drop_table("cluster_nodes")
