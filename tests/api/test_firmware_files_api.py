"""Firmware images over the HTTP API and their clean-up (issue 16): an admin uploads one
(streamed to disk past the API's 1 MiB body cap, its size limit, its SHA-256 checked),
chargers download it as they do an image added with ctl; removing one is refused while
a campaign or a pending UpdateFirmware still uses it; uploads older than
upload_retention_days are deleted. With an HTTP client, ctl and independent chargers."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from sqlalchemy import update

from tests.api.conftest import ADMIN, OPERATE, client, running_api
from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.e2e.test_control import online
from tests.e2e.test_ctl import ctl
from tests.e2e.test_file_transfers import control, diagnostics_url
from voltaro.domain.timestamps import utc_now
from voltaro.service.files import FileTransfers
from voltaro.service.upload_retention import UploadRetention
from voltaro.settings import ApiScope, ApiToken
from voltaro.store import files, firmware
from voltaro.store.schema import StoredFileRow

LIMIT = 3 * 1024 * 1024  # firmware_max_bytes here: three times the API's body cap


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[RunningServer, str]]:
    async with running_api(
        database_url, tmp_path, campaign_poll=0.05, firmware_max_bytes=LIMIT
    ) as running:
        yield running


def raw_post(host: str, port: int, headers: str, chunks: list[bytes]) -> bytes:
    """POST /firmware?name=big.bin over a plain socket, as admin, then the answer: a
    test client may not see an answer sent before it finished sending, a socket does."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            f"POST /firmware?name=big.bin HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {ADMIN}\r\n{headers}\r\n".encode()
        )
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed before the end
        answer = b""
        try:
            while b"}}" not in answer:  # the whole JSON error body
                piece = sock.recv(65536)
                if not piece:
                    break
                answer += piece
        except OSError:
            pass
        return answer


def image(size: int) -> bytes:
    seed = hashlib.sha256(b"image").digest()
    return (seed * (size // 32 + 1))[:size]


def on_disk(server: RunningServer) -> list[str]:
    """Every file under the data directory's firmware/, the .incoming/ part included."""
    root = Path(server.settings.data_dir) / "firmware"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_upload_streams_to_disk_and_is_served_like_ctl_add(
    api: tuple[RunningServer, str],
) -> None:
    server, base = api
    data = image(2 * 1024 * 1024 + 7)  # over the 1 MiB cap on other request bodies
    digest = hashlib.sha256(data).hexdigest()
    async with client(base, OPERATE) as ops:
        refused = await ops.post("/firmware", params={"name": "fw-4.bin"}, content=data[:100])
        assert refused.status_code == 403
    assert server.run(files.list_files, "firmware") == []
    async with client(base, ADMIN) as admin:
        added = await admin.post(
            "/firmware", params={"name": "fw 4.bin", "sha256": digest}, content=data
        )
        assert added.status_code == 201, added.text
        body = added.json()
        assert (body["name"], body["size"], body["sha256"]) == ("fw_4.bin", len(data), digest)
        assert body["created_by"] == "api:root"
        listed = await admin.get("/firmware")
        assert [f["name"] for f in listed.json()] == ["fw_4.bin"]
        # Chargers get it as they get an image added with ctl: UpdateFirmware with a URL
        # of their own, the bytes identical.
        cp = await online(server, "CP-1")
        async with trio.open_nursery() as nursery:
            answer: list[Any] = []

            async def send() -> None:
                answer.append(
                    await admin.post(
                        "/charge_points/CP-1/firmware/update", json={"file": "fw_4.bin"}
                    )
                )

            nursery.start_soon(send)
            call = await cp.next_call()
            await cp.answer(call, {})
        assert answer[0].status_code == 200, answer[0].text
        async with httpx.AsyncClient(timeout=10) as anyone:
            fetched = await anyone.get(call[3]["location"])
        assert fetched.status_code == 200
        assert fetched.content == data
    assert len(on_disk(server)) == 1  # the image; nothing left in .incoming/
    await cp.close()


async def test_upload_refusals_keep_nothing(api: tuple[RunningServer, str]) -> None:
    server, base = api
    host, port = urlsplit(base).hostname, urlsplit(base).port

    assert host is not None
    assert port is not None
    # Over firmware_max_bytes by Content-Length: answered before a byte is sent.
    answer = await trio.to_thread.run_sync(
        raw_post, host, port, f"Content-Length: {LIMIT + 1}\r\n", []
    )
    assert answer.startswith(b"HTTP/1.1 413")
    assert str(LIMIT).encode() in answer
    # No Content-Length (chunked): refused while streaming, once past the limit.
    piece = b"z" * 65536
    chunked = [b"10000\r\n" + piece + b"\r\n"] * (LIMIT // 65536 + 2) + [b"0\r\n\r\n"]
    answer = await trio.to_thread.run_sync(
        raw_post, host, port, "Transfer-Encoding: chunked\r\n", chunked
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    async with client(base, ADMIN) as admin:
        wrong = await admin.post(
            "/firmware", params={"name": "a.bin", "sha256": "0" * 64}, content=b"abc"
        )
        assert wrong.status_code == 409
        assert hashlib.sha256(b"abc").hexdigest() in wrong.json()["error"]["message"]
        empty = await admin.post("/firmware", params={"name": "a.bin"}, content=b"")
        assert empty.status_code == 422
        nameless = await admin.post("/firmware", content=b"abc")
        assert nameless.status_code == 422
    assert server.run(files.list_files, "firmware") == []
    assert on_disk(server) == []


async def test_remove_refused_while_used_then_done(
    api: tuple[RunningServer, str], tmp_path: Path
) -> None:
    server, base = api
    cp = await online(server, "CP-1")
    async with client(base, ADMIN) as admin:
        added = await admin.post("/firmware", params={"name": "fw-5.bin"}, content=image(5000))
        assert added.status_code == 201
        # A campaign that has not started yet uses it.
        campaign = await admin.post(
            "/firmware/campaigns",
            json={
                "charge_point_ids": ["CP-1"],
                "file": "fw-5.bin",
                "retrieve_date": "2099-01-01T00:00:00Z",
            },
        )
        assert campaign.status_code == 201
        campaign_id = campaign.json()["id"]
        used = await admin.delete("/firmware/fw-5.bin")
        assert used.status_code == 409
        assert f"campaign {campaign_id}" in used.json()["error"]["message"]
        forced = await admin.delete("/firmware/fw-5.bin", params={"force": "true"})
        assert forced.status_code == 409  # force never overrides a running campaign
        cancelled = await admin.post(f"/firmware/campaigns/{campaign_id}/cancel")
        assert cancelled.status_code == 200
        with trio.fail_after(10):
            # The runner finishes it in its next round (another task, polled).
            while server.run(firmware.get_campaign, campaign_id).finished_at is None:  # noqa: ASYNC110
                await trio.sleep(0.05)
        # A charger was sent UpdateFirmware and has not downloaded it yet: pending.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: admin.post("/charge_points/CP-1/firmware/update", json={"file": "1"})
            )
            call = await cp.next_call()
            await cp.answer(call, {})
        pending = await admin.delete("/firmware/1")
        assert pending.status_code == 409
        assert "pending UpdateFirmware on CP-1" in pending.json()["error"]["message"]
        async with client(base, OPERATE) as ops:
            assert (await ops.delete("/firmware/1", params={"force": "true"})).status_code == 403
        removed = await admin.delete("/firmware/1", params={"force": "true"})
        assert removed.status_code == 200, removed.text
        assert removed.json()["name"] == "fw-5.bin"
        assert (await admin.get("/firmware")).json() == []
        assert (await admin.delete("/firmware/1")).status_code == 404
    assert on_disk(server) == []
    async with httpx.AsyncClient(timeout=10) as anyone:
        gone = await anyone.get(call[3]["location"])
    assert gone.status_code == 404  # the charger's URL leads nowhere now
    # The same with ctl: an image nothing uses goes at once; an unknown one is said.
    path = tmp_path / "fw-6.bin"
    path.write_bytes(image(100))
    assert (await ctl(server, "firmware", "add", str(path))).returncode == 0
    async with httpx.AsyncClient(timeout=10) as anyone:
        # SQLite may give the new image the removed one's id: the old URL still leads
        # nowhere (its token went with the image), never to a different image.
        assert (await anyone.get(call[3]["location"])).status_code == 404
    done = await ctl(server, "firmware", "remove", "fw-6.bin")
    assert done.returncode == 0, done.stderr
    assert b"fw-6.bin removed" in done.stdout
    unknown = await ctl(server, "firmware", "remove", "fw-6.bin")
    assert unknown.returncode != 0
    assert b"no firmware 'fw-6.bin'" in unknown.stderr
    assert on_disk(server) == []
    await cp.close()


async def test_old_uploads_are_deleted_firmware_and_recent_ones_kept(
    api: tuple[RunningServer, str],
) -> None:
    server, base = api
    cp = await online(server, "CP-1")
    ctl_client = await control(server)
    uploaded = []
    for n in range(3):
        location, _ = await diagnostics_url(server, ctl_client, cp)
        async with httpx.AsyncClient(timeout=10) as http:
            put = await http.put(location + f"diag-{n}.tgz", content=b"d" * 100)
            assert put.status_code == 201
            uploaded.append(put.json()["id"])
    async with client(base, ADMIN) as admin:
        fw = await admin.post("/firmware", params={"name": "old-fw.bin"}, content=b"fw")
        assert fw.status_code == 201
    # Two diagnostics files and the firmware image are 100 days old, one is new.
    old_ids = [*uploaded[:2], fw.json()["id"]]
    long_ago = utc_now() - timedelta(days=100)
    server.run(
        lambda s: s.execute(
            update(StoredFileRow).where(StoredFileRow.id.in_(old_ids)).values(created_at=long_ago)
        )
    )
    transfers = FileTransfers(server.db, server.settings)
    paths = {
        f.id: transfers.path_of(f) for f in server.run(files.list_files, "diagnostics", limit=10)
    }
    assert all(p.exists() for p in paths.values())
    # A file whose bytes cannot be deleted keeps its row for the next sweep.
    stuck = paths[uploaded[1]]
    os.chmod(stuck.parent, 0o500)
    try:
        retention = UploadRetention(server.db, transfers, days=90, batch=1)
        first = await retention.sweep()
    finally:
        os.chmod(stuck.parent, 0o700)
    if os.geteuid() != 0:  # root deletes in a read-only directory all the same
        assert first == 1
        assert stuck.exists()
    second = await retention.sweep()
    assert first + second == 2
    left = {f.id for f in server.run(files.list_files, "diagnostics", limit=10)}
    assert left == {uploaded[2]}
    assert not paths[uploaded[0]].exists()
    assert not paths[uploaded[1]].exists()
    assert paths[uploaded[2]].exists()
    assert [f.name for f in server.run(files.list_files, "firmware")] == ["old-fw.bin"]
    assert await retention.sweep() == 0
    await ctl_client.aclose()
    await cp.close()


async def test_upload_over_the_data_dir_quota_is_507_and_keeps_nothing(
    database_url: str, tmp_path: Path
) -> None:
    settings = server_settings(
        database_url,
        tmp_path,
        http_enabled=True,
        http_port=0,
        firmware_max_bytes=LIMIT,
        data_dir_max_bytes=1024 * 1024,
        api_tokens=(ApiToken(token=ADMIN, scope=ApiScope.ADMIN, name="root"),),
    )
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        assert server.addresses.http is not None
        host, port = server.addresses.http
        try:
            answer = await trio.to_thread.run_sync(
                raw_post,
                host,
                port,
                f"Content-Length: {2 * 1024 * 1024}\r\n",
                [b"q" * 65536] * 32,
            )
            assert answer.startswith(b"HTTP/1.1 507"), answer[:200]
            assert b"disk_full" in answer
            async with client(f"http://{host}:{port}", ADMIN) as admin:
                small = await admin.post("/firmware", params={"name": "s.bin"}, content=b"s" * 10)
                assert small.status_code == 201  # the server goes on serving
            assert [f.name for f in server.run(files.list_files, "firmware")] == ["s.bin"]
            assert len(on_disk(server)) == 1
        finally:
            stop.set()
            server.db.dispose()
