"""Password provisioning (issue 15; OCTT TC_073_CSMS) and the security profile surface of
`voltaro ctl` and the HTTP API.

`chargers set-password` sends ChangeConfiguration AuthorizationKey; the new password is
valid from the moment it is sent, the old one until the charger logs in with the new
one, so a lost answer never locks the charger out. Reproduced before: the old hash was
kept after Accepted, the charger reconnecting with its new key got 401.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest
import trio

from tests.e2e.conftest import RunningServer
from tests.support.charger import HandshakeRefused, RawCharger
from voltaro.domain.credentials import password_bytes
from voltaro.store import chargers

OLD = "00112233445566778899aabbccddeeff00112233"


async def ctl(server: RunningServer, *args: str, stdin: bytes | None = None) -> Any:
    env = {**os.environ, "VOLTARO_CONTROL_SOCKET": server.addresses.control_socket or ""}
    return await trio.run_process(
        [sys.executable, "-m", "voltaro", "ctl", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=env,
        stdin=stdin,
    )


async def login(server: RunningServer, charger_id: str, hex_password: str) -> RawCharger:
    cp = await RawCharger.connect(
        f"{server.url}/{charger_id}", password=bytes.fromhex(hex_password)
    )
    assert (await cp.boot())["status"] == "Accepted"
    return cp


async def refused(server: RunningServer, charger_id: str, hex_password: str) -> int:
    with pytest.raises(HandshakeRefused) as info:
        await RawCharger.connect(f"{server.url}/{charger_id}", password=bytes.fromhex(hex_password))
    return info.value.status


async def set_password(
    server: RunningServer, cp: RawCharger, answer: dict[str, Any] | None
) -> tuple[Any, str]:
    """Run `ctl chargers set-password --generate`; the charger reads the new key from the
    ChangeConfiguration it receives and answers ``answer`` (None: the answer is lost)."""
    results: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            results.append(
                await ctl(server, "--json", "chargers", "set-password", "CP-R", "--generate")
            )

        nursery.start_soon(run)
        call = await cp.next_call()
        assert call[2] == "ChangeConfiguration"
        assert call[3]["key"] == "AuthorizationKey"
        new = call[3]["value"]
        if answer is not None:
            await cp.answer(call, answer)
    return results[0], new


async def test_rotation_accepted_old_valid_until_the_new_one_is_used(
    server: RunningServer,
) -> None:
    server.run(chargers.add_charger, "CP-R", password=password_bytes(OLD))
    cp = await login(server, "CP-R", OLD)
    done, new = await set_password(server, cp, {"status": "Accepted"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "Accepted"
    assert len(new) == 40
    assert new not in done.stdout.decode()  # the generated password is never printed
    assert server.run(chargers.get_charger, "CP-R").password_pending
    await cp.close()
    # Until the charger has used the new password, the old one still works ...
    again = await login(server, "CP-R", OLD)
    await again.close()
    # ... and the new one too; once used, it is the only one.
    fresh = await login(server, "CP-R", new)
    assert not server.run(chargers.get_charger, "CP-R").password_pending
    await fresh.close()
    assert await refused(server, "CP-R", OLD) == 401
    final = await login(server, "CP-R", new)
    await final.close()


async def test_first_answer_lost_does_not_lock_the_charger_out(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-R", password=password_bytes(OLD))
    cp = await login(server, "CP-R", OLD)
    # The charger takes the key but its answer never arrives (call_timeout 2 s).
    done, new = await set_password(server, cp, None)
    assert done.returncode == 7, done.stderr  # timeout
    assert new.encode() not in done.stdout + done.stderr
    await cp.close()
    # It reconnects with the key it took: accepted, not locked out.
    back = await login(server, "CP-R", new)
    # The operator retries; this time the answer arrives.
    retry_results: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            retry_results.append(
                await ctl(server, "--json", "chargers", "set-password", "CP-R", "--generate")
            )

        nursery.start_soon(run)
        call = await back.next_call()
        newest = call[3]["value"]
        await back.answer(call, {"status": "Accepted"})
    assert retry_results[0].returncode == 0
    await back.close()
    assert await refused(server, "CP-R", OLD) == 401
    last = await login(server, "CP-R", newest)
    await last.close()


async def test_rejected_key_is_forgotten(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-R", password=password_bytes(OLD))
    cp = await login(server, "CP-R", OLD)
    done, new = await set_password(server, cp, {"status": "Rejected"})
    assert done.returncode == 0
    assert json.loads(done.stdout)["status"] == "Rejected"
    assert not server.run(chargers.get_charger, "CP-R").password_pending
    await cp.close()
    assert await refused(server, "CP-R", new) == 401
    again = await login(server, "CP-R", OLD)
    await again.close()


async def test_set_config_authorization_key_takes_the_same_path(server: RunningServer) -> None:
    """The reproduced lock-out: `set-config ... AuthorizationKey` accepted, then the
    charger reconnecting with its new key got 401."""
    server.run(chargers.add_charger, "CP-R", password=password_bytes(OLD))
    cp = await login(server, "CP-R", OLD)
    new = "ffeeddccbbaa99887766554433221100ffeeddcc"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ctl, server, "set-config", "CP-R", "AuthorizationKey", new)
        call = await cp.next_call()
        await cp.answer(call, {"status": "Accepted"})
    await cp.close()
    back = await login(server, "CP-R", new)
    await back.close()
    short = await ctl(server, "set-config", "CP-R", "AuthorizationKey", "abcd")
    assert short.returncode == 2
    assert b"16-20 bytes" in short.stderr


async def test_profiles_through_ctl(server: RunningServer) -> None:
    added = await ctl(
        server, "--json", "chargers", "add", "CP-P", "--password", OLD, "--profile", "1"
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["security_profile"] == 1
    no_password = await ctl(server, "chargers", "add", "CP-Q", "--profile", "2")
    assert no_password.returncode == 2
    assert b"needs a password" in no_password.stderr
    # Without wss:// configured, profiles 2 and 3 cannot be set.
    two = await ctl(server, "chargers", "set-profile", "CP-P", "2")
    assert two.returncode == 2
    assert b"tls_port" in two.stderr
    zero = await ctl(server, "--json", "chargers", "set-profile", "CP-P", "0")
    assert json.loads(zero.stdout)["security_profile"] == 0
    listed = await ctl(server, "chargers", "list")
    assert b"PROFILE" in listed.stdout.splitlines()[0]
    shown = json.loads((await ctl(server, "--json", "chargers", "show", "CP-P")).stdout)
    assert shown["security_profile"] == 0
    events = json.loads((await ctl(server, "--json", "security", "events")).stdout)
    assert set(events["counts"]) >= {"downgrade", "certificate_cn_mismatch", "takeover"}


async def test_onboarding_a_charger_without_a_password(server: RunningServer) -> None:
    """OCPP 1.6 J §6.2.2 onboarding: a charger at profile 0 is sent a password; once it
    logs in with it, it is a profile 1 charger and must keep sending it."""
    server.run(chargers.add_charger, "CP-R")
    cp = await RawCharger.connect(f"{server.url}/CP-R")
    await cp.boot()
    done, new = await set_password(server, cp, {"status": "Accepted"})
    assert done.returncode == 0, done.stderr
    await cp.close()
    bare = await RawCharger.connect(f"{server.url}/CP-R")  # not switched over yet: admitted
    await bare.close()
    switched = await login(server, "CP-R", new)
    await switched.close()
    charger = server.run(chargers.get_charger, "CP-R")
    assert charger.security_profile == 1
    assert not charger.password_pending
    with pytest.raises(HandshakeRefused) as info:
        await RawCharger.connect(f"{server.url}/CP-R")
    assert info.value.status == 401
