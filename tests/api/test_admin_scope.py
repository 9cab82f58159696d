"""The routes that need the admin scope refuse an operate token with 403 ``forbidden``
and a message naming what needed it; a read token on an operate route still hears that
it needs the operate scope (the body is checked before the scope, so bodies here are
valid)."""

from __future__ import annotations

from tests.api.conftest import ADMIN, OPERATE, READ, client
from tests.e2e.conftest import RunningServer
from voltaro.store import chargers

FW = "ftp://files.example/fw.bin"
ROUTES = (
    ("post", "/charge_points/CP-1/firmware/update", {"json": {"location": FW}}, "UpdateFirmware"),
    (
        "post",
        "/firmware/campaigns",
        {"json": {"charge_point_ids": ["CP-1"], "location": FW}},
        "a firmware campaign",
    ),
    ("post", "/firmware", {"params": {"name": "fw.bin"}, "content": b"x"}, "adding firmware"),
    ("delete", "/firmware/fw.bin", {}, "removing firmware"),
    (
        "post",
        "/charge_points/CP-1/firmware/signed_update",
        {"json": {"location": FW, "signing_certificate": "PEM", "signature": "c2ln"}},
        "SignedUpdateFirmware",
    ),
    ("get", "/stored_files/1/content", {}, "reading stored files"),
    (
        "post",
        "/charge_points/CP-1/commands/reset",
        {"json": {"type": "Hard"}},
        "reset with these arguments",
    ),
)
READ_ROUTES = ("/firmware", "/firmware/fw.bin", "/stored_files/1/content")


async def test_admin_routes_name_what_needs_the_admin_scope(
    api: tuple[RunningServer, str],
) -> None:
    server, base = api
    server.run(chargers.add_charger, "CP-1")
    async with client(base, OPERATE) as operate, client(base, READ) as read:
        for method, path, kwargs, what in ROUTES:
            refused = await operate.request(method.upper(), path, **kwargs)
            assert refused.status_code == 403, (path, refused.text)
            assert refused.json() == {
                "error": {"code": "forbidden", "message": f"{what} needs the admin scope"}
            }, path
            by_reader = await read.request(method.upper(), path, **kwargs)
            assert by_reader.status_code == 403, (path, by_reader.text)
            expected = (
                f"{what} needs the admin scope"
                if path in READ_ROUTES
                else "this needs a token with the operate scope"
            )
            assert by_reader.json()["error"]["message"] == expected, path
    async with client(base, ADMIN) as admin:
        for method, path, kwargs, _ in ROUTES:
            passed = await admin.request(method.upper(), path, **kwargs)
            assert passed.status_code != 403, (path, passed.text)
