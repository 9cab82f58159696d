"""Secrets never leak (issue 15): a charger password provisioned through ChangeConfiguration
AuthorizationKey, a Basic-auth password and an API-style token are nowhere in the
database (SQLite file bytes, PostgreSQL rows), the log (text and JSON, DEBUG), the event
stream (frames included) or `voltaro ctl --json` output. Viewers get no raw frames unless
the server allows it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from sqlalchemy import text

from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.e2e.control_client import ControlClient
from tests.support.charger import RawCharger
from tests.support.signing import make_signer
from voltaro.control import wire
from voltaro.control.ops import ControlOps
from voltaro.control.peers import Peer
from voltaro.control.server import ControlServer
from voltaro.logs import JsonFormatter, safe_formatter
from voltaro.net.registry import Registry
from voltaro.service.commands import CommandService
from voltaro.service.hub import EventHub
from voltaro.store import chargers, frames
from voltaro.store.schema import Base


async def ctl(server: RunningServer, *args: str) -> Any:
    env = {**os.environ, "VOLTARO_CONTROL_SOCKET": server.addresses.control_socket or ""}
    return await trio.run_process(
        [sys.executable, "-m", "voltaro", "ctl", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=env,
    )


@pytest.fixture
def server_log() -> Iterator[io.StringIO]:
    """Everything the server logs, at DEBUG, through both production formatters."""
    out = io.StringIO()
    root = logging.getLogger()
    handlers = []
    for formatter in (safe_formatter(), JsonFormatter()):
        handler = logging.StreamHandler(out)
        handler.setFormatter(formatter)
        handler.setLevel(logging.DEBUG)
        root.addHandler(handler)
        handlers.append(handler)
    old_levels = {name: logging.getLogger(name).level for name in ("", "ocpp", "voltaro")}
    for name in old_levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        for name, level in old_levels.items():
            logging.getLogger(name).setLevel(level)


def database_text(server: RunningServer, tmp_path: Path) -> str:
    """Every byte of the SQLite files, or every row of every table on PostgreSQL."""
    url = server.settings.database_url
    if url.startswith("sqlite"):
        blob = b"".join(p.read_bytes() for p in tmp_path.glob("voltaro.db*"))
        return blob.decode("latin-1")
    parts = []
    with server.db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(text(f'SELECT CAST(t AS text) FROM "{table.name}" t'))
            parts.extend(row[0] for row in rows)
    return "\n".join(parts)


def forms(secret_hex: str) -> list[str]:
    """The ways a secret could be written down: hex either case, raw bytes, Basic header."""
    raw = bytes.fromhex(secret_hex)
    return [secret_hex.lower(), secret_hex.upper(), raw.decode("latin-1")]


async def test_provisioned_password_is_nowhere(
    database_url: str, tmp_path: Path, server_log: io.StringIO
) -> None:
    first = secrets.token_hex(20)  # 20 bytes as 40 hex digits (AuthorizationKey, whitepaper)
    second = secrets.token_hex(20)
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, server_settings(database_url, tmp_path))
        outputs: list[bytes] = []
        try:
            added = await ctl(server, "--json", "chargers", "add", "CP-S", "--password", first)
            assert added.returncode == 0, added.stderr
            outputs += [added.stdout, added.stderr]
            cp = await RawCharger.connect(f"{server.url}/CP-S", password=bytes.fromhex(first))
            await cp.boot()
            watcher = await ControlClient.connect(server.addresses.control_socket or "")
            assert (await watcher.request("subscribe", {"frames": True}))["ok"]

            async def answer(status_payload: dict[str, Any]) -> None:
                call = await cp.next_call()
                await cp.answer(call, status_payload)

            async with trio.open_nursery() as inner:
                inner.start_soon(answer, {"status": "Accepted"})
                done = await ctl(server, "--json", "set-config", "CP-S", "AuthorizationKey", second)
            assert done.returncode == 0, done.stderr
            outputs += [done.stdout, done.stderr]
            # A charger that (against the whitepaper) reports its key in GetConfiguration.
            reported = {
                "configurationKey": [
                    {"key": "AuthorizationKey", "readonly": False, "value": second},
                    {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
                ]
            }
            async with trio.open_nursery() as inner:
                inner.start_soon(answer, reported)
                got = await ctl(server, "--json", "get-config", "CP-S")
            assert got.returncode == 0, got.stderr
            assert json.loads(got.stdout)["configuration"][0]["value"] == wire.REDACTED
            outputs += [got.stdout, got.stderr]

            # The frame log is written in batches: wait until both commands are stored.
            def stored() -> int:
                return len(server.run(frames.recent_frames, "CP-S", limit=100, action=None))

            with trio.fail_after(15):
                while stored() < 6:  # noqa: ASYNC110 - polling another task's batch
                    await trio.sleep(0.05)
            for args in (
                ("chargers", "show", "CP-S"),
                ("chargers", "frames", "CP-S", "--limit", "100"),
                ("chargers", "list"),
                ("status",),
            ):
                result = await ctl(server, "--json", *args)
                assert result.returncode == 0, result.stderr
                outputs += [result.stdout, result.stderr]
            shown = json.loads(outputs[-8])  # chargers show
            assert {"key": "AuthorizationKey", "readonly": False, "value": wire.REDACTED} in (
                shown["configuration"]
            )
            assert shown["commands"][-1]["request"]["value"] == wire.REDACTED
            # Drain the event stream (the frames of both commands are in it).
            await watcher.request("status")
            events = json.dumps(watcher.events, ensure_ascii=False)
            assert '"event": "frame"' in events
            assert "ChangeConfiguration" in events
            await watcher.aclose()
            await cp.close()
        finally:
            stop.set()
        # Everything the server had to write is written once it has stopped.
    stored = database_text(server, tmp_path)
    server.db.dispose()
    assert "AuthorizationKey" in stored  # the frames and the audit row are there ...
    logged = server_log.getvalue()
    assert "AuthorizationKey" in logged  # ... and the control request was logged
    printed = b"".join(outputs).decode("utf-8", "replace")
    for where, haystack in (
        ("database", stored),
        ("log", logged),
        ("event stream", events),
        ("ctl output", printed),
    ):
        for secret_hex in (first, second):
            for form in forms(secret_hex):
                assert form not in haystack, f"a secret is in the {where}"


async def test_viewers_see_no_raw_frames_unless_allowed(database_url: str, tmp_path: Path) -> None:
    viewer = Peer(pid=1, uid=60001, gid=60001, user="vera", groups=())
    from voltaro.store.db import Database

    setup = Database(database_url, pool_size=1)
    setup.upgrade()
    setup.run_sync(chargers.add_charger, "CP-1")
    setup.dispose()
    for allowed in (False, True):
        settings = server_settings(
            database_url, tmp_path, control_socket=str(tmp_path / f"v{allowed}.sock")
        )
        settings = settings.__class__(
            **{
                **{f: getattr(settings, f) for f in settings.__dataclass_fields__},
                "viewer_frames": allowed,
            }
        )
        db = Database(database_url, pool_size=2)
        db.upgrade()
        registry, hub = Registry(), EventHub(64)
        ops = ControlOps(db, registry, CommandService(db, registry, hub, settings=settings), hub)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                ControlServer(settings, ops, hub, peer_lookup=lambda sock: viewer).run
            )
            client = await ControlClient.connect(settings.control_socket)
            assert client.hello["role"] == "viewer"
            listed = await client.request("chargers.frames", {"charger_id": "CP-1"})
            subscribed = await client.request("subscribe", {"frames": True})
            # Quarantined entries are raw frames too.
            quarantined = await client.request("quarantine.list", {})
            plain = await client.request("subscribe", {"frames": False})
            assert plain["ok"]
            if allowed:
                assert listed["ok"]
                assert subscribed["ok"]
                assert quarantined["ok"]
            else:
                assert listed["error"]["code"] == "forbidden"
                assert subscribed["error"]["code"] == "forbidden"
                assert quarantined["error"]["code"] == "forbidden"
            await client.aclose()
            nursery.cancel_scope.cancel()
        db.dispose()


async def test_file_url_tokens_are_nowhere(
    database_url: str, tmp_path: Path, server_log: io.StringIO
) -> None:
    """The one-time URL tokens Voltaro hands chargers (firmware downloads, diagnostics and
    log uploads: UpdateFirmware, SignedUpdateFirmware, GetDiagnostics, GetLog) travel only
    to the charger: the frame log, the audit, the log, the event stream and `ctl --json`
    show what they point at, never the token. The upload itself still works."""
    settings = server_settings(database_url, tmp_path, http_enabled=True, http_port=0)
    image = tmp_path / "acme-3.0.bin"
    image.write_bytes(b"\x7fFW" * 3000)
    signer = make_signer(tmp_path / "signing", "ec")
    tokens: list[str] = []
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        outputs: list[bytes] = []
        try:
            server.run(chargers.add_charger, "CP-S")
            cp = await RawCharger.connect(f"{server.url}/CP-S")
            await cp.boot()
            watcher = await ControlClient.connect(server.addresses.control_socket or "")
            assert (await watcher.request("subscribe", {"frames": True}))["ok"]
            added = await ctl(server, "--json", "firmware", "add", str(image))
            assert added.returncode == 0, added.stderr
            outputs += [added.stdout, added.stderr]

            async def answered(answer: dict[str, Any], *args: str) -> list[Any]:
                calls: list[Any] = []

                async def charger() -> None:
                    call = await cp.next_call()
                    calls.append(call)
                    await cp.answer(call, answer)

                async with trio.open_nursery() as inner:
                    inner.start_soon(charger)
                    done = await ctl(server, "--json", *args)
                assert done.returncode == 0, done.stderr
                outputs.extend([done.stdout, done.stderr])
                return calls[0]

            sent = [
                await answered({}, "firmware", "update", "CP-S", "--file", "acme-3.0.bin"),
                await answered({}, "diagnostics", "get", "CP-S"),
                await answered({"status": "Accepted", "filename": "s.log"}, "logs", "get", "CP-S"),
                await answered(
                    {"status": "Accepted"},
                    *("firmware", "update-signed", "CP-S", "--file", "acme-3.0.bin"),
                    *("--signing-cert", str(signer.cert), "--sign-with", str(signer.key)),
                ),
            ]
            locations = [
                sent[0][3]["location"],
                sent[1][3]["location"],
                sent[2][3]["log"]["remoteLocation"],
                sent[3][3]["firmware"]["location"],
            ]
            for location in locations:
                part = location.split("/files/", 1)[1].split("/")
                assert part[0] in ("firmware", "upload"), location
                tokens.append(part[1])
            assert len(set(tokens)) == 4
            assert all(len(t) >= 24 for t in tokens)
            # The charger uses its URLs: the server logs the transfers (not the tokens).
            async with httpx.AsyncClient(timeout=10) as http:
                assert (await http.get(locations[0])).status_code == 200
                put = await http.put(locations[2] + "s.log", content=b"security log")
                assert put.status_code == 201

            def stored() -> int:
                return len(server.run(frames.recent_frames, "CP-S", limit=100, action=None))

            with trio.fail_after(15):
                while stored() < 10:  # noqa: ASYNC110 - polling another task's batch
                    await trio.sleep(0.05)
            for args in (
                ("chargers", "show", "CP-S"),
                ("chargers", "frames", "CP-S", "--limit", "100"),
                ("commands", "list"),
                ("logs", "list"),
            ):
                result = await ctl(server, "--json", *args)
                assert result.returncode == 0, result.stderr
                outputs += [result.stdout, result.stderr]
            await watcher.request("status")
            events = json.dumps(watcher.events, ensure_ascii=False)
            assert "GetLog" in events
            assert "SignedUpdateFirmware" in events
            await watcher.aclose()
            await cp.close()
        finally:
            stop.set()
    stored_text = database_text(server, tmp_path)
    server.db.dispose()
    assert "/files/upload/" in stored_text  # the frames are there, without their tokens
    logged = server_log.getvalue()
    assert "uploaded securitylog" in logged
    printed = b"".join(outputs).decode("utf-8", "replace")
    for where, haystack in (
        ("database", stored_text),
        ("log", logged),
        ("event stream", events),
        ("ctl output", printed),
    ):
        for token in tokens:
            assert token not in haystack, f"a URL token is in the {where}"
