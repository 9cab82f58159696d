"""The site's circuits (issue 17): configured with `voltaro ctl circuits`, from the
settings file's [[circuits]], stored in the database, read over the HTTP API."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import trio

from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.e2e.test_ctl import ctl
from voltaro import app
from voltaro.domain.circuits import ChargerWiring, Circuit, CircuitConfig, Phase
from voltaro.settings import ApiScope, ApiToken
from voltaro.startup import StartupError
from voltaro.store import chargers, circuits

READ = "read-token-0123456789"


async def test_circuits_from_ctl_are_checked_stored_and_listed(server: RunningServer) -> None:
    for charger_id in ("CP-1", "CP-2", "CP-3"):
        server.run(chargers.add_charger, charger_id)  # circuits assign takes registered ids
    assert (await ctl(server, "circuits", "add", "site", "--limit", "63")).returncode == 0
    feeder = await ctl(
        server, "--json", "circuits", "add", "feeder-a", "--parent", "site", "--limit", "32",
        "--kw", "22",
    )  # fmt: skip
    assert feeder.returncode == 0, feeder.stderr
    assert json.loads(feeder.stdout) == {
        "name": "feeder-a",
        "parent": "site",
        "limit_amps": 32.0,
        "limit_kw": 22.0,
        "chargers": [],
    }
    assigned = await ctl(
        server, "circuits", "assign", "CP-1", "feeder-a", "--phases", "L1=L2,L2=L3,L3=L1",
        "--max", "16", "--fallback", "8", "--priority", "2",
    )  # fmt: skip
    assert assigned.returncode == 0, assigned.stderr
    single = await ctl(server, "circuits", "assign", "CP-2", "site", "--phases", "L1=L3")
    assert single.returncode == 0, single.stderr

    listed = json.loads((await ctl(server, "--json", "circuits", "list")).stdout)
    assert [c["name"] for c in listed["circuits"]] == ["site", "feeder-a"]
    assert listed["circuits"][1]["chargers"] == [
        {
            "charger_id": "CP-1",
            "circuit": "feeder-a",
            "phases": "L1=L2,L2=L3,L3=L1",
            "max_amps": 16.0,
            "fallback_amps": 8.0,
            "priority": 2,
        }
    ]
    human = (await ctl(server, "circuits", "list")).stdout.decode()
    assert human.splitlines()[0].split()[:4] == ["CIRCUIT", "PARENT", "LIMIT", "A"]
    assert "CP-1(L1=L2,L2=L3,L3=L1 16A)" in human
    stored = server.run(circuits.load_site)
    assert stored.chargers[1] == ChargerWiring(
        charger_id="CP-2", circuit_id="site", phases=(Phase.L3,), max_amps=32.0, fallback_amps=6.0
    )

    # A limit cleared with "off"; the other one kept.
    cleared = await ctl(server, "--json", "circuits", "set-limit", "feeder-a", "--kw", "off")
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout)["limit_kw"] is None
    assert json.loads(cleared.stdout)["limit_amps"] == 32.0
    # Above its parent's limit is allowed: the allocator applies both.
    assert (await ctl(server, "circuits", "set-limit", "feeder-a", "--limit", "80")).returncode == 0

    refusals = [
        (("circuits", "set-limit", "site", "--parent", "feeder-a"), 2, "circuits form a cycle"),
        (("circuits", "set-limit", "feeder-a", "--limit", "off"), 2, "needs a limit in A or kW"),
        (("circuits", "add", "x", "--parent", "nowhere", "--limit", "5"), 2, "parent nowhere"),
        (("circuits", "add", "site", "--limit", "5"), 2, "exists already"),
        (("circuits", "add", "y"), 2, "needs a limit"),
        (("circuits", "assign", "CP-3", "nowhere"), 2, "circuit nowhere is not a circuit"),
        (("circuits", "assign", "CP-3", "site", "--phases", "L1=L1,L2=L1"), 2, "same site phase"),
        (("circuits", "assign", "CP-3", "site", "--fallback", "40"), 2, "fallback limit"),
        (("circuits", "remove", "site"), 2, "still feeds circuit feeder-a, charger CP-2"),
        (("circuits", "remove", "nowhere"), 5, "unknown circuit nowhere"),
        (("circuits", "unassign", "CP-9"), 5, "CP-9 is on no circuit"),
        (("circuits", "add", "z", "--limit", "-3"), 2, "cannot be negative"),
    ]
    for args, code, message in refusals:
        result = await ctl(server, *args)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr.decode(), (args, result.stderr)
    assert server.run(circuits.load_site) == stored.__class__(
        circuits=(
            Circuit(circuit_id="feeder-a", parent="site", limit_amps=80.0, limit_kw=None),
            Circuit(circuit_id="site", limit_amps=63.0),
        ),
        chargers=stored.chargers,
    )

    for args in (
        ("circuits", "unassign", "CP-1"),
        ("circuits", "unassign", "CP-2"),
        ("circuits", "remove", "feeder-a"),
        ("circuits", "remove", "site"),
    ):
        assert (await ctl(server, *args)).returncode == 0
    assert server.run(circuits.load_site).circuits == ()


async def test_assign_refuses_a_charger_that_is_not_registered(server: RunningServer) -> None:
    """A typo in the charger id would otherwise reserve its fallback on every phase up to
    the root for a charger that never comes: refused, naming the id (exit 5, not_found).
    A charger not booted yet is assigned after `chargers add` registers it."""
    assert (await ctl(server, "circuits", "add", "site", "--limit", "63")).returncode == 0
    typo = await ctl(server, "circuits", "assign", "CP-9", "site")
    assert typo.returncode == 5, typo.stderr
    assert "unknown charger CP-9" in typo.stderr.decode()
    as_json = await ctl(server, "--json", "circuits", "assign", "CP-9", "site")
    assert json.loads(as_json.stderr)["error"] == {
        "code": "not_found",
        "message": "unknown charger CP-9",
    }
    assert server.run(circuits.load_site).chargers == ()

    server.run(chargers.add_charger, "CP-9")  # registered, never connected
    assigned = await ctl(server, "circuits", "assign", "CP-9", "site")
    assert assigned.returncode == 0, assigned.stderr
    assert [w.charger_id for w in server.run(circuits.load_site).chargers] == ["CP-9"]


TOML_CONFIG = CircuitConfig(
    circuits=(
        Circuit(circuit_id="site", limit_amps=63.0),
        Circuit(circuit_id="feeder", parent="site", limit_amps=32.0),
    ),
    chargers=(ChargerWiring(charger_id="CP-1", circuit_id="feeder", phases=(Phase.L2,)),),
)


async def test_the_settings_file_circuits_are_written_at_start(
    database_url: str, tmp_path: Path
) -> None:
    settings = server_settings(database_url, tmp_path, circuits=TOML_CONFIG)
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        listed = json.loads((await ctl(server, "--json", "circuits", "list")).stdout)
        assert [(c["name"], c["limit_amps"]) for c in listed["circuits"]] == [
            ("site", 63.0),
            ("feeder", 32.0),
        ]
        # Changed and extended with ctl until the next start.
        assert (
            await ctl(server, "circuits", "set-limit", "feeder", "--limit", "20")
        ).returncode == 0
        added = await ctl(server, "circuits", "add", "garage", "--parent", "site", "--limit", "16")
        assert added.returncode == 0
        stop.set()
        server.db.dispose()
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        site = server.run(circuits.load_site)
        by_name = {c.circuit_id: c for c in site.circuits}
        assert by_name["feeder"].limit_amps == 32.0  # the file wins at start
        assert by_name["garage"].limit_amps == 16.0  # what it does not name is kept
        assert site.chargers == TOML_CONFIG.chargers
        stop.set()
        server.db.dispose()

    # A file whose circuits make a cycle with the database's is refused in one line.
    cycle = CircuitConfig(circuits=(Circuit(circuit_id="site", parent="garage", limit_amps=63.0),))
    with pytest.raises(StartupError, match="setting circuits: circuits form a cycle"):
        await app.run(server_settings(database_url, tmp_path, circuits=cycle))


async def test_circuits_over_the_http_api(database_url: str, tmp_path: Path) -> None:
    settings = server_settings(
        database_url,
        tmp_path,
        circuits=TOML_CONFIG,
        http_enabled=True,
        http_port=0,
        api_tokens=(ApiToken(token=READ, scope=ApiScope.READ),),
    )
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        assert server.addresses.http is not None
        host, port = server.addresses.http
        async with httpx.AsyncClient(
            base_url=f"http://{host}:{port}", headers={"Authorization": f"Bearer {READ}"}
        ) as http:
            response = await http.get("/circuits")
            assert response.status_code == 200
            body = response.json()
            assert [c["name"] for c in body["circuits"]] == ["site", "feeder"]
            assert body["circuits"][1]["chargers"][0]["phases"] == "L1=L2"
            anonymous = await http.get("/circuits", headers={"Authorization": ""})
            assert anonymous.status_code == 401
        stop.set()
        server.db.dispose()
