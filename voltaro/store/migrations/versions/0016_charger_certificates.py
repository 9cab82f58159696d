"""charger certificates and certificate signings

Issue 15: the certificates each charger reported (GetInstalledCertificateIds) or was
given (InstallCertificate), and every SignCertificate with its outcome.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import voltaro.store.schema

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "charger_certificates",
        _id(),
        sa.Column("charger_id", sa.String(255), nullable=False),
        sa.Column("certificate_type", sa.String(64), nullable=False),
        sa.Column("hash_algorithm", sa.String(16), nullable=False),
        sa.Column("issuer_name_hash", sa.String(128), nullable=False),
        sa.Column("issuer_key_hash", sa.String(128), nullable=False),
        sa.Column("serial_number", sa.String(40), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("at", voltaro.store.schema.UtcDateTime(), nullable=False),
    )
    op.create_index(
        "ix_charger_certificates", "charger_certificates", ["charger_id", "certificate_type"]
    )
    op.create_table(
        "certificate_signings",
        _id(),
        sa.Column("charger_id", sa.String(255), nullable=False),
        sa.Column("received_at", voltaro.store.schema.UtcDateTime(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("serial_number", sa.String(40), nullable=True),
        sa.Column("not_after", voltaro.store.schema.UtcDateTime(), nullable=True),
        sa.Column("updated_at", voltaro.store.schema.UtcDateTime(), nullable=False),
    )
    op.create_index(
        "ix_certificate_signings", "certificate_signings", ["charger_id", "received_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_certificate_signings", table_name="certificate_signings")
    op.drop_table("certificate_signings")
    op.drop_index("ix_charger_certificates", table_name="charger_certificates")
    op.drop_table("charger_certificates")
