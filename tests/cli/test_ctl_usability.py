"""`voltaro ctl` as a user meets it (issue 13, ctl): a subprocess against a real server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.test_ctl import ctl
from tests.support.charger import RawCharger
from voltaro.control.ctl import HELP
from voltaro.store import chargers, tags


def test_help_lists_every_command_and_action() -> None:
    top = subprocess.run(
        [sys.executable, "-m", "voltaro", "ctl", "--help"], capture_output=True, text=True
    )
    assert top.returncode == 0
    for name, text in HELP.items():
        assert name in top.stdout, name
        if " " in name:
            group, action = name.split(" ")
            sub = subprocess.run(
                [sys.executable, "-m", "voltaro", "ctl", group, "--help"],
                capture_output=True,
                text=True,
            )
            assert action in sub.stdout
            assert text.split(" (")[0][:40] in " ".join(sub.stdout.split())
    assert "examples:" in top.stdout
    assert "exit status:" in top.stdout


def test_help_lists_each_action_on_its_own_line() -> None:
    """Each action and its help text stand apart (a name as wide as the column once ran
    into its text: `circuits external-loadshow ...`)."""
    top = subprocess.run(
        [sys.executable, "-m", "voltaro", "ctl", "--help"], capture_output=True, text=True
    )
    lines = top.stdout.splitlines()
    for name, text in HELP.items():
        if " " not in name:
            continue
        pattern = re.compile(rf"^  {re.escape(name)}\s+{re.escape(text.split()[0])}")
        assert any(pattern.match(line) for line in lines), name


async def test_json_anywhere_and_json_errors(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    after = await ctl(server, "chargers", "list", "--json")
    assert after.returncode == 0, after.stderr
    assert [c["charger_id"] for c in json.loads(after.stdout)] == ["CP-1"]
    missing = await ctl(server, "chargers", "show", "NOPE", "--json")
    assert missing.returncode == 5
    assert missing.stdout == b""
    error = json.loads(missing.stderr)["error"]
    assert error["code"] == "not_found"
    assert "NOPE" in error["message"]
    refused = await ctl(server, "--json", "chargers", "add", "CP-2", "--password", "ab")
    assert refused.returncode == 2
    assert json.loads(refused.stderr)["error"]["code"] == "bad_arguments"


async def test_choices_in_any_case(server: RunningServer) -> None:
    blocked = await ctl(server, "tags", "add", "T1", "--status", "blocked")
    assert blocked.returncode == 0, blocked.stderr
    assert server.run(tags.get_tag, "T1").status.value == "Blocked"
    # Parsed (any case), then refused because the charger is unknown: exit 5, not 2.
    assert (await ctl(server, "availability", "NOPE", "1", "Operative")).returncode == 5
    assert (await ctl(server, "availability", "NOPE", "1", "INOPERATIVE")).returncode == 5
    bad = await ctl(server, "availability", "NOPE", "1", "sideways")
    assert bad.returncode == 2
    assert b"not one of operative, inoperative" in bad.stderr


async def test_weak_password_refused_and_expired_tag_warned(server: RunningServer) -> None:
    weak = await ctl(server, "chargers", "add", "CP-1", "--password", "ab")
    assert weak.returncode == 2
    assert b"a password of 2 characters is too easy to guess" in weak.stderr
    assert server.run(chargers.get_charger, "CP-1") is None
    expired = await ctl(server, "tags", "add", "OLD", "--expiry", "2020-01-01T00:00:00Z")
    assert expired.returncode == 0
    assert b"warning: tag OLD is already expired" in expired.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_closed_pipe_ends_quietly(database_url: str, server: RunningServer) -> None:
    for n in range(1500):  # more output than a pipe holds, so the writer meets EPIPE
        server.run(tags.add_tag, f"TAG{n:05d}")
    socket_path = server.addresses.control_socket or ""
    script = (
        f"{sys.executable} -m voltaro ctl --socket {socket_path} tags list | head -1 >/dev/null;"
        " echo ${PIPESTATUS[0]}"
    )
    done = await trio.run_process(
        ["bash", "-c", script], capture_stdout=True, capture_stderr=True, check=False
    )
    assert done.stdout.strip() == b"0"
    assert done.stderr == b""


async def test_frames_and_session_table(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "T1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot()
    await cp.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "T1", "meterStart": 1000, "timestamp": "2025-01-01T10:00:00Z"},
    )
    # The frame log is written in batches (about once a second, after billing writes):
    # ask until the boot's frames are there, within a bound.
    actions: set[str] = set()
    with trio.move_on_after(15):
        while not actions:
            frames = await ctl(
                server, "--json", "chargers", "frames", "CP-1", "--action", "BootNotification"
            )
            assert frames.returncode == 0, frames.stderr
            actions = {f["action"] for f in json.loads(frames.stdout)}
            if not actions:
                await trio.sleep(0.2)
    assert actions == {"BootNotification"}
    listed = await ctl(server, "transactions", "list")
    header, row = listed.stdout.decode().splitlines()[:2]
    assert header.split() == [
        "TX",
        "CHARGER",
        "CONN",
        "TAG",
        "STATE",
        "START",
        "DURATION",
        "ENERGY",
        "REASON",
    ]
    assert row.split()[-1] == "-"  # no stop reason yet
    await cp.close()


async def test_unknown_charger_filter_is_an_error(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    typo = await ctl(server, "transactions", "list", "--charger", "NOPE")
    assert typo.returncode == 5
    assert b"NOPE" in typo.stderr
    known = await ctl(server, "transactions", "list", "--charger", "CP-1")
    assert known.returncode == 0, known.stderr


async def test_bash_completion_offers_commands_ids_and_tags(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-ALPHA")
    server.run(tags.add_tag, "04A1B2C3")
    script = (await ctl(server, "completion", "bash")).stdout.decode()
    voltaro_bin = Path(sys.executable).parent / "voltaro"

    async def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        probe = (
            f'voltaro() {{ "{voltaro_bin}" "$@"; }}\n{script}\n'
            f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _voltaro; "
            'printf "%s\\n" "${COMPREPLY[@]}"'
        )
        done = await trio.run_process(
            ["bash", "-c", probe],
            capture_stdout=True,
            check=True,
            env={**os.environ, "VOLTARO_CONTROL_SOCKET": server.addresses.control_socket or ""},
        )
        return done.stdout.decode().split()

    assert await complete("voltaro", "c") == ["ctl", "console"]
    assert "remote-start" in await complete("voltaro", "ctl", "re")
    assert await complete("voltaro", "ctl", "chargers", "f") == ["frames"]
    assert await complete("voltaro", "ctl", "reset", "CP") == ["CP-ALPHA"]
    assert await complete("voltaro", "ctl", "remote-start", "CP-ALPHA", "04") == ["04A1B2C3"]
    assert await complete("voltaro", "ctl", "tags", "block", "") == ["04A1B2C3"]
    zsh = (await ctl(server, "completion", "zsh")).stdout.decode()
    assert zsh.startswith("# voltaro shell completion")
    assert "bashcompinit" in zsh


async def test_tags_set_unblocks_and_edits(server: RunningServer) -> None:
    server.run(tags.add_tag, "PARENT")
    assert (await ctl(server, "tags", "add", "T1", "--status", "Blocked")).returncode == 0
    unblocked = await ctl(
        server, "--json", "tags", "set", "T1", "--status", "accepted", "--parent", "PARENT"
    )
    assert unblocked.returncode == 0, unblocked.stderr
    assert json.loads(unblocked.stdout)["status"] == "Accepted"
    tag = server.run(tags.get_tag, "T1")
    assert (tag.status.value, tag.parent_id_tag) == ("Accepted", "PARENT")
    cleared = await ctl(server, "tags", "set", "T1", "--parent", "")
    assert cleared.returncode == 0, cleared.stderr
    assert server.run(tags.get_tag, "T1").parent_id_tag is None
    assert (await ctl(server, "tags", "set", "NOPE", "--status", "Blocked")).returncode == 5
    assert (await ctl(server, "tags", "set", "T1")).returncode == 2
