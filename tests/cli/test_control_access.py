"""Shared access to the control socket: the operator group, planted directories, refusals.

The shared-access cases run clients as another Unix user (``nobody``) with setpriv, so
the kernel's permission checks are the real ones.
"""

from __future__ import annotations

import grp
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.cli.test_serve_errors import serve_args, voltaro
from tests.e2e.conftest import server_settings, start_server

NOBODY = 65534
CTL = [sys.executable, "-m", "voltaro", "ctl"]
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)


def test_server_refuses_a_directory_writable_by_others(tmp_path: Path) -> None:
    planted = tmp_path / "voltaro-1000"
    planted.mkdir()
    planted.chmod(0o777)
    result = voltaro(*serve_args(tmp_path, control_socket=str(planted / "control.sock")))
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"voltaro: cannot open the control socket {planted}/control.sock")
    assert "is writable by others (mode 777): refusing it" in line


@needs_root
def test_server_refuses_a_directory_of_another_user(tmp_path: Path) -> None:
    planted = tmp_path / "voltaro-1000"
    planted.mkdir(mode=0o750)
    os.chown(planted, NOBODY, NOBODY)
    result = voltaro(*serve_args(tmp_path, control_socket=str(planted / "control.sock")))
    assert result.returncode == 1, result.stderr
    assert f"belongs to uid {NOBODY}, not to this user: refusing it" in result.stderr


def test_ctl_refuses_a_planted_socket(tmp_path: Path) -> None:
    planted = tmp_path / "voltaro-1000"
    planted.mkdir()
    planted.chmod(0o777)
    path = planted / "control.sock"
    with socket.socket(socket.AF_UNIX) as fake:
        fake.bind(str(path))
        fake.listen()
        fake.setblocking(False)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "voltaro",
                "ctl",
                "--socket",
                str(path),
                "chargers",
                "add",
                "CP-1",
                "--password",
                "a-secret-password",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        with pytest.raises(BlockingIOError):
            fake.accept()  # the fake server never got a connection, so no password
    assert result.returncode == 1
    assert "its directory is writable by others" in result.stderr


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user can traverse (pytest's tmp_path is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="voltaro-shared-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def as_user(uid: int, gid: int, *args: str, socket_path: str) -> subprocess.CompletedProcess[str]:
    groups = "--init-groups" if gid == NOBODY else "--clear-groups"
    setpriv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", groups]
    return subprocess.run(
        [
            *setpriv,
            *CTL,
            "--socket",
            socket_path,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
        env={**os.environ, "HOME": "/"},
    )


@needs_root
async def test_control_group_members_connect_and_refusals_are_logged(
    shared_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = shared_dir / "voltaro" / "control.sock"
    settings = server_settings(
        f"sqlite:///{shared_dir / 'v.db'}",
        shared_dir,
        control_socket=str(path),
        control_group="nogroup",
    )
    nogroup = grp.getgrnam("nogroup").gr_gid
    caplog.set_level(logging.WARNING, logger="voltaro.control.server")
    async with trio.open_nursery() as nursery:
        _, stop = await start_server(nursery, settings)
        try:
            info = path.stat()
            assert (info.st_gid, stat.S_IMODE(info.st_mode)) == (nogroup, 0o660)
            parent = path.parent.stat()
            assert (parent.st_gid, stat.S_IMODE(parent.st_mode)) == (nogroup, 0o750)
            member = await trio.to_thread.run_sync(
                lambda: as_user(NOBODY, NOBODY, "--json", "status", socket_path=str(path))
            )
            assert member.returncode == 0, member.stderr
            # Not in the group: the kernel refuses the directory.
            outsider = await trio.to_thread.run_sync(
                lambda: as_user(NOBODY, 1, "status", socket_path=str(path))
            )
            assert outsider.returncode == 4, outsider.stderr
            assert "permission denied" in outsider.stderr
            # A member is a viewer (no operator/admin group): refused, and logged.
            refused = await trio.to_thread.run_sync(
                lambda: as_user(
                    NOBODY,
                    NOBODY,
                    "chargers",
                    "add",
                    "CP-9",
                    "--password",
                    "pw-pw-pw-pw",
                    socket_path=str(path),
                )
            )
            assert refused.returncode == 4, refused.stderr
        finally:
            stop.set()
    (record,) = [r for r in caplog.records if "control refused" in r.getMessage()]
    message = record.getMessage()
    assert "user=nobody" in message
    assert "op=chargers.add" in message
    assert "pw-pw-pw-pw" not in message


def test_non_root_users_find_the_system_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voltaro import settings

    system = tmp_path / "run-voltaro"
    monkeypatch.setattr(settings, "SYSTEM_CONTROL_DIR", system)
    monkeypatch.setattr(settings.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    assert settings.default_control_socket() == str(tmp_path / "xdg/voltaro/control.sock")
    system.mkdir()  # what the systemd unit's RuntimeDirectory= creates
    assert settings.default_control_socket() == str(system / "control.sock")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    system.rmdir()
    assert settings.default_control_socket() == "/tmp/voltaro-1000/control.sock"
