"""Load management policy end to end (issue 17): the site's limit following an external
signal (the building's other load pushed over the HTTP API or with ctl, a schedule),
priority by id tag, and phases in use from meter values. A real server on loopback,
independent chargers speaking raw OCPP-J frames (tests/e2e/test_load_management.py's
ProfileCharger) that record the TxProfiles they receive."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.e2e.test_ctl import ctl
from tests.e2e.test_load_management import (
    ProfileCharger,
    Signal,
    offered,
    site,
    wait_until,
    wiring,
)
from tests.support.charger import RawCharger
from voltaro import app
from voltaro.domain.circuits import ChargerWiring, CircuitConfig, Phase
from voltaro.domain.load_allocation import PolicyMode
from voltaro.domain.site_limits import ScheduleEntry
from voltaro.settings import ApiScope, ApiToken
from voltaro.startup import StartupError
from voltaro.store import chargers, tags

READ = "read-token-0123456789"
OPERATE = "operate-token-0123456789"


@asynccontextmanager
async def fleet_on(
    database_url: str,
    tmp_path: Path,
    config: CircuitConfig,
    ids: list[str],
    **overrides: Any,
) -> AsyncIterator[tuple[RunningServer, dict[str, ProfileCharger], httpx.AsyncClient]]:
    settings = server_settings(
        database_url,
        tmp_path,
        circuits=config,
        load_interval=30.0,  # rounds come from events and limit changes, not the timer
        load_hysteresis_amps=0.5,
        http_enabled=True,
        http_port=0,
        api_tokens=(
            ApiToken(token=READ, scope=ApiScope.READ),
            ApiToken(token=OPERATE, scope=ApiScope.OPERATE, name="ems"),
        ),
        **overrides,
    )
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        fleet: dict[str, ProfileCharger] = {}
        signal = Signal()
        for charger_id in ids:
            server.run(chargers.add_charger, charger_id)
            server.run(tags.add_tag, charger_id)
            cp = await RawCharger.connect(f"{server.url}/{charger_id}")
            assert (await cp.boot())["status"] == "Accepted"
            fleet[charger_id] = ProfileCharger(charger_id, cp, signal)
            nursery.start_soon(fleet[charger_id].serve)
        assert server.addresses.http is not None
        host, port = server.addresses.http
        async with httpx.AsyncClient(
            base_url=f"http://{host}:{port}", headers={"Authorization": f"Bearer {OPERATE}"}
        ) as http:
            try:
                yield server, fleet, http
            finally:
                for charger in fleet.values():
                    await charger.cp.close()
                stop.set()
                server.db.dispose()


async def site_load(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/circuits", headers={"Authorization": f"Bearer {READ}"})
    assert response.status_code == 200, response.text
    (load,) = response.json()["live"]["loads"]
    assert isinstance(load, dict)
    return load


async def test_the_buildings_other_load_pushed_over_http_and_ctl_lowers_the_site_limit(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voltaro")
    config = site(wiring("CP-A"), wiring("CP-B"))
    async with fleet_on(
        database_url, tmp_path, config, ["CP-A", "CP-B"], external_load_fallback_amps=12.0
    ) as (server, fleet, http):
        active = {"CP-A": await fleet["CP-A"].start(), "CP-B": await fleet["CP-B"].start()}
        await wait_until(
            fleet, lambda: offered(fleet, active) == {"CP-A": 16.0, "CP-B": 16.0}, "16 A each"
        )
        # A read token may look but not push.
        refused = await http.put(
            "/site/external-load",
            json={"amps": 5},
            headers={"Authorization": f"Bearer {READ}"},
        )
        assert refused.status_code == 403
        for bad in ({"amps": -1}, {"amps": [1, 2]}, {"circuit": "nope", "amps": 1}):
            response = await http.put("/site/external-load", json=bad)
            assert response.status_code == 422, (bad, response.text)
            assert response.json()["error"]["code"] == "bad_arguments"

        # The building draws 10 A on L1 and 4 A on L2: 22 A are left on L1, 11 A each.
        pushed = await http.put("/site/external-load", json={"amps": [10, 4, 0], "valid_for_s": 3})
        assert pushed.status_code == 200, pushed.text
        assert pushed.json()["circuit"] == "site"  # the root by default
        assert pushed.json()["state"] == "live"
        took = await wait_until(
            fleet, lambda: offered(fleet, active) == {"CP-A": 11.0, "CP-B": 11.0}, "22 A on L1"
        )
        assert took < 10.0, took  # a round on the push (~0.1 s), not load_interval's 30 s
        load = await site_load(http)
        assert load["effective_limit_amps"] == [22.0, 28.0, 32.0]
        assert load["limit_source"] == "configured+external"
        assert load["external_load"] == {"state": "live", "amps": [10.0, 4.0, 0.0]}
        assert load["headroom_amps"] == 0.0

        # Nothing new within its validity: the other load is assumed to be the higher of
        # the last value and the 12 A fallback on every phase (20 A left), within seconds
        # of running out (the limits are looked at every second), and that is logged once.
        await trio.sleep(3.0)
        await wait_until(
            fleet, lambda: offered(fleet, active) == {"CP-A": 10.0, "CP-B": 10.0}, "fallback"
        )
        listed = await http.get("/site/external-load")
        (ext,) = listed.json()["external_loads"]
        assert ext["state"] == "stale"
        assert ext["assumed_amps"] == [12.0, 12.0, 12.0]
        load = await site_load(http)
        assert load["limit_source"] == "configured+external-fallback"
        assert load["effective_limit_amps"] == [20.0, 20.0, 20.0]
        human = (await ctl(server, "circuits", "list")).stdout.decode()
        assert "20.0/20.0/20.0 configured+external-fallback" in human
        await trio.sleep(2.5)  # more rounds
        await ctl(server, "circuits", "list")
        warnings = [r for r in caplog.records if "is out of date" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]

        # ctl pushes too (operator role): no other load, back to 16 A each.
        done = await ctl(server, "circuits", "external-load", "site", "--amps", "0")
        assert done.returncode == 0, done.stderr
        assert b"live" in done.stdout
        await wait_until(
            fleet, lambda: offered(fleet, active) == {"CP-A": 16.0, "CP-B": 16.0}, "no other load"
        )
        shown = json.loads((await ctl(server, "--json", "circuits", "external-load")).stdout)
        assert shown["external_loads"][0]["amps"] == [0.0, 0.0, 0.0]
        assert any("reported again" in r.getMessage() for r in caplog.records)


async def test_a_schedule_boundary_changes_the_limit_within_seconds(
    database_url: str, tmp_path: Path
) -> None:
    # From 10 s from now for an hour (server local time), the site is held to 20 A.
    begins = datetime.now() + timedelta(seconds=10)
    entry = ScheduleEntry(
        circuit_id="site",
        days=frozenset(range(7)),
        start=begins.time().replace(microsecond=0),
        end=(begins + timedelta(hours=1)).time().replace(microsecond=0),
        limit_amps=20.0,
    )
    config = site(wiring("CP-A"), wiring("CP-B"))
    async with fleet_on(
        database_url, tmp_path, config, ["CP-A", "CP-B"], load_schedule=(entry,)
    ) as (server, fleet, http):
        active = {"CP-A": await fleet["CP-A"].start(), "CP-B": await fleet["CP-B"].start()}
        await wait_until(
            fleet, lambda: offered(fleet, active) == {"CP-A": 16.0, "CP-B": 16.0}, "16 A each"
        )
        assert (await site_load(http))["limit_source"] == "configured"
        await trio.sleep(max(0.0, (begins - datetime.now()).total_seconds()))
        took = await wait_until(
            fleet, lambda: offered(fleet, active) == {"CP-A": 10.0, "CP-B": 10.0}, "schedule"
        )
        # The limits are looked at every second; the next timed round is ~20 s away.
        assert took < 10.0, took
        load = await site_load(http)
        assert load["limit_source"] == "schedule"
        assert load["schedule_amps"] == 20.0
        assert load["effective_limit_amps"] == [20.0, 20.0, 20.0]
        # The other load comes off the scheduled limit.
        assert (await http.put("/site/external-load", json={"amps": 4})).status_code == 200
        await wait_until(
            fleet, lambda: offered(fleet, active) == {"CP-A": 8.0, "CP-B": 8.0}, "20 - 4 A"
        )
        assert (await site_load(http))["limit_source"] == "schedule+external"
        human = (await ctl(server, "circuits", "list")).stdout.decode()
        assert "16.0/16.0/16.0 schedule+external" in human


async def test_a_schedule_or_external_circuit_that_is_not_a_circuit_stops_the_server(
    database_url: str, tmp_path: Path
) -> None:
    entry = ScheduleEntry(
        circuit_id="garage",
        days=frozenset(range(7)),
        start=datetime.now().time(),
        end=datetime.now().time(),
        limit_amps=20.0,
    )
    config = site(wiring("CP-A"))
    with pytest.raises(StartupError, match="setting load_schedule: circuit garage is not"):
        await app.run(
            server_settings(database_url, tmp_path, circuits=config, load_schedule=(entry,))
        )
    with pytest.raises(StartupError, match="setting external_load_circuits: circuit x is not"):
        await app.run(
            server_settings(database_url, tmp_path, circuits=config, external_load_circuits=("x",))
        )


async def test_an_id_tags_priority_outranks_its_chargers(database_url: str, tmp_path: Path) -> None:
    config = site(wiring("CP-A"), wiring("CP-B"), wiring("CP-C"))
    async with fleet_on(
        database_url,
        tmp_path,
        config,
        ["CP-A", "CP-B", "CP-C"],
        load_policy=PolicyMode.PRIORITY,
        load_tag_priorities={"CP-C": 1},  # each test charger starts with its own id as tag
    ) as (server, fleet, http):
        # Case does not matter (IdToken is CiString20, §7.28); admin role.
        done = await ctl(server, "circuits", "tag-priority", "cp-b", "2")
        assert done.returncode == 0, done.stderr
        active = {cid: await fleet[cid].start() for cid in ("CP-A", "CP-B", "CP-C")}
        # 32 A: everyone's 6 A minimum, the rest to B (its tag: 2), then C (1), then A.
        await wait_until(
            fleet,
            lambda: offered(fleet, active) == {"CP-A": 6.0, "CP-B": 20.0, "CP-C": 6.0},
            "B's tag first",
        )
        listed = json.loads((await ctl(server, "--json", "circuits", "list")).stdout)
        assert listed["tag_priorities"] == {"CP-C": 1, "cp-b": 2}
        ranks = {
            s["charger_id"]: (s["priority"], s["priority_from"]) for s in listed["live"]["sessions"]
        }
        assert ranks == {"CP-A": (0, "charger"), "CP-B": (2, "tag"), "CP-C": (1, "tag")}
        response = await http.get("/circuits", headers={"Authorization": f"Bearer {READ}"})
        assert response.json()["tag_priorities"] == {"CP-C": 1, "cp-b": 2}
        human = (await ctl(server, "circuits", "list")).stdout.decode()
        assert "TAG PRIORITIES: cp-b=2 CP-C=1" in human, human
        assert "2 tag" in human

        # B's tag loses its priority: C's tag (1) is now the highest.
        done = await ctl(server, "circuits", "tag-priority", "CP-B", "off")
        assert done.returncode == 0, done.stderr
        await wait_until(
            fleet,
            lambda: offered(fleet, active) == {"CP-A": 6.0, "CP-B": 6.0, "CP-C": 20.0},
            "C's tag first",
        )
        missing = await ctl(server, "circuits", "tag-priority", "CP-B", "off")
        assert missing.returncode != 0
        assert b"has no priority" in missing.stderr


async def meter(charger: ProfileCharger, tx_id: int, l1: float, l2: float, l3: float) -> None:
    """A MeterValues with Current.Import per phase of the charger's own meter."""
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    await charger.call(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": tx_id,
            "meterValue": [
                {
                    "timestamp": at,
                    "sampledValue": [
                        {
                            "value": f"{amps:.1f}",
                            "measurand": "Current.Import",
                            "phase": phase,
                            "unit": "A",
                        }
                        for phase, amps in (("L1", l1), ("L2", l2), ("L3", l3))
                    ],
                }
            ],
        },
    )


async def test_single_phase_cars_are_counted_on_the_phases_they_draw_on(
    database_url: str, tmp_path: Path
) -> None:
    # Two three-phase chargers, B rotated: its L1 is the site's L2.
    rotated = ChargerWiring(
        charger_id="CP-B",
        circuit_id="site",
        phases=(Phase.L2, Phase.L3, Phase.L1),
        max_amps=32.0,
        fallback_amps=6.0,
    )
    config = site(wiring("CP-A"), rotated)
    async with fleet_on(database_url, tmp_path, config, ["CP-A", "CP-B"]) as (
        server,
        fleet,
        _,
    ):
        active = {"CP-A": await fleet["CP-A"].start(), "CP-B": await fleet["CP-B"].start()}
        await wait_until(
            fleet, lambda: offered(fleet, active) == {"CP-A": 16.0, "CP-B": 16.0}, "16 A each"
        )
        # Both cars draw on their charger's L1 only. One sample is not enough...
        await meter(fleet["CP-A"], active["CP-A"], 15.8, 0.2, 0.0)
        await meter(fleet["CP-B"], active["CP-B"], 15.9, 0.0, 0.1)
        await trio.sleep(0.5)
        assert offered(fleet, active) == {"CP-A": 16.0, "CP-B": 16.0}
        # ...two in a row are: A is on the site's L1, B on its L2, each may have 32 A.
        await meter(fleet["CP-A"], active["CP-A"], 15.8, 0.2, 0.0)
        await meter(fleet["CP-B"], active["CP-B"], 15.9, 0.0, 0.1)
        await wait_until(
            fleet, lambda: offered(fleet, active) == {"CP-A": 32.0, "CP-B": 32.0}, "narrowed"
        )
        listed = json.loads((await ctl(server, "--json", "circuits", "list")).stdout)
        shown = {
            s["charger_id"]: (s["phases"], s["phases_from"]) for s in listed["live"]["sessions"]
        }
        assert shown == {"CP-A": (["L1"], "meter"), "CP-B": (["L2"], "meter")}
        (load,) = listed["live"]["loads"]
        assert load["amps"][2] == 0.0  # nothing is counted on the site's L3

        # A's car starts drawing on its L2 (the site's L2, B's phase): one sample puts it
        # back on all its phases at once, and both are cut to 16 A at once.
        await meter(fleet["CP-A"], active["CP-A"], 15.8, 1.5, 0.0)
        took = await wait_until(
            fleet, lambda: offered(fleet, active) == {"CP-A": 16.0, "CP-B": 16.0}, "widened"
        )
        assert took < 10.0, took  # a round on the meter value, not load_interval's 30 s
        listed = json.loads((await ctl(server, "--json", "circuits", "list")).stdout)
        shown = {s["charger_id"]: s["phases_from"] for s in listed["live"]["sessions"]}
        assert shown == {"CP-A": "wiring", "CP-B": "meter"}
