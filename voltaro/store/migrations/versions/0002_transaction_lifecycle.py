"""transaction lifecycle: interrupted/refused/closed states, reasons, retry index

A repeated StartTransaction is a retry only while its transaction is open (issue 10
§2.1), so the retry key can no longer be unique: a charger without clock or meter
sends identical starts for different sessions. At most one transaction is active per
connector (a new start supersedes the old one), which a partial unique index enforces.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import voltaro.store.schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ACTIVE = sa.text("state = 'active'")


def upgrade() -> None:
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_meter_at", voltaro.store.schema.UtcDateTime()))
        batch_op.add_column(sa.Column("end_reason", sa.Text()))
        batch_op.add_column(sa.Column("ended_at", voltaro.store.schema.UtcDateTime()))
        batch_op.add_column(sa.Column("closed_by", sa.Text()))
        batch_op.add_column(sa.Column("energy_flag", sa.String(length=32)))
        batch_op.drop_constraint("uq_transactions_retry", type_="unique")
        batch_op.create_index(
            "ix_transactions_retry", ["charger_id", "connector_id", "start_time"], unique=False
        )
    # Refused starts stored as active by earlier versions are closed as refused (issue 21).
    op.execute(
        """
        UPDATE transactions
        SET state = 'refused', end_reason = 'start refused: ' || id_tag_status
        WHERE state = 'active' AND id_tag_status <> 'Accepted'
        """
    )
    # Before the partial unique index: supersede all but the newest active transaction
    # per connector (the rule the server now applies at each start), keeping them.
    op.execute(
        """
        UPDATE transactions
        SET state = 'interrupted',
            end_reason = 'superseded by a newer transaction on the same connector (migration)',
            energy_flag = 'estimated',
            energy_wh = CAST(ROUND(COALESCE(last_meter_wh, meter_start)) AS BIGINT) - meter_start
        WHERE state = 'active' AND EXISTS (
            SELECT 1 FROM transactions AS newer
            WHERE newer.charger_id = transactions.charger_id
              AND newer.connector_id = transactions.connector_id
              AND newer.state = 'active'
              AND (newer.created_at > transactions.created_at
                   OR (newer.created_at = transactions.created_at
                       AND newer.transaction_id > transactions.transaction_id))
        )
        """
    )
    op.create_index(
        "uq_transactions_active_connector",
        "transactions",
        ["charger_id", "connector_id"],
        unique=True,
        sqlite_where=_ACTIVE,
        postgresql_where=_ACTIVE,
    )
    with op.batch_alter_table("connectors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_received_at", voltaro.store.schema.UtcDateTime()))


def downgrade() -> None:
    with op.batch_alter_table("connectors", schema=None) as batch_op:
        batch_op.drop_column("status_received_at")
    op.drop_index("uq_transactions_active_connector", table_name="transactions")
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_transactions_retry")
        batch_op.create_unique_constraint(
            "uq_transactions_retry",
            ["charger_id", "connector_id", "start_time", "meter_start", "tag_key"],
        )
        for column in ("energy_flag", "closed_by", "ended_at", "end_reason", "last_meter_at"):
            batch_op.drop_column(column)
