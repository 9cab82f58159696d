"""Firmware Management: status history, stored files, URL tokens, campaigns (issue 16)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import voltaro.store.schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = voltaro.store.schema.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "transfer_status_history",
        sa.Column("id", _ID, nullable=False),
        sa.Column("charger_id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("at", _AT(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_transfer_status_charger", "transfer_status_history", ["charger_id", "kind", "at"]
    )
    op.create_table(
        "stored_files",
        sa.Column("id", _ID, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("charger_id", sa.String(255), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", _AT(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_stored_files_kind", "stored_files", ["kind", "created_at"])
    op.create_table(
        "file_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("charger_id", sa.String(255), nullable=False),
        sa.Column("file_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", _AT(), nullable=False),
        sa.Column("expires_at", _AT(), nullable=False),
        sa.Column("used_at", _AT(), nullable=True),
        sa.Column("result_file_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_table(
        "firmware_campaigns",
        sa.Column("id", _ID, nullable=False),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("file_id", sa.BigInteger(), nullable=True),
        sa.Column("retrieve_at", _AT(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=True),
        sa.Column("retry_interval", sa.Integer(), nullable=True),
        sa.Column("max_parallel", sa.Integer(), nullable=False),
        sa.Column("pattern", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", _AT(), nullable=False),
        sa.Column("finished_at", _AT(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "firmware_campaign_targets",
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("charger_id", sa.String(255), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("updated_at", _AT(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["firmware_campaigns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("campaign_id", "charger_id"),
    )


def downgrade() -> None:
    op.drop_table("firmware_campaign_targets")
    op.drop_table("firmware_campaigns")
    op.drop_table("file_tokens")
    op.drop_index("ix_stored_files_kind", table_name="stored_files")
    op.drop_table("stored_files")
    op.drop_index("ix_transfer_status_charger", table_name="transfer_status_history")
    op.drop_table("transfer_status_history")
