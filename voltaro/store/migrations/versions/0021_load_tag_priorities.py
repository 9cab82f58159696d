"""id tag priorities for load management

Issue 17: a session's priority is the higher of its charger's and the priority of the
id tag that started it.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import voltaro.store.schema

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "load_tag_priorities",
        sa.Column("tag_key", sa.String(64), primary_key=True),
        sa.Column("id_tag", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("updated_at", voltaro.store.schema.UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("load_tag_priorities")
