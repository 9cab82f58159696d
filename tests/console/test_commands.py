"""The console's command forms (pure, no Textual)."""

from __future__ import annotations

import pytest

from console.commands import BY_ACTION, FormError, build_args, is_destructive
from voltaro.control import wire


def test_command_forms() -> None:
    spec = BY_ACTION["availability"]
    args = build_args(spec, {"connector_id": "0", "type": "inoperative"})
    assert args == {"connector_id": 0, "type": "Inoperative"}
    assert is_destructive(spec, args)
    with pytest.raises(FormError):
        build_args(BY_ACTION["unlock"], {"connector_id": "one"})
    assert build_args(BY_ACTION["get-config"], {"keys": "A, B"}) == {"keys": ["A", "B"]}
    assert BY_ACTION["hard-reset"].role() is wire.Role.ADMIN


def test_certificate_forms(tmp_path: pytest.TempPathFactory) -> None:
    """The palette's certificate entries: a PEM file read here and sent as its text, the
    roles of the control socket (install and delete are the admin's)."""
    from pathlib import Path

    pem = Path(str(tmp_path)) / "root.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    install = BY_ACTION["install-certificate"]
    args = build_args(
        install, {"certificate_type": "manufacturerrootcertificate", "certificate": str(pem)}
    )
    assert args == {
        "certificate_type": "ManufacturerRootCertificate",
        "certificate": pem.read_text(),
    }
    with pytest.raises(FormError, match="cannot read"):
        build_args(
            install,
            {"certificate_type": "CentralSystemRootCertificate", "certificate": f"{pem}.missing"},
        )
    assert install.ocpp_action == "InstallCertificate"
    assert install.role() is wire.Role.ADMIN
    assert BY_ACTION["installed-certificates"].role() is wire.Role.OPERATOR
    delete = BY_ACTION["delete-certificate"]
    assert delete.op == "certificates.delete"
    assert delete.role() is wire.Role.ADMIN
    assert is_destructive(delete, {"index": 1})
    assert build_args(delete, {"index": "2"}) == {"index": 2}


def test_security_extension_forms() -> None:
    """ExtendedTriggerMessage (a certificate renewal first in the list) and GetLog."""
    trigger = BY_ACTION["trigger-ext"]
    assert trigger.ocpp_action == "ExtendedTriggerMessage"
    assert trigger.role() is wire.Role.OPERATOR
    assert build_args(trigger, {"requested_message": "signchargepointcertificate"}) == {
        "requested_message": "SignChargePointCertificate"
    }
    with pytest.raises(FormError):
        build_args(trigger, {"requested_message": "DiagnosticsStatusNotification"})
    get_log = BY_ACTION["get-log"]
    assert get_log.op == "logs.get"
    assert get_log.role() is wire.Role.OPERATOR
    assert build_args(get_log, {"log_type": "securitylog"}) == {"log_type": "SecurityLog"}
    assert not is_destructive(get_log, {})
