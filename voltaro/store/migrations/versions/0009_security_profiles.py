"""security profiles, pending passwords; secrets scrubbed from stored rows

Issue 15. Each charger gets its OCPP security profile (0 none, 1 Basic auth, 2 TLS +
Basic auth, 3 TLS with a client certificate): 1 for chargers that have a password, else
0, which is what the handshake enforced until now. Passwords sent in ChangeConfiguration
AuthorizationKey wait in pending_password_hashes until the charger logs in with one.

Rows written before secrets were redacted are scrubbed: the AuthorizationKey in frames,
command audit rows and the configuration table (voltaro.domain.secrets decides).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from voltaro.domain.secrets import REDACTED, redact_frame, redact_value

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("charge_points") as batch:
        batch.add_column(sa.Column("pending_password_hashes", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("security_profile", sa.Integer(), nullable=False, server_default="0")
        )
    bind = op.get_bind()
    bind.execute(
        sa.text("UPDATE charge_points SET security_profile = 1 WHERE password_hash IS NOT NULL")
    )
    bind.execute(
        sa.text(
            "UPDATE charger_configuration SET value = :hidden "
            "WHERE lower(key) = 'authorizationkey' AND value IS NOT NULL AND value <> ''"
        ),
        {"hidden": REDACTED},
    )
    like = "%uthorization%"
    for row_id, payload in bind.execute(
        sa.text("SELECT id, payload FROM frames WHERE payload LIKE :like"), {"like": like}
    ).all():
        clean = redact_frame(payload)
        if clean != payload:
            bind.execute(
                sa.text("UPDATE frames SET payload = :p WHERE id = :id"), {"p": clean, "id": row_id}
            )
    for row_id, request in bind.execute(
        sa.text("SELECT id, request FROM commands WHERE request LIKE :like"), {"like": like}
    ).all():
        try:
            clean = json.dumps(redact_value(json.loads(request)), default=str, sort_keys=True)
        except ValueError:
            continue
        if clean != request:
            bind.execute(
                sa.text("UPDATE commands SET request = :r WHERE id = :id"),
                {"r": clean, "id": row_id},
            )


def downgrade() -> None:
    with op.batch_alter_table("charge_points") as batch:
        batch.drop_column("security_profile")
        batch.drop_column("pending_password_hashes")
