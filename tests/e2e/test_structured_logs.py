"""Structured logs of a real run (issue 19): ``voltaro serve`` as a process, its stderr
captured while a charger (raw frames over `websockets`) connects, sends messages and
goes. Every line parses as JSON (``--log-format json``) or logfmt (``VOLTARO_LOG_FORMAT
=kv``), and the lines of a charger's work carry its charger id, and inside the answer
to a message that message's id and action."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.charger import RawCharger

# logfmt as Prometheus, Loki and Heroku read it: key=bare or key="quoted \" escapes".
_PAIR = r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^\s"=\\]*)'
_LINE = re.compile(rf"{_PAIR}(?: {_PAIR})*")


def parse_kv(line: str) -> dict[str, str]:
    assert _LINE.fullmatch(line), f"not logfmt: {line!r}"
    out = {}
    for key, raw in re.findall(_PAIR, line):
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        out[key] = raw
    return out


def parse_json(line: str) -> dict[str, Any]:
    entry = json.loads(line)
    assert isinstance(entry, dict), line
    entry["msg"] = entry.pop("message")
    return entry


async def run_server_and_charger(tmp_path: Path, log_format: str) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "voltaro",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--database-url",
        f"sqlite:///{tmp_path / 'voltaro.db'}",
        "--control-socket",
        str(tmp_path / "ctl.sock"),
    ]
    env = {
        **os.environ,
        "VOLTARO_HTTP_ENABLED": "false",
        "VOLTARO_UNKNOWN_CHARGERS": "accept",
        "VOLTARO_DATA_DIR": str(tmp_path / "data"),
    }
    if log_format == "json":
        args += ["--log-format", "json"]  # the serve flag
    else:
        env["VOLTARO_LOG_FORMAT"] = log_format  # the environment variable
    process = await trio.lowlevel.open_process(args, stderr=subprocess.PIPE, env=env)
    assert process.stderr is not None
    captured = bytearray()

    async def read_until(pattern: bytes) -> re.Match[bytes]:
        with trio.fail_after(60):  # a loaded machine takes seconds to start Python
            while (found := re.search(pattern, captured)) is None:
                chunk = await process.stderr.receive_some()  # type: ignore[union-attr]
                assert chunk, f"server exited: {captured.decode()}"
                captured.extend(chunk)
        return found

    try:
        port = int(
            (await read_until(rb"listening for OCPP 1\.6J chargers on ws://[\d.]+:(\d+)/"))[1]
        )
        cp = await RawCharger.connect(f"ws://127.0.0.1:{port}/ocpp/CP-LOG")
        assert (await cp.boot())["status"] == "Accepted"  # m-1
        transfer = await cp.call("DataTransfer", {"vendorId": "com.example", "messageId": "x"})
        assert transfer["status"] == "UnknownVendorId"  # m-2, logged at INFO
        assert (await cp.call("NoSuchAction", {}))[2] == "NotImplemented"  # m-3, a WARNING
        await cp.send_raw("[2, not json")  # no message id can be read: the line has none
        assert (await cp.recv())[2] == "FormationViolation"
        await cp.close()
        await read_until(rb"disconnected")
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            while chunk := await process.stderr.receive_some():
                captured.extend(chunk)
            await process.wait()
    assert process.returncode == 0, captured.decode()
    return captured.decode().splitlines()


@pytest.mark.parametrize("log_format", ["json", "kv"])
async def test_every_line_parses_and_names_the_charger_and_message(
    tmp_path: Path, log_format: str
) -> None:
    lines = await run_server_and_charger(tmp_path, log_format)
    parse = parse_json if log_format == "json" else parse_kv
    entries = [parse(line) for line in lines]
    assert len(entries) >= 6
    for entry in entries:
        assert {"time", "level", "logger", "msg"} <= entry.keys(), entry
        assert entry["time"].endswith("Z")

    def the(fragment: str) -> dict[str, Any]:
        (entry,) = [e for e in entries if fragment in e["msg"]]
        return entry

    transfer = the("DataTransfer vendor=com.example")
    assert (transfer["charger_id"], transfer["message_id"], transfer["action"]) == (
        "CP-LOG",
        "m-2",
        "DataTransfer",
    )
    error = the("CALLERROR sent: message=m-3")
    assert (error["charger_id"], error["message_id"], error["action"]) == (
        "CP-LOG",
        "m-3",
        "NoSuchAction",
    )
    unreadable = the("code=FormationViolation")
    assert unreadable["charger_id"] == "CP-LOG"
    assert "message_id" not in unreadable  # not the previous frame's
    connected = the("'CP-LOG' connected from")
    assert connected["charger_id"] == "CP-LOG"
    # A first contact is one INFO line too (issue 14 step 4), naming the registration.
    assert connected["msg"].endswith("(first contact: registered as Accepted)"), connected
    assert connected["level"] == "INFO"
    assert not [e for e in entries if "registered unknown" in e["msg"]]
    gone = the("'CP-LOG' disconnected")
    assert gone["charger_id"] == "CP-LOG"
    assert "message_id" not in gone  # the connection's end concerns no message
    # Every line about this charger carries its id; lines of no charger's work carry none.
    for entry in entries:
        if "CP-LOG" in entry["msg"]:
            assert entry.get("charger_id") == "CP-LOG", entry
    started = the("listening for OCPP 1.6J chargers")
    assert "charger_id" not in started
    assert "message_id" not in started
