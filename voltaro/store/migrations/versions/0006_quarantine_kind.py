"""Quarantine entries say what they are: ``refused`` (not stored) or ``repaired``
(stored with U+FFFD; the raw frame holds the original text), issue 10 §2.3

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("kind", sa.Text(), nullable=False, server_default="refused"))


def downgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("kind")
