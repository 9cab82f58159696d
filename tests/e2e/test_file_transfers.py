"""Voltaro serves firmware and receives diagnostics over its own HTTP server
(issue 16): per-charger URL tokens, one complete transfer each, size limits, failure
paths (bad, used and expired tokens, too large, a client vanishing mid-transfer), with
an independent charger (raw OCPP-J frames) and a plain HTTP client (httpx, raw sockets)."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from tests.api.conftest import ADMIN, OPERATE, READ, api
from tests.api.conftest import client as api_client
from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.e2e.control_client import ControlClient
from tests.e2e.test_control import online
from tests.e2e.test_ctl import ctl
from tests.support.charger import RawCharger
from voltaro.domain.timestamps import utc_now
from voltaro.service.files import hash_token
from voltaro.store import commands, files

__all__ = ["api"]

UPLOAD_LIMIT = 64 * 1024


@pytest.fixture
async def http_server(database_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = server_settings(
        database_url, tmp_path, http_enabled=True, http_port=0, upload_max_bytes=UPLOAD_LIMIT
    )
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            yield server
        finally:
            stop.set()
            server.db.dispose()


async def control(server: RunningServer) -> ControlClient:
    assert server.addresses.control_socket is not None
    return await ControlClient.connect(server.addresses.control_socket)


async def request_answered(
    client: ControlClient, cp: RawCharger, op: str, answer: dict[str, Any], **args: Any
) -> tuple[list[Any], dict[str, Any]]:
    results: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            results.append(await client.request(op, args))

        nursery.start_soon(send)
        call = await cp.next_call()
        await cp.answer(call, answer)
    return call, results[0]


def image(tmp_path: Path, size: int, name: str = "acme-2.1.bin") -> tuple[Path, bytes]:
    data = hashlib.sha256(b"seed").digest() * (size // 32 + 1)
    path = tmp_path / name
    path.write_bytes(data[:size])
    return path, data[:size]


async def add_firmware(client: ControlClient, path: Path) -> dict[str, Any]:
    added = await client.request("firmware.add", {"path": str(path)})
    assert added["ok"], added
    return added["result"]


async def test_firmware_is_served_once_per_charger(
    http_server: RunningServer, tmp_path: Path
) -> None:
    server = http_server
    assert server.addresses.http is not None
    host, port = server.addresses.http
    cp = await online(server)
    client = await control(server)
    path, data = image(tmp_path, 200_000)
    stored = await add_firmware(client, path)
    assert (stored["name"], stored["size"]) == ("acme-2.1.bin", len(data))
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    listed = await client.request("firmware.list")
    assert [f["id"] for f in listed["result"]] == [stored["id"]]
    call, response = await request_answered(
        client, cp, "firmware.update", {}, charger_id="CP-1", file="acme-2.1.bin", retries=2
    )
    assert response["ok"], response
    location = call[3]["location"]
    assert location.startswith(f"http://{host}:{port}/files/firmware/")
    assert location.endswith("/acme-2.1.bin")
    assert call[3]["retries"] == 2
    # The audit names the file, never the URL token.
    audit = server.run(commands.list_commands, "CP-1")[0]
    token = urlsplit(location).path.split("/")[3]
    assert token not in json.dumps(audit["request"])
    assert "acme-2.1.bin" in audit["request"]["location"]
    async with httpx.AsyncClient(timeout=10) as http:
        head = await http.head(location)
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(data))
        got = await http.get(location)
        assert got.status_code == 200
        assert got.content == data
        assert got.headers["x-checksum-sha256"] == stored["sha256"]
        again = await http.get(location)
        assert again.status_code == 410
        assert again.json()["error"]["message"] == "this file URL was already used"
        wrong = await http.get(location.replace(token, token[:-2] + "xx"))
        assert wrong.status_code == 404
        no_token = await http.get(f"http://{host}:{port}/files/firmware/")
        assert no_token.status_code == 404
        posted = await http.post(location, content=b"x")
        assert posted.status_code == 405
    await client.aclose()
    await cp.close()


async def test_a_vanished_download_does_not_spend_the_url(
    http_server: RunningServer, tmp_path: Path
) -> None:
    server = http_server
    cp = await online(server)
    client = await control(server)
    # Larger than what loopback socket buffers hold, so the server is still sending.
    path, data = image(tmp_path, 24 * 1024 * 1024)
    await add_firmware(client, path)
    call, _ = await request_answered(
        client, cp, "firmware.update", {}, charger_id="CP-1", file="acme-2.1.bin"
    )
    location = urlsplit(call[3]["location"])
    assert location.port is not None

    def vanish() -> bytes:
        with socket.create_connection((location.hostname, location.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(f"GET {location.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            first = sock.recv(4096)
            # Unread data makes close() send RST: the charger is gone mid-download.
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        return first

    first = await trio.to_thread.run_sync(vanish)
    assert first.startswith(b"HTTP/1.1 200")
    async with httpx.AsyncClient(timeout=30) as http:
        retried = await http.get(location.geturl())
        assert retried.status_code == 200
        assert len(retried.content) == len(data)
        assert hashlib.sha256(retried.content).digest() == hashlib.sha256(data).digest()
        assert (await http.get(location.geturl())).status_code == 410
    await client.aclose()
    await cp.close()


async def test_an_expired_url_is_refused(http_server: RunningServer, tmp_path: Path) -> None:
    server = http_server
    assert server.addresses.http is not None
    host, port = server.addresses.http
    client = await control(server)
    path, _ = image(tmp_path, 1000)
    stored = await add_firmware(client, path)
    now = utc_now()
    server.run(
        files.issue_token,
        token_hash=hash_token("old-token"),
        direction="download",
        purpose="firmware",
        charger_id="CP-1",
        file_id=stored["id"],
        created_at=now - timedelta(days=2),
        expires_at=now - timedelta(days=1),
    )
    async with httpx.AsyncClient(timeout=10) as http:
        old = await http.get(f"http://{host}:{port}/files/firmware/old-token/x.bin")
        assert old.status_code == 410
        assert old.json()["error"]["message"] == "this file URL has expired"
        # An upload token is no download token.
        up = await http.put(f"http://{host}:{port}/files/upload/old-token/", content=b"x")
        assert up.status_code == 404
    await client.aclose()


async def test_firmware_add_refusals(http_server: RunningServer, tmp_path: Path) -> None:
    client = await control(http_server)
    missing = await client.request("firmware.add", {"path": str(tmp_path / "none.bin")})
    assert missing["error"]["code"] == "bad_arguments"
    relative = await client.request("firmware.add", {"path": "fw.bin"})
    assert "absolute" in relative["error"]["message"]
    path, _ = image(tmp_path, 10)
    changed = await client.request("firmware.add", {"path": str(path), "sha256": "0" * 64})
    assert changed["error"]["code"] == "conflict"
    unknown = await client.request("firmware.update", {"charger_id": "CP-1", "file": "nothing.bin"})
    assert unknown["error"]["code"] == "bad_arguments"
    assert "no firmware 'nothing.bin'" in unknown["error"]["message"]
    both = await client.request(
        "firmware.update", {"charger_id": "CP-1", "file": "x", "location": "http://a/b"}
    )
    assert both["error"]["code"] == "bad_arguments"
    assert http_server.run(files.list_files, "firmware") == []
    # Nothing half-copied is left behind.
    leftovers = list((tmp_path / "data" / "firmware").glob("*"))
    assert leftovers == []
    await client.aclose()


async def diagnostics_url(
    server: RunningServer, client: ControlClient, cp: RawCharger
) -> tuple[str, dict[str, Any]]:
    call, response = await request_answered(
        client, cp, "diagnostics.get", {"fileName": "diag.tgz"}, charger_id="CP-1"
    )
    assert response["ok"], response
    assert call[2] == "GetDiagnostics"
    return call[3]["location"], response["result"]


async def test_diagnostics_upload_put_and_multipart(
    http_server: RunningServer, tmp_path: Path
) -> None:
    server = http_server
    assert server.addresses.http is not None
    host, port = server.addresses.http
    cp = await online(server)
    client = await control(server)
    await client.request("subscribe", {"frames": False})
    location, result = await diagnostics_url(server, client, cp)
    assert location.startswith(f"http://{host}:{port}/files/upload/")
    assert location.endswith("/")
    assert result["details"] == {"file_name": "diag.tgz"}
    audit = server.run(commands.list_commands, "CP-1")[0]
    assert "upload" in audit["request"]["location"]
    assert urlsplit(location).path.split("/")[3] not in json.dumps(audit["request"])
    payload = b"diagnostics\x00" * 1000
    async with httpx.AsyncClient(timeout=10) as http:
        put = await http.put(location + "diag.tgz", content=payload)
        assert put.status_code == 201, put.text
        assert put.json()["size"] == len(payload)
        reused = await http.put(location + "again.tgz", content=b"more")
        assert reused.status_code == 410
        # A second request, a multipart POST (how many chargers upload over HTTP).
        location2, _ = await diagnostics_url(server, client, cp)
        posted = await http.post(
            location2,
            files={"file": ("log 2.zip", b"zipped" * 100, "application/zip")},
            data={"note": "x"},
        )
        assert posted.status_code == 201, posted.text
        assert posted.json()["name"] == "log_2.zip"
    listed = await client.request("diagnostics.list", {"charger_id": "CP-1"})
    names = [(f["name"], f["size"], f["charger_id"]) for f in listed["result"]]
    assert names == [("log_2.zip", 600, "CP-1"), ("diag.tgz", len(payload), "CP-1")]
    piece = await client.request("files.read", {"id": listed["result"][1]["id"]})
    assert piece["result"]["eof"] is True
    assert base64.b64decode(piece["result"]["data"]) == payload
    uploaded = [e for e in client.events if e.get("event") == "file.uploaded"]
    while len(uploaded) < 2:
        frame = await client.read()
        if frame.get("event") == "file.uploaded":
            uploaded.append(frame)
    assert [e["data"]["name"] for e in uploaded] == ["diag.tgz", "log_2.zip"]
    await client.aclose()
    await cp.close()


async def test_upload_failures_store_nothing(http_server: RunningServer, tmp_path: Path) -> None:
    server = http_server
    assert server.addresses.http is not None
    host, port = server.addresses.http
    cp = await online(server)
    client = await control(server)
    location, _ = await diagnostics_url(server, client, cp)
    async with httpx.AsyncClient(timeout=10) as http:
        big = await http.put(location, content=b"x" * (UPLOAD_LIMIT + 1))
        assert big.status_code == 413

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(UPLOAD_LIMIT // 1024 + 2):
                yield b"y" * 1024

        try:
            streamed = await http.put(location, content=chunked())
        except httpx.HTTPError:
            pass  # the server may close before the client finished sending
        else:
            assert streamed.status_code == 413
        bad_form = await http.post(
            location,
            content=b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b--",
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert bad_form.status_code == 400
        assert "no file" in bad_form.json()["error"]["message"]
        unknown = await http.put(f"http://{host}:{port}/files/upload/nope/", content=b"x")
        assert unknown.status_code == 404
        got = await http.get(location)
        assert got.status_code == 405

    def vanish() -> None:
        url = urlsplit(location)
        with socket.create_connection((url.hostname, url.port)) as sock:
            sock.sendall(
                f"PUT {url.path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".encode()
                + b"z" * 100
            )

    await trio.to_thread.run_sync(vanish)
    # The URL was not spent by any of these: the real upload still works.
    async with httpx.AsyncClient(timeout=10) as http:
        ok = await http.put(location, content=b"finally")
        assert ok.status_code == 201
    stored = server.run(files.list_files, "diagnostics")
    assert [(f.size, f.name) for f in stored] == [(7, "diagnostics.bin")]
    incoming = tmp_path / "data" / "uploads" / "diagnostics" / ".incoming"
    for _ in range(100):  # the vanished upload's handler cleans up when it notices
        if not list(incoming.glob("*")):
            break
        await trio.sleep(0.05)
    assert list(incoming.glob("*")) == []
    await client.aclose()
    await cp.close()


async def test_public_base_and_refusals(database_url: str, tmp_path: Path) -> None:
    settings = server_settings(
        database_url,
        tmp_path,
        http_enabled=True,
        http_port=0,
        http_public_base="http://site-box.example:8080/",
    )
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        cp = await online(server)
        client = await control(server)
        call, _ = await request_answered(client, cp, "diagnostics.get", {}, charger_id="CP-1")
        assert call[3]["location"].startswith("http://site-box.example:8080/files/upload/")
        await client.aclose()
        await cp.close()
        stop.set()
        server.db.dispose()
    for charger, overrides, reason in (
        (
            "CP-2",
            {"http_enabled": True, "http_port": 0, "http_host": "0.0.0.0"},
            "http_public_base",
        ),
        ("CP-3", {"http_enabled": False}, "http_enabled = false"),
    ):
        settings = server_settings(database_url, tmp_path / reason[:4], **overrides)
        (tmp_path / reason[:4]).mkdir(exist_ok=True)
        async with trio.open_nursery() as nursery:
            server, stop = await start_server(nursery, settings)
            cp = await online(server, charger)
            client = await control(server)
            refused = await client.request("diagnostics.get", {"charger_id": charger})
            assert refused["error"]["code"] == "bad_arguments"
            assert reason in refused["error"]["message"]
            await cp.expect_silence()
            assert server.run(commands.list_commands, charger) == []
            await client.aclose()
            await cp.close()
            stop.set()
            server.db.dispose()


async def test_ctl_firmware_and_diagnostics(http_server: RunningServer, tmp_path: Path) -> None:
    server = http_server
    cp = await online(server)
    path, data = image(tmp_path, 5000, "fw-3.0.bin")
    added = await ctl(server, "--json", "firmware", "add", str(path))
    assert added.returncode == 0, added.stderr
    file_id = json.loads(added.stdout)["id"]
    listed = await ctl(server, "firmware", "list")
    assert b"fw-3.0.bin" in listed.stdout

    async def run_and_answer(args: list[str], answer: dict[str, Any]) -> Any:
        results: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                results.append(await ctl(server, *args))

            nursery.start_soon(run)
            call = await cp.next_call(timeout=20)
            await cp.answer(call, answer)
        return call, results[0]

    call, done = await run_and_answer(
        ["firmware", "update", "CP-1", "--file", str(file_id), "--at", "2030-01-01T00:00:00Z"],
        {},
    )
    assert done.returncode == 0, done.stderr
    assert b"UpdateFirmware: Accepted" in done.stdout
    assert call[3]["retrieveDate"] == "2030-01-01T00:00:00Z"
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(call[3]["location"])).content == data
    call, done = await run_and_answer(["diagnostics", "get", "CP-1"], {"fileName": "d.log"})
    assert done.returncode == 0, done.stderr
    assert b"file_name: d.log" in done.stdout
    async with httpx.AsyncClient(timeout=10) as http:
        assert (
            await http.put(call[3]["location"] + "d.log", content=b"log" * 20000)
        ).status_code == 201
    listed = await ctl(server, "--json", "diagnostics", "list")
    (entry,) = json.loads(listed.stdout)
    out = tmp_path / "fetched.log"
    fetched = await ctl(server, "diagnostics", "fetch", str(entry["id"]), "-o", str(out))
    assert fetched.returncode == 0, fetched.stderr
    assert out.read_bytes() == b"log" * 20000
    again = await ctl(server, "diagnostics", "fetch", str(entry["id"]), "-o", str(out))
    assert again.returncode == 2
    assert b"exists" in again.stderr
    no_file = await ctl(server, "firmware", "update", "CP-1")
    assert no_file.returncode == 2
    await cp.close()


async def test_http_api_routes(api: tuple[RunningServer, str], tmp_path: Path) -> None:
    server, base = api
    cp = await online(server)
    client = await control(server)
    path, data = image(tmp_path, 3000)
    stored = await add_firmware(client, path)

    async def answered(
        http: httpx.AsyncClient, url: str, body: dict[str, Any], answer: dict[str, Any]
    ) -> tuple[list[Any], httpx.Response]:
        results: list[httpx.Response] = []
        async with trio.open_nursery() as nursery:

            async def post() -> None:
                results.append(await http.post(url, json=body))

            nursery.start_soon(post)
            call = await cp.next_call()
            await cp.answer(call, answer)
        return call, results[0]

    async with api_client(base, OPERATE) as operator:
        refused = await operator.post(
            "/charge_points/CP-1/firmware/update", json={"file": stored["name"]}
        )
        assert refused.status_code == 403
        call, response = await answered(
            operator, "/charge_points/CP-1/diagnostics", {}, {"fileName": "x.log"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["details"] == {"file_name": "x.log"}
        async with httpx.AsyncClient(timeout=10) as charger_http:
            put = await charger_http.put(call[3]["location"], content=b"diag-bytes")
            assert put.status_code == 201
    async with api_client(base, ADMIN) as admin:
        call, response = await answered(
            admin,
            "/charge_points/CP-1/firmware/update",
            {"file": str(stored["id"]), "retrieve_date": "2030-05-01T12:00:00+02:00"},
            {},
        )
        assert response.status_code == 200, response.text
        assert call[3]["retrieveDate"] == "2030-05-01T10:00:00Z"
        async with httpx.AsyncClient(timeout=10) as charger_http:
            assert (await charger_http.get(call[3]["location"])).content == data
        bad = await admin.post("/charge_points/CP-1/firmware/update", json={})
        assert bad.status_code == 422
        (diag,) = (await admin.get("/diagnostics", params={"charge_point_id": "CP-1"})).json()
        content = await admin.get(f"/stored_files/{diag['id']}/content")
        assert content.status_code == 200
        assert content.content == b"diag-bytes"
        assert [f["id"] for f in (await admin.get("/firmware")).json()] == [stored["id"]]
        assert (await admin.get("/stored_files/999/content")).status_code == 404
    async with api_client(base, READ) as reader:
        assert (await reader.get(f"/stored_files/{diag['id']}/content")).status_code == 403
    # File URLs need no bearer token (chargers have none), the API does.
    async with httpx.AsyncClient(base_url=base, timeout=10) as anonymous:
        assert (await anonymous.get("/diagnostics")).status_code == 401
    await client.aclose()
    await cp.close()


async def test_a_full_data_dir_refuses_the_upload_keeps_nothing_and_serves_on(
    database_url: str, tmp_path: Path
) -> None:
    """Disk full (here the data_dir_max_bytes quota, met through the same ENOSPC path as
    a full disk): HTTP 507 with a clear reason, no partial file, the URL not spent, and
    the server goes on serving chargers, uploads and downloads."""
    quota = 40_000
    settings = server_settings(
        database_url,
        tmp_path,
        http_enabled=True,
        http_port=0,
        upload_max_bytes=UPLOAD_LIMIT,
        data_dir_max_bytes=quota,
    )
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        cp = await online(server)
        client = await control(server)
        first, _ = await diagnostics_url(server, client, cp)
        second, _ = await diagnostics_url(server, client, cp)
        async with httpx.AsyncClient(timeout=10) as http:
            ok = await http.put(first + "a.log", content=b"a" * 30_000)
            assert ok.status_code == 201, ok.text
            # Announced too big for the room left: refused before anything is written.
            full = await http.put(second + "b.log", content=b"b" * 20_000)
            assert full.status_code == 507
            assert full.json()["error"] == {
                "code": "disk_full",
                "message": "the server has no room for this file",
            }

            # Streamed without a length: refused once it passes the room, file removed.
            async def chunked() -> AsyncIterator[bytes]:
                for _ in range(20):
                    yield b"c" * 1024

            try:
                streamed = await http.put(second + "c.log", content=chunked())
            except httpx.HTTPError:
                pass  # the server may answer and close before the client finished
            else:
                assert streamed.status_code == 507
            incoming = tmp_path / "data" / "uploads" / "diagnostics" / ".incoming"
            with trio.fail_after(5):
                while list(incoming.glob("*")):  # noqa: ASYNC110 - the handler cleans up
                    await trio.sleep(0.05)
            stored = server.run(files.list_files, "diagnostics")
            assert [(f.name, f.size) for f in stored] == [("a.log", 30_000)]
            kept = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
            assert [p.stat().st_size for p in kept] == [30_000]
            # The server keeps serving: a charger's message, and a small upload that fits
            # on the URL that was refused (it was not spent).
            assert (await cp.call("Heartbeat", {}))["currentTime"]
        async with httpx.AsyncClient(timeout=10) as http:
            small = await http.put(second + "small.log", content=b"s" * 1000)
            assert small.status_code == 201, small.text
        listed = await client.request("diagnostics.list", {"charger_id": "CP-1"})
        assert [f["name"] for f in listed["result"]] == ["small.log", "a.log"]
        await client.aclose()
        await cp.close()
        stop.set()
        server.db.dispose()
