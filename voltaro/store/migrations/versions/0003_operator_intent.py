"""operator intent: per-charger heartbeat interval, scheduled availability

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 19:05:00

The heartbeat interval an operator set on a charger (answered in its BootNotification)
and an availability change the charger accepted as Scheduled (issue 23.1, 23.2).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("charge_points") as batch_op:
        batch_op.add_column(sa.Column("heartbeat_interval", sa.Integer(), nullable=True))
    with op.batch_alter_table("connectors") as batch_op:
        batch_op.add_column(
            sa.Column("scheduled_availability", sa.String(length=16), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("connectors") as batch_op:
        batch_op.drop_column("scheduled_availability")
    with op.batch_alter_table("charge_points") as batch_op:
        batch_op.drop_column("heartbeat_interval")
