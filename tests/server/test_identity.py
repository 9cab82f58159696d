"""Issue 11.11: look-alike identities never register as separate chargers.

Under ``unknown_chargers = accept`` every new id would be registered, so the handshake
is where NFC normalisation and the safe character set are enforced (HTTP 400).
"""

from __future__ import annotations

import pytest
from listener_support import open_charger, serving, wait_for

from voltaro.net.directory import MemoryDirectory
from voltaro.net.identity import InvalidIdentity, charger_id_from_path
from voltaro.settings import Settings, UnknownChargers

ACCEPTING = Settings(
    host="127.0.0.1",
    port=0,
    ping_interval=0,
    handshake_timeout=5,
    unknown_chargers=UnknownChargers.ACCEPT,
)

LOOK_ALIKES = {
    "composed A-ring": "/ocpp/%C3%85",
    "decomposed A-ring": "/ocpp/A%CC%8A",
    "Cyrillic Es": "/ocpp/%D0%A1P-1",
    "trailing space": "/ocpp/CP-1%20",
    "leading space": "/ocpp/%20CP-1",
    "no-break space": "/ocpp/CP-1%C2%A0",
    "double inner space": "/ocpp/CP%20%201",
    "zero-width space": "/ocpp/CP%E2%80%8B1",
    "fullwidth digit": "/ocpp/CP%EF%BC%91",
    "slash encoded": "/ocpp/a%2Fb",
    "lone surrogate escape": "/ocpp/%ED%A0%80",
}

REAL_IDS = {
    "/ocpp/CP-1": "CP-1",
    "/ocpp/RDAM%20123": "RDAM 123",  # OCPP-J 1.6 §3.1.1's own example
    "/ocpp/00:1A:2B:3C:4D:5E": "00:1A:2B:3C:4D:5E",
    "/steve/websocket/CentralSystemService/CBI-0042_A.1": "CBI-0042_A.1",
    "/ocpp/EVB*P1234*5678": "EVB*P1234*5678",
    "/ocpp/site=1+cp|2@x": "site=1+cp|2@x",
}


@pytest.mark.parametrize("path", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
def test_look_alike_identities_are_invalid(path: str) -> None:
    with pytest.raises(InvalidIdentity):
        charger_id_from_path(path)


@pytest.mark.parametrize(("path", "identity"), REAL_IDS.items())
def test_identities_real_chargers_use_are_kept(path: str, identity: str) -> None:
    assert charger_id_from_path(path) == identity


async def test_look_alikes_get_400_and_register_nothing() -> None:
    directory = MemoryDirectory()
    async with serving(ACCEPTING, directory) as srv:
        for name, path in LOOK_ALIKES.items():
            async with await open_charger(srv.url(path)) as hs:
                assert hs.status == 400, name
        async with await open_charger(srv.url("/ocpp/CP-1")) as hs:
            assert hs.status == 101
            await wait_for(lambda: srv.registry.connected() == ["CP-1"])
    assert list(directory.records) == ["CP-1"]
