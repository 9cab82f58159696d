"""GetLog and SignedUpdateFirmware requests, and the requestId of status reports

Issue 15: the 1.6 security extension's LogStatusNotification and
SignedFirmwareStatusNotification carry the requestId of the GetLog / SignedUpdateFirmware
they are about. Each request this server sends gets its id from transfer_requests; each
report keeps its requestId in transfer_status_history.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import voltaro.store.schema

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transfer_status_history") as batch:
        batch.add_column(sa.Column("request_id", sa.BigInteger(), nullable=True))
    op.create_table(
        "transfer_requests",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
        ),
        sa.Column("charger_id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", voltaro.store.schema.UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("transfer_requests")
    with op.batch_alter_table("transfer_status_history") as batch:
        batch.drop_column("request_id")
