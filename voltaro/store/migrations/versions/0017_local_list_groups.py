"""local lists per charger group

Issue 16: a charger may belong to a group (charge_points.list_group) and a tag may be
limited to groups (id_tags.list_groups); a charger's local list holds the tags of its
group and those limited to none.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("charge_points") as batch:
        batch.add_column(sa.Column("list_group", sa.String(64), nullable=True))
    with op.batch_alter_table("id_tags") as batch:
        batch.add_column(sa.Column("list_groups", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("id_tags") as batch:
        batch.drop_column("list_groups")
    with op.batch_alter_table("charge_points") as batch:
        batch.drop_column("list_group")
