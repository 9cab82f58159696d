"""Units of work on SQLite and PostgreSQL (the `db` fixture runs each test on both)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from voltaro.domain.commands import ConfigurationEntry
from voltaro.domain.model import (
    AuthorizationStatus,
    Availability,
    BootRequest,
    ChargerIdentity,
    ConnectorStatus,
    MeterValue,
    MeterValuesRequest,
    RegistrationStatus,
    SampledValue,
    StartTransactionRequest,
    StatusNotificationRequest,
    StopReason,
    StopTransactionRequest,
    TransactionState,
)
from voltaro.store import chargers, commands, frames, tags, transactions
from voltaro.store.db import Database
from voltaro.store.errors import AlreadyExists, NotFound

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def start(
    db: Database,
    charger: str = "CP-1",
    connector: int = 1,
    tag: str = "TAG1",
    meter: int = 1000,
    at: datetime = NOW,
) -> object:
    return db.run_sync(
        transactions.start_transaction,
        StartTransactionRequest(
            charger_id=charger,
            connector_id=connector,
            id_tag=tag,
            meter_start=meter,
            timestamp=at,
            received_at=NOW,
        ),
        allow_concurrent=False,
    )


def stop(
    db: Database, tx: int, charger: str = "CP-1", meter: int = 5000, tag: str | None = None
) -> object:
    return db.run_sync(
        transactions.stop_transaction,
        StopTransactionRequest(
            charger_id=charger,
            transaction_id=tx,
            meter_stop=meter,
            timestamp=NOW + timedelta(hours=1),
            id_tag=tag,
            received_at=NOW + timedelta(hours=1),
        ),
    )


@pytest.fixture
def site(db: Database) -> Database:
    db.run_sync(chargers.add_charger, "CP-1")
    db.run_sync(chargers.add_charger, "CP-2")
    db.run_sync(tags.add_tag, "Tag1")
    return db


def test_charger_registry_and_boot(db: Database) -> None:
    added = db.run_sync(
        chargers.add_charger,
        "CP-9",
        password=b"\x00\xffsecret",
        registration=RegistrationStatus.PENDING,
    )
    assert added.has_password
    with pytest.raises(AlreadyExists):
        db.run_sync(chargers.add_charger, "CP-9")
    auth = db.run_sync(chargers.charger_auth, "CP-9")
    assert auth is not None
    assert auth.password_hash is not None
    assert auth.registration is RegistrationStatus.PENDING
    ident = ChargerIdentity(vendor="Acme", model="X", serial_number="S" * 34)
    decision = db.run_sync(
        chargers.boot,
        BootRequest(charger_id="CP-9", identity=ident, received_at=NOW),
        heartbeat_interval=300,
        retry_interval=60,
    )
    assert (decision.status, decision.interval) == (RegistrationStatus.PENDING, 60)
    db.run_sync(chargers.set_registration, "CP-9", RegistrationStatus.ACCEPTED)
    decision = db.run_sync(
        chargers.boot,
        BootRequest(charger_id="CP-9", identity=ident, received_at=NOW),
        heartbeat_interval=300,
        retry_interval=60,
    )
    assert (decision.status, decision.interval) == (RegistrationStatus.ACCEPTED, 300)
    stored = db.run_sync(chargers.get_charger, "CP-9")
    assert stored.identity.serial_number == "S" * 34
    assert db.run_sync(chargers.remove_charger, "CP-9")
    gone = db.run_sync(
        chargers.boot,
        BootRequest(charger_id="CP-9", identity=ident, received_at=NOW),
        heartbeat_interval=300,
        retry_interval=60,
    )
    assert gone.status is RegistrationStatus.REJECTED


def test_authorize_statuses_case_insensitive(site: Database) -> None:
    site.run_sync(tags.add_tag, "PARENT")
    site.run_sync(tags.add_tag, "child", parent="PARENT", expiry=NOW + timedelta(days=1))
    site.run_sync(tags.add_tag, "old", expiry=NOW - timedelta(days=1))
    site.run_sync(tags.add_tag, "bad", status=AuthorizationStatus.BLOCKED)
    info = site.run_sync(transactions.authorize, "CP-1", "CHILD", NOW)
    assert (info.status, info.parent_id_tag) == (AuthorizationStatus.ACCEPTED, "PARENT")
    assert info.expiry_date == NOW + timedelta(days=1)
    assert site.run_sync(transactions.authorize, "CP-1", "OLD", NOW).status is (
        AuthorizationStatus.EXPIRED
    )
    assert site.run_sync(transactions.authorize, "CP-1", "bad", NOW).status is (
        AuthorizationStatus.BLOCKED
    )
    assert site.run_sync(transactions.authorize, "CP-1", "nobody", NOW).status is (
        AuthorizationStatus.INVALID
    )
    with pytest.raises(NotFound):
        site.run_sync(tags.add_tag, "orphan", parent="NOPE")
    with pytest.raises(AlreadyExists):
        site.run_sync(tags.add_tag, "TAG1")
    assert site.run_sync(tags.block_tag, "tag1").status is AuthorizationStatus.BLOCKED


def test_start_is_idempotent_and_always_assigns_an_id(site: Database) -> None:
    first = start(site)
    again = start(site)
    assert first.transaction_id == again.transaction_id
    assert again.duplicate
    assert 0 < first.transaction_id < 2**31
    assert len(site.run_sync(transactions.list_transactions)) == 1
    unknown = start(site, connector=2, tag="STRANGER")
    assert unknown.id_tag_info.status is AuthorizationStatus.INVALID
    assert unknown.transaction_id != first.transaction_id
    # Same tag busy on CP-1 connector 1 (connected, so plausibly live): a start elsewhere
    # is ConcurrentTx, still recorded (closed at once as refused).
    site.run_sync(chargers.mark_connected, "CP-1", True, NOW)
    other = start(site, charger="CP-2", tag="tag1", meter=7)
    assert other.id_tag_info.status is AuthorizationStatus.CONCURRENT_TX
    assert site.run_sync(transactions.get_transaction, other.transaction_id) is not None


def test_stop_energy_duplicates_orphans_and_foreign(site: Database) -> None:
    tx = start(site).transaction_id
    result = stop(site, tx, tag="TAG1")
    assert result.outcome == "stopped"
    assert result.id_tag_info.status is AuthorizationStatus.ACCEPTED
    stored = site.run_sync(transactions.get_transaction, tx)
    assert (stored.energy_wh, stored.state, stored.stop_reason) == (
        4000,
        TransactionState.COMPLETED,
        StopReason.LOCAL,
    )
    assert stop(site, tx).outcome == "duplicate"
    # A second stop with another meterStop is kept for reconciliation (issue 10 §2.1).
    assert stop(site, tx, meter=9999).outcome == "conflict"
    assert site.run_sync(transactions.get_transaction, tx).energy_wh == 4000
    for unknown in (0, -1, 999_999):
        assert stop(site, unknown).outcome == "orphan"
    tx2 = start(site, connector=2, tag="TAG1").transaction_id
    assert stop(site, tx2, charger="CP-2").outcome == "foreign"
    assert site.run_sync(transactions.get_transaction, tx2).state is TransactionState.ACTIVE
    kinds = sorted(str(o["kind"]) for o in site.run_sync(transactions.orphan_stops))
    assert kinds == ["conflict", "foreign", "unknown", "unknown", "unknown"]


def test_meter_values_defaults_links_and_retries(site: Database) -> None:
    tx = start(site).transaction_id
    values = (
        MeterValue(
            timestamp=NOW,
            sampled_values=(
                SampledValue(value="1500.5"),
                SampledValue(value="7.2", measurand="Power.Active.Import", unit="kW"),
                SampledValue(value="DEADBEEF", format="SignedData"),
            ),
        ),
    )
    request = MeterValuesRequest(
        charger_id="CP-1", connector_id=1, transaction_id=tx, meter_values=values, received_at=NOW
    )
    summary = site.run_sync(transactions.record_meter_values, request)
    assert (summary.energy_wh, summary.power_w) == (1500.5, 7200.0)
    site.run_sync(transactions.record_meter_values, request)  # a retry stores nothing twice
    stored = site.run_sync(transactions.transaction_meter_values, tx)
    assert len(stored) == 1
    assert [sv.value for sv in stored[0].sampled_values] == ["1500.5", "7.2", "DEADBEEF"]
    assert stored[0].sampled_values[0].context == "Sample.Periodic"
    live = site.run_sync(transactions.get_transaction, tx)
    assert (live.last_meter_wh, live.last_power_w) == (1500.5, 7200.0)
    foreign = MeterValuesRequest(
        charger_id="CP-2", connector_id=1, transaction_id=tx, meter_values=values, received_at=NOW
    )
    site.run_sync(transactions.record_meter_values, foreign)
    assert len(site.run_sync(transactions.transaction_meter_values, tx)) == 1  # not linked


def test_status_history_and_order(site: Database) -> None:
    def note(status: ConnectorStatus, at: datetime | None, code: str = "NoError") -> None:
        site.run_sync(
            chargers.record_status,
            StatusNotificationRequest(
                charger_id="CP-1",
                connector_id=1,
                status=status,
                error_code=code,
                info="x" * 80,
                timestamp=at,
                received_at=NOW,
            ),
        )

    note(ConnectorStatus.CHARGING, NOW)
    note(ConnectorStatus.FAULTED, NOW - timedelta(days=2), code="Error")  # late, older
    connector = site.run_sync(chargers.get_charger, "CP-1").connectors[0]
    assert connector.status is ConnectorStatus.CHARGING
    note(ConnectorStatus.AVAILABLE, None)  # no timestamp: time of receipt
    history = site.run_sync(chargers.status_history, "CP-1")
    assert [h.status for h in history][-1] == "Faulted"
    assert history[-1].error_code == "Error"
    assert len(history) == 3
    site.run_sync(chargers.set_availability, "CP-1", 0, Availability.INOPERATIVE)
    connectors = site.run_sync(chargers.get_charger, "CP-1").connectors
    assert {c.availability for c in connectors} == {Availability.INOPERATIVE}


def test_configuration_audit_and_frames(site: Database) -> None:
    entries = [
        ConfigurationEntry(key="HeartbeatInterval", readonly=False, value="300"),
        ConfigurationEntry(key="NumberOfConnectors", readonly=True, value="2"),
    ]
    site.run_sync(commands.store_configuration, "CP-1", entries, ["Nope"], replace_all=True)
    site.run_sync(commands.set_configuration_value, "CP-1", "HeartbeatInterval", "60")
    config = {e.key: e for e in site.run_sync(commands.get_configuration, "CP-1")}
    assert config["HeartbeatInterval"].value == "60"
    assert config["NumberOfConnectors"].readonly
    command_id = site.run_sync(
        commands.record_command,
        charger_id="CP-1",
        action="Reset",
        request={"type": "Hard"},
        actor="alice",
    )
    site.run_sync(commands.finish_command, command_id, status="Accepted", error=None)
    (audit,) = site.run_sync(commands.list_commands, "CP-1")
    assert (audit["actor"], audit["status"]) == ("alice", "Accepted")
    from voltaro.domain.model import FrameRecord

    site.run_sync(
        frames.append_frames,
        [
            FrameRecord(
                charger_id="CP-1",
                direction="in",
                at=NOW - timedelta(days=40),
                payload="[2]",
                action="Heartbeat",
            ),
            FrameRecord(charger_id="CP-1", direction="out", at=NOW, payload="[3]"),
        ],
    )
    assert len(site.run_sync(frames.recent_frames, "CP-1")) == 2
    assert site.run_sync(frames.purge_frames, NOW - timedelta(days=30), 10) == 1
    counts = site.run_sync(chargers.status_counts)
    assert counts["chargers"]["total"] == 2
