"""`voltaro ctl`: scriptable operations over the control socket.

Human-readable output by default, one JSON document with --json. Exit codes:
0 done (a charger answering Rejected is a carried-out request), 1 other error,
2 bad arguments, 3 server not running, 4 role refused, 5 unknown charger/tag/transaction,
6 charger offline or not allowed in its state, 7 timeout, 8 the charger answered with a
CALLERROR, 9 already exists, 10 the charger was busy with earlier commands (nothing sent),
11 the database is unavailable (nothing done; retry).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from voltaro.control import wire
from voltaro.settings import default_control_socket

EXIT = {
    "bad_request": 2,
    "bad_arguments": 2,
    "forbidden": 4,
    "not_found": 5,
    "unknown_charger": 5,
    "offline": 6,
    "not_allowed": 6,
    "disconnected": 6,
    "timeout": 7,
    "call_error": 8,
    "conflict": 9,
    "busy": 10,
    "unavailable": 11,
}
EXIT_NO_SERVER = 3


class CtlError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_socket_directory(path: str) -> None:
    """Refuse a socket whose directory someone else could have planted (issue 13, 5.6).

    A directory writable by others lets anyone swap in a socket of their own and read
    what we send (``chargers add --password``); the per-user fallback /tmp/voltaro-UID
    must moreover be our own.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        info = os.stat(directory)
    except OSError:
        return  # no directory: connecting fails with "server not running"
    if info.st_mode & 0o022:
        raise CtlError(
            1,
            f"refusing {path}: its directory is writable by others (mode "
            f"{info.st_mode & 0o7777:o}); someone may have replaced the socket",
        )
    fallback = f"/tmp/voltaro-{os.geteuid()}"
    if directory == fallback and info.st_uid != os.geteuid():
        raise CtlError(
            1,
            f"refusing {path}: {fallback} belongs to uid {info.st_uid}, not to you; "
            "someone may have replaced the socket",
        )


class Client:
    """A blocking JSON-lines client (no trio needed for a one-shot CLI)."""

    def __init__(self, path: str, timeout: float | None = 60.0, wait: float = 0.0) -> None:
        # --wait: a server that is still starting has no socket yet (or a stale one);
        # retry until it answers, like pg_isready -t, so scripts need no sleep.
        deadline = time.monotonic() + wait
        check_socket_directory(path)
        while True:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.settimeout(timeout)
            try:
                self._sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                self._sock.close()
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                raise CtlError(
                    EXIT_NO_SERVER, f"server not running: cannot connect to {path} ({exc.strerror})"
                ) from None
            except PermissionError:
                self._sock.close()
                raise CtlError(
                    4, f"permission denied on {path}: ask an admin to add you to a voltaro group"
                ) from None
        self._file = self._sock.makefile("rb")
        self.hello = self._read()
        if self.hello.get("type") != "hello":
            raise CtlError(1, f"unexpected first frame from the server: {self.hello}")
        self._ids = 0

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise CtlError(EXIT_NO_SERVER, "the server closed the connection")
        return wire.decode(line)

    def request(self, op: str, args: dict[str, Any] | None = None) -> Any:
        self._ids += 1
        rid = self._ids
        self._sock.sendall(wire.encode(wire.request(rid, op, args)))
        while True:
            frame = self._read()
            if frame.get("type") != "response" or frame.get("id") not in (rid, None):
                continue
            if frame.get("ok"):
                return frame.get("result")
            error = frame.get("error") or {}
            code = str(error.get("code", "internal"))
            raise CtlError(EXIT.get(code, 1), f"{code}: {error.get('message', '')}")

    def events(self) -> Iterator[dict[str, Any]]:
        self._sock.settimeout(None)
        while True:
            frame = self._read()
            if frame.get("type") in ("event", "resync"):
                yield frame

    def close(self) -> None:
        self._file.close()
        self._sock.close()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"voltaro ctl: {message}\n")
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="voltaro ctl", description="Operate a running Voltaro server.")
    p.add_argument(
        "--socket",
        default=os.environ.get("VOLTARO_CONTROL_SOCKET") or default_control_socket(),
        help="control socket path",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for a server that is starting (default 0: fail at once)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("status", help="server, database and counts")

    ch = sub.add_parser("chargers", help="registered chargers").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    ch.add_parser("list")
    for name in ("show", "remove", "accept", "reject"):
        ch.add_parser(name).add_argument("charger_id", metavar="ID")
    add = ch.add_parser("add")
    add.add_argument("charger_id", metavar="ID")
    add.add_argument("--password", help="HTTP Basic password (security profile 1)")
    add.add_argument("--allow-no-subprotocol", action="store_true")

    tg = sub.add_parser("tags", help="RFID / id tags").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    tg.add_parser("list")
    tadd = tg.add_parser("add")
    tadd.add_argument("id_tag", metavar="TAG")
    tadd.add_argument(
        "--status", choices=["Accepted", "Blocked", "Expired", "Invalid"], default="Accepted"
    )
    tadd.add_argument("--expiry", help="ISO 8601 expiry time")
    tadd.add_argument("--parent", help="parent id tag")
    for name in ("block", "remove"):
        tg.add_parser(name).add_argument("id_tag", metavar="TAG")

    tx = sub.add_parser("transactions", help="charging sessions").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    tl = tx.add_parser("list")
    tl.add_argument("--active", action="store_true")
    tl.add_argument("--charger", dest="charger_id")
    tl.add_argument("--limit", type=int, default=50)
    tl.add_argument(
        "--state",
        choices=["active", "completed", "interrupted", "refused", "closed"],
        help="only transactions in this state (interrupted: to reconcile)",
    )
    tx.add_parser("show").add_argument("transaction_id", metavar="TX", type=int)
    tc = tx.add_parser("close", help="close a transaction whose stop never came (audited)")
    tc.add_argument("transaction_id", metavar="TX", type=int)
    tc.add_argument(
        "--meter-stop",
        dest="meter_stop",
        type=int,
        metavar="WH",
        help="the final meter reading in Wh (default: the last reading received)",
    )
    tc.add_argument("--reason", help="why, for the audit and the record")
    ts = tx.add_parser("stops", help="stops kept for reconciliation (orphan/foreign/conflict)")
    ts.add_argument("--charger", dest="charger_id")

    rs = sub.add_parser("remote-start")
    rs.add_argument("charger_id", metavar="ID")
    rs.add_argument("id_tag", metavar="TAG")
    rs.add_argument("--connector", dest="connector_id", type=int)
    rs.add_argument(
        "--force",
        action="store_true",
        help="send even for an unknown, blocked or expired tag, or one already charging",
    )
    rt = sub.add_parser("remote-stop")
    rt.add_argument("charger_id", metavar="ID")
    rt.add_argument("transaction_id", metavar="TX", type=int)
    rr = sub.add_parser("reset")
    rr.add_argument("charger_id", metavar="ID")
    rr.add_argument("--hard", action="store_true")
    un = sub.add_parser("unlock")
    un.add_argument("charger_id", metavar="ID")
    un.add_argument("connector_id", metavar="CONNECTOR", type=int)
    av = sub.add_parser("availability")
    av.add_argument("charger_id", metavar="ID")
    av.add_argument("connector_id", metavar="CONNECTOR", type=int)
    av.add_argument("type", choices=["operative", "inoperative"])
    gc = sub.add_parser("get-config")
    gc.add_argument("charger_id", metavar="ID")
    gc.add_argument("keys", metavar="KEY", nargs="*")
    sc = sub.add_parser("set-config")
    sc.add_argument("charger_id", metavar="ID")
    sc.add_argument("key", metavar="KEY")
    sc.add_argument("value", metavar="VALUE")
    sub.add_parser("clear-cache").add_argument("charger_id", metavar="ID")
    dt = sub.add_parser("data-transfer")
    dt.add_argument("charger_id", metavar="ID")
    dt.add_argument("vendor_id", metavar="VENDOR")
    dt.add_argument("--message-id")
    dt.add_argument("--data")
    tr = sub.add_parser("trigger")
    tr.add_argument("charger_id", metavar="ID")
    tr.add_argument("requested_message", metavar="MESSAGE")
    tr.add_argument("--connector", dest="connector_id", type=int)
    ev = sub.add_parser("events", help="follow the event stream until interrupted")
    ev.add_argument("--frames", action="store_true", help="include raw OCPP frames")
    return p


def _request_for(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    c = ns.command
    if c == "status":
        return "status", {}
    if c == "chargers":
        if ns.action == "list":
            return "chargers.list", {}
        args: dict[str, Any] = {"charger_id": ns.charger_id}
        if ns.action == "add":
            if ns.password is not None:
                args["password"] = ns.password
            args["allow_no_subprotocol"] = ns.allow_no_subprotocol
        return f"chargers.{ns.action}", args
    if c == "tags":
        if ns.action == "list":
            return "tags.list", {}
        args = {"id_tag": ns.id_tag}
        if ns.action == "add":
            args.update(status=ns.status, expiry=ns.expiry, parent=ns.parent)
        return f"tags.{ns.action}", args
    if c == "transactions":
        if ns.action == "list":
            return "transactions.list", {
                "active": ns.active,
                "charger_id": ns.charger_id,
                "limit": ns.limit,
                "state": ns.state,
            }
        if ns.action == "close":
            return "transactions.close", {
                "transaction_id": ns.transaction_id,
                "meter_stop": ns.meter_stop,
                "reason": ns.reason,
            }
        if ns.action == "stops":
            return "transactions.stops", {"charger_id": ns.charger_id}
        return "transactions.show", {"transaction_id": ns.transaction_id}
    command_args: dict[str, Any]
    match c:
        case "remote-start":
            command_args = {
                "id_tag": ns.id_tag,
                "connector_id": ns.connector_id,
                "force": True if ns.force else None,
            }
        case "remote-stop":
            command_args = {"transaction_id": ns.transaction_id}
        case "reset":
            command_args = {"type": "Hard" if ns.hard else "Soft"}
        case "unlock":
            command_args = {"connector_id": ns.connector_id}
        case "availability":
            command_args = {"connector_id": ns.connector_id, "type": ns.type.capitalize()}
        case "get-config":
            command_args = {"keys": ns.keys}
        case "set-config":
            command_args = {"key": ns.key, "value": ns.value}
        case "clear-cache":
            command_args = {}
        case "data-transfer":
            command_args = {"vendor_id": ns.vendor_id, "message_id": ns.message_id, "data": ns.data}
        case _:  # trigger
            command_args = {
                "requested_message": ns.requested_message,
                "connector_id": ns.connector_id,
            }
    clean = {k: v for k, v in command_args.items() if v is not None}
    return "command", {"charger_id": ns.charger_id, "action": c, "args": clean}


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(h) for h in header]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _human(op: str, result: Any) -> str:
    if op == "chargers.list":
        return _table(
            [
                (
                    c["charger_id"],
                    "online" if c["connected"] else "offline",
                    c["registration"],
                    c.get("vendor"),
                    c.get("model"),
                    " ".join(
                        f"{k['connector_id']}:{k['status']}"
                        + (
                            f"({k['scheduled_availability']} after the session)"
                            if k.get("scheduled_availability")
                            else ""
                        )
                        for k in c["connectors"]
                        if k["connector_id"] > 0
                    ),
                    c.get("last_seen"),
                )
                for c in result
            ],
            ["ID", "STATE", "REGISTRATION", "VENDOR", "MODEL", "CONNECTORS", "LAST SEEN"],
        )
    if op == "tags.list":
        return _table(
            [(t["id_tag"], t["status"], t["expiry_date"], t["parent_id_tag"]) for t in result],
            ["TAG", "STATUS", "EXPIRY", "PARENT"],
        )
    if op == "transactions.list":
        return _table(
            [
                (
                    t["transaction_id"],
                    t["charger_id"],
                    t["connector_id"],
                    t["id_tag"],
                    t["state"],
                    t["start_time"],
                    t["energy_wh"],
                    t["stop_reason"],
                )
                for t in result
            ],
            ["TX", "CHARGER", "CONN", "TAG", "STATE", "START", "ENERGY_WH", "REASON"],
        )
    if op == "transactions.stops":
        return _table(
            [
                (
                    t["kind"],
                    t["charger_id"],
                    t["transaction_id"],
                    t["meter_stop"],
                    t["stop_time"],
                    t["reason"],
                    t["received_at"],
                )
                for t in result
            ],
            ["KIND", "CHARGER", "TX", "METER_STOP", "STOP_TIME", "REASON", "RECEIVED"],
        )
    if op == "command":
        lines = [f"{result['action']}: {result['status']}"]
        for entry in result.get("configuration", []):
            flag = " (readonly)" if entry["readonly"] else ""
            lines.append(f"  {entry['key']} = {entry['value']}{flag}")
        for key in result.get("unknown_keys", []):
            lines.append(f"  {key}: unknown key")
        if result.get("data") is not None:
            lines.append(f"  data: {result['data']}")
        if result.get("warning"):
            lines.append(f"  WARNING: {result['warning']}")
        return "\n".join(lines)
    if op == "chargers.show":
        # What needs the operator's eye first: settings not in effect, pending changes.
        notes = [f"! {note}" for note in result.get("attention", [])]
        return "\n".join([*notes, *_flatten(result)])
    if isinstance(result, dict):
        return "\n".join(_flatten(result))
    return json.dumps(result, indent=2)


def _flatten(value: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, item in value.items():
        if isinstance(item, dict):
            yield from _flatten(item, f"{prefix}{key}.")
        elif isinstance(item, list) and item and isinstance(item[0], dict):
            yield f"{prefix}{key}:"
            for entry in item:
                yield "  " + ", ".join(
                    f"{k}={v}" for k, v in entry.items() if not isinstance(v, list | dict)
                )
        else:
            yield f"{prefix}{key}: {item}"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        ns = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        client = Client(ns.socket, wait=ns.wait)
    except CtlError as exc:
        sys.stderr.write(f"voltaro ctl: {exc.message}\n")
        return exc.code
    try:
        if ns.command == "events":
            client.request("subscribe", {"frames": ns.frames})
            try:
                for frame in client.events():
                    if ns.json:
                        print(json.dumps(frame), flush=True)
                    elif frame["type"] == "resync":
                        print(f"-- resync: {frame.get('reason')}", flush=True)
                    else:
                        data = " ".join(
                            f"{k}={v}" for k, v in frame["data"].items() if k != "payload"
                        )
                        print(f"{frame['at']} {frame['event']} {data}", flush=True)
            except KeyboardInterrupt:
                return 0
            return 0
        op, args = _request_for(ns)
        result = client.request(op, args)
        print(json.dumps(result, indent=2) if ns.json else _human(op, result))
        return 0
    except CtlError as exc:
        sys.stderr.write(f"voltaro ctl: {exc.message}\n")
        return exc.code
    except (OSError, wire.WireError) as exc:
        sys.stderr.write(f"voltaro ctl: connection to the server failed: {exc}\n")
        return EXIT_NO_SERVER
    finally:
        client.close()
