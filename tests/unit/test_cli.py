"""The `voltaro` command line: help, settings errors, delegated subcommands."""

from __future__ import annotations

import subprocess
import sys

import pytest

from voltaro import cli


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voltaro", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_python_dash_m_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("serve", "db", "ctl", "console"):
        assert command in result.stdout


def test_serve_help_lists_every_flag() -> None:
    result = run("serve", "--help")
    assert result.returncode == 0
    for flag in (
        "--config",
        "--host",
        "--port",
        "--database-url",
        "--control-socket",
        "--http-host",
        "--http-port",
        "--log-level",
        "--cluster",
        "--node-id",
        "--node-lease-seconds",
        "--node-address",
    ):
        assert flag in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "setting"),
    [
        (("--port", "99999"), {}, "setting port"),
        (("--port", "nine"), {}, "setting port"),
        (("--log-level", "LOUD"), {}, "setting log_level"),
        ((), {"VOLTARO_PING_INTERVAL": "often"}, "setting ping_interval"),
        ((), {"VOLTARO_UNKNOWN_CHARGERS": "maybe"}, "setting unknown_chargers"),
        (("--config", "/nonexistent/voltaro.toml"), {}, "setting config"),
    ],
)
def test_bad_settings_print_one_line_and_exit_2(
    args: tuple[str, ...], env: dict[str, str], setting: str
) -> None:
    import os

    result = run("serve", *args, env={**os.environ, **env})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert setting in lines[0]


def test_bad_toml_value_names_the_setting(tmp_path: object) -> None:
    from pathlib import Path

    config = Path(str(tmp_path)) / "voltaro.toml"
    config.write_text("[voltaro]\nmax_connections = 0\n")
    result = run("serve", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"voltaro: setting max_connections: must be at least 1 (from {config})"
    ]


def test_delegated_subcommand_missing_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli._DELEGATED, "ctl", ("voltaro.no_such_module", "main", "x"))
    assert cli.main(["ctl", "status"]) == cli.EXIT_UNAVAILABLE
    assert "not available" in capsys.readouterr().err


def test_delegated_subcommand_gets_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(argv)
        return 3

    import types

    module = types.ModuleType("fake_console_entry")
    module.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_console_entry", module)
    monkeypatch.setitem(cli._DELEGATED, "console", ("fake_console_entry", "main", "x"))
    assert cli.main(["console", "--socket", "/tmp/x.sock", "--help"]) == 3
    assert seen == [["--socket", "/tmp/x.sock", "--help"]]
