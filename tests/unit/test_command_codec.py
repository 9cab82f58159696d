"""Routed commands are rebuilt on the owner node exactly as the operator built them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from voltaro.domain.certificates import CertificateHashData, CertificateUse, HashAlgorithm
from voltaro.domain.charging_profiles import parse_profile
from voltaro.domain.command_codec import (
    CodecError,
    decode_command,
    decode_result,
    encode_command,
    encode_error,
    encode_outcome,
)
from voltaro.domain.commands import (
    ChangeConfiguration,
    ClearChargingProfile,
    Command,
    CommandError,
    CommandErrorCode,
    CommandOutcome,
    ConfigurationEntry,
    DeleteCertificate,
    GetConfiguration,
    GetDiagnostics,
    InstallCertificate,
    RemoteStart,
    SendLocalList,
    SetChargingProfile,
    UpdateFirmware,
)
from voltaro.domain.local_list import ListEntry, UpdateType
from voltaro.domain.model import AuthorizationStatus, IdTagInfo

PROFILE = parse_profile(
    {
        "chargingProfileId": 7,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Absolute",
        "validFrom": "2026-01-01T00:00:00Z",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "startSchedule": "2026-01-01T00:00:00Z",
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 16},
                {"startPeriod": 60, "limit": 8.5, "numberPhases": 1},
            ],
        },
    }
)

COMMANDS: list[Command] = [
    RemoteStart(id_tag="TAG-1", connector_id=2, charging_profile=PROFILE),
    RemoteStart(id_tag="TAG-1"),
    ChangeConfiguration(key="AuthorizationKey", value="00" * 20),
    GetConfiguration(keys=("A", "B")),
    UpdateFirmware(location="http://x/fw", retrieve_date=datetime(2026, 1, 2, tzinfo=UTC)),
    GetDiagnostics(location="ftp://x/", start_time=datetime(2026, 1, 1, tzinfo=UTC)),
    SendLocalList(
        list_version=3,
        update_type=UpdateType.DIFFERENTIAL,
        entries=(
            ListEntry(id_tag="A", info=IdTagInfo(status=AuthorizationStatus.ACCEPTED)),
            ListEntry(
                id_tag="B",
                info=IdTagInfo(
                    status=AuthorizationStatus.BLOCKED,
                    expiry_date=datetime(2027, 1, 1, tzinfo=UTC),
                    parent_id_tag="P",
                ),
            ),
            ListEntry(id_tag="C", info=None),
        ),
    ),
    SetChargingProfile(connector_id=1, profile=PROFILE),
    ClearChargingProfile(stack_level=2),
    InstallCertificate(certificate_type=CertificateUse.CENTRAL_SYSTEM_ROOT, certificate="PEM"),
    DeleteCertificate(
        certificate_hash_data=CertificateHashData(
            hash_algorithm=HashAlgorithm.SHA256,
            issuer_name_hash="aa",
            issuer_key_hash="bb",
            serial_number="1f",
        )
    ),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_every_command_survives_the_hop(command: Command) -> None:
    wire = json.loads(json.dumps(encode_command(command)))
    assert decode_command(wire) == command


def test_outcomes_and_errors_survive_the_hop() -> None:
    outcome = CommandOutcome(
        action="GetConfiguration",
        status="Accepted",
        configuration=(ConfigurationEntry(key="K", readonly=True, value="v"),),
        unknown_keys=("X",),
        details={"certificates": [{"a": 1}]},
    )
    assert decode_result(json.loads(json.dumps(encode_outcome(outcome)))) == outcome
    error = decode_result(encode_error(CommandError(CommandErrorCode.TIMEOUT, "late")))
    assert isinstance(error, CommandError)
    assert (error.code, error.message) == (CommandErrorCode.TIMEOUT, "late")


@pytest.mark.parametrize(
    "data",
    [
        {"action": "Nope", "args": {}},
        {"action": "RemoteStartTransaction", "args": {"id_tag": 5}},
        {"action": "RemoteStartTransaction", "args": {"id_tag": "A", "what": 1}},
        {"action": "UpdateFirmware", "args": {"location": "x", "retrieve_date": "later"}},
    ],
)
def test_what_does_not_decode_is_a_codec_error(data: dict[str, object]) -> None:
    with pytest.raises(CodecError):
        decode_command(data)
