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
import base64
import csv
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from voltaro.control import ctl_circuits, human, wire
from voltaro.control.human import duration as _duration
from voltaro.control.human import energy_kwh as _energy_kwh
from voltaro.control.human import local_time as _time
from voltaro.control.human import table as _table
from voltaro.domain import session_export
from voltaro.settings import default_control_socket

EXIT = {
    "bad_request": 2,
    "bad_arguments": 2,
    "forbidden": 4,
    "not_found": 5,
    "offline": 6,
    "not_allowed": 6,
    "disconnected": 6,
    "timeout": 7,
    "call_error": 8,
    "conflict": 9,
    "busy": 10,
    "unavailable": 11,
    "owner_unreachable": 12,
}
EXIT_NO_SERVER = 3
_CODE_OF_EXIT = {1: "error", 2: "bad_arguments", 3: "no_server", 4: "forbidden"}


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


# Every command and action with its one-line description, in the groups of `--help`.
GROUPS: dict[str, dict[str, str]] = {
    "Server": {
        "status": "server version, uptime, database state and counts",
        "events": "follow the live event stream until Ctrl-C (--charger, --kind filter it)",
    },
    "Chargers": {
        "chargers": "registered chargers (actions below)",
        "chargers list": "every charger: state, registration, connectors, last seen",
        "chargers show": "one charger: connectors, status history, configuration, sessions",
        "chargers frames": "the charger's latest OCPP frames from the frame log",
        "chargers health": "reconnects, time online, timeouts, CALLERRORs, clock drift, "
        "heartbeats over 24 h; flapping and drifting flagged",
        "chargers add": "register a charger (password, security profile)",
        "chargers set-profile": "set a charger's OCPP security profile (0-3)",
        "chargers set-group": "the group whose local list a charger gets (none: all chargers')",
        "chargers set-password": "provision a new password (ChangeConfiguration AuthorizationKey)",
        "chargers remove": "unregister a charger (closes its connection)",
        "chargers accept": "accept a Pending charger",
        "chargers reject": "reject a charger (closes its connection)",
    },
    "Tags": {
        "tags": "RFID / id tags (actions below)",
        "tags list": "every id tag with its status, expiry and parent",
        "tags add": "add an id tag that may charge",
        "tags set": "edit an id tag: unblock it, change its expiry, parent or groups",
        "tags block": "block an id tag",
        "tags remove": "delete an id tag",
    },
    "Sessions": {
        "transactions": "charging sessions (actions below)",
        "transactions list": "sessions, latest first, with their energy",
        "transactions show": "one session with its meter values",
        "transactions close": "close a session whose stop never came (audited)",
        "transactions stops": "stops kept for reconciliation (orphan/foreign/conflict)",
        "transactions export": "sessions as CSV for billing (--from, --to, --charger)",
    },
    "Audit": {
        "commands": "the command audit (actions below)",
        "commands list": "who sent which command to which charger, when, and the outcome",
        "quarantine": "charger messages kept as raw frames: refused or repaired (actions below)",
        "quarantine list": "charger messages kept as raw frames: refused by the database, "
        "or stored repaired (read-only)",
    },
    "Local lists and reservations": {
        "local-list": "Local Authorization Lists (actions below)",
        "local-list sync": "send chargers the tag list: differences, or Full when needed",
        "local-list show": "what a charger last accepted, and the list it should hold",
        "local-list version": "ask a charger its list version (GetLocalListVersion)",
        "reservations": "connector reservations (actions below)",
        "reservations add": "reserve a connector (0 = any) for a tag (ReserveNow)",
        "reservations cancel": "cancel a reservation (CancelReservation)",
        "reservations list": "reservations, newest first, with their state",
    },
    "Smart Charging": {
        "profiles": "charging profiles (actions below)",
        "profiles set": "check and send a charging profile (SetChargingProfile)",
        "profiles clear": "clear profiles by id, connector, purpose or stack level",
        "profiles list": "the profiles a charger holds (as accepted), or every one sent",
        "profiles composite": "the schedule a connector will follow (GetCompositeSchedule)",
        "profiles limit": "limit the whole charger to a current or power (ChargePointMaxProfile)",
    },
    "Site load management": ctl_circuits.HELP,
    "Commands to a charger": {
        "remote-start": "start a session for a tag (RemoteStartTransaction)",
        "remote-stop": "stop a session (RemoteStopTransaction)",
        "reset": "reboot the charger (Reset; --hard needs admin)",
        "unlock": "unlock a connector (UnlockConnector)",
        "availability": "make a connector operative or inoperative (ChangeAvailability)",
        "get-config": "read configuration keys (GetConfiguration)",
        "set-config": "change a configuration key (ChangeConfiguration; admin)",
        "clear-cache": "clear the authorization cache (ClearCache)",
        "data-transfer": "send vendor-specific data (DataTransfer)",
        "trigger": "ask the charger to send a message (TriggerMessage)",
        "trigger-ext": "ExtendedTriggerMessage (security extension): also LogStatusNotification "
        "and SignChargePointCertificate (a certificate renewal)",
    },
    "Certificates": {
        "certificates": "charger certificates, 1.6 security extension (actions below)",
        "certificates install": "install a root certificate on a charger (InstallCertificate; "
        "admin)",
        "certificates list": "ask a charger which root certificates it holds "
        "(GetInstalledCertificateIds)",
        "certificates show": "what a charger last reported or accepted (numbered), and its "
        "SignCertificate requests",
        "certificates delete": "delete a certificate on a charger by --index or hash data "
        "(DeleteCertificate; admin)",
        "certificates hash": "the hash data of a certificate file (local; nothing is sent)",
    },
    "Firmware and diagnostics": {
        "firmware": "firmware images and updates (actions below)",
        "firmware add": "keep a firmware image to serve to chargers (admin)",
        "firmware list": "the firmware images this server serves",
        "firmware remove": "delete a firmware image no campaign or pending update uses (admin)",
        "firmware update": "send UpdateFirmware: a --location URL or a --file served here; "
        "--chargers PATTERN runs a campaign",
        "firmware campaigns": "firmware campaigns and each charger's progress",
        "firmware cancel": "cancel a campaign: chargers not sent it yet never will be",
        "diagnostics": "diagnostics files (actions below)",
        "diagnostics get": "send GetDiagnostics (upload here, or to a --location)",
        "diagnostics list": "diagnostics files chargers uploaded here",
        "diagnostics fetch": "copy an uploaded diagnostics file to this machine (admin)",
        "firmware update-signed": "send SignedUpdateFirmware (security extension; admin): "
        "--signing-cert and a --signature or --sign-with KEY",
        "logs": "security and diagnostics logs, GetLog (actions below)",
        "logs get": "send GetLog: the charger uploads its SecurityLog (or --type diagnostics) "
        "here, or to a --location",
        "logs list": "logs chargers uploaded here after GetLog",
        "logs fetch": "copy an uploaded log to this machine (admin)",
    },
}
HELP = {name: text for group in GROUPS.values() for name, text in group.items()}
# Commands that only group actions: --help lists their actions instead.
GROUPED = (
    "chargers",
    "tags",
    "transactions",
    "commands",
    "quarantine",
    "firmware",
    "diagnostics",
    "logs",
    "local-list",
    "reservations",
    "profiles",
    "circuits",
    "certificates",
)

EXAMPLES = """shell completion (commands, charger ids and tags from the server):
  source <(voltaro ctl completion bash)      # or: completion zsh, in ~/.zshrc

examples:
  voltaro ctl status
  voltaro ctl chargers add CP-1 --password 'a-long-secret'
  voltaro ctl tags add 04A1B2C3 --expiry 2026-12-31T23:59:59Z
  voltaro ctl transactions list --active --json
  voltaro ctl remote-start CP-1 04A1B2C3 --connector 1
  voltaro ctl availability CP-1 2 inoperative
  voltaro ctl get-config CP-1 HeartbeatInterval
  voltaro ctl commands list --charger CP-1 --since 2h --by api:billing
  voltaro ctl transactions export --from 2026-11-01 --to 2026-12-01 > november.csv
  voltaro ctl events --charger CP-1 --kind transaction --kind connector.status
  voltaro ctl local-list sync CP-1 CP-2
  voltaro ctl reservations add CP-1 04A1B2C3 --connector 1 --minutes 30

--json may come anywhere; errors are then {"error": {"code", "message"}} on stderr.
exit status: 0 done (a charger answering Rejected is done), 1 other error, 2 bad
arguments, 3 server not running, 4 role refused, 5 unknown charger/tag/transaction
(not_found), 6 charger offline or not allowed in its state, 7 timeout, 8 the charger
answered with a CALLERROR, 9 already exists, 10 the charger was busy with earlier
commands (nothing sent), 11 the database is unavailable (nothing done; retry)."""


def _add_retries(parser: argparse.ArgumentParser) -> None:
    """The upload and download commands' retries (OCPP 1.6 §5.9, §5.19)."""
    parser.add_argument("--retries", type=int)
    parser.add_argument("--retry-interval", type=int, metavar="SECONDS")


def _retries(ns: argparse.Namespace) -> dict[str, int | None]:
    return {"retries": ns.retries, "retry_interval": ns.retry_interval}


def _overview() -> str:
    shown = {
        title: {n: t for n, t in commands.items() if " " in n or n not in GROUPED}
        for title, commands in GROUPS.items()
    }
    # The widest name and a space: a fixed column once ran "circuits external-load"
    # into its text.
    width = max(len(name) for commands in shown.values() for name in commands) + 1
    lines = []
    for title, commands in shown.items():
        lines.append(f"{title.lower()}:")
        for name, text in commands.items():
            lines.append(f"  {name:<{width}}{text}")
        lines.append("")
    return "\n".join(lines) + EXAMPLES


def _choice(*options: str) -> Any:
    """An argparse type: one of ``options`` in any case, returned as spelled here."""

    def parse(text: str) -> str:
        for option in options:
            if option.lower() == text.lower():
                return option
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(options)} (any case)")

    parse.__name__ = "choice"
    return parse


class _Group:
    """Subparsers that take each help line from HELP (so nothing is left undocumented)."""

    def __init__(self, action: Any, prefix: str) -> None:
        self._action = action
        self._prefix = prefix

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        key = f"{self._prefix} {name}".strip()
        text = HELP.get(key, kwargs.pop("help", ""))
        kwargs.pop("help", None)
        parser: argparse.ArgumentParser = self._action.add_parser(
            name, help=text, description=text[:1].upper() + text[1:] + ".", **kwargs
        )
        return parser


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(text: str) -> str:
    """--since: an ISO 8601 time, or an age (30m, 2h, 7d) before now; sent as UTC."""
    raw = text.strip()
    if len(raw) > 1 and raw[-1].lower() in _AGE_UNITS and raw[:-1].isdigit():
        at = datetime.now(UTC) - timedelta(seconds=int(raw[:-1]) * _AGE_UNITS[raw[-1].lower()])
    else:
        try:
            at = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is neither an ISO 8601 time nor an age like 30m, 2h or 7d"
            ) from None
        if at.tzinfo is None:
            at = at.astimezone()  # a time without offset is the operator's local time
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _event_kind(text: str) -> str:
    try:
        return wire.event_kinds([text])[0]
    except wire.WireError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


TX_STATES = ("active", "completed", "interrupted", "refused", "closed")
# `transactions list --state` also names the stops that closed nothing, by their kind.
STOP_STATES = {"orphan": "unknown", "foreign": "foreign", "conflict": "conflict"}


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="voltaro ctl",
        description="Operate a running Voltaro server over its control socket.",
        epilog=_overview(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--socket",
        default=os.environ.get("VOLTARO_CONTROL_SOCKET") or default_control_socket(),
        help="control socket path",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--request-id",
        metavar="ID",
        help="an idempotency key for a command to a charger (a UUID): with several nodes, "
        "running it again with the same ID never sends the command twice",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for a server that is starting (default 0: fail at once)",
    )
    sub = _Group(p.add_subparsers(dest="command", metavar="COMMAND", required=True), "")
    sub.add_parser("status", help="server, database and counts")

    ch = _Group(
        sub.add_parser("chargers").add_subparsers(dest="action", required=True, metavar="ACTION"),
        "chargers",
    )
    ch.add_parser("list")
    for name in ("show", "remove", "accept", "reject"):
        ch.add_parser(name).add_argument("charger_id", metavar="ID")
    hl = ch.add_parser("health")
    hl.add_argument("charger_id", metavar="ID", nargs="?", help="one charger (default: all)")
    hl.add_argument("--flagged", action="store_true", help="only flapping or drifting ones")
    fr = ch.add_parser("frames")
    fr.add_argument("charger_id", metavar="ID")
    fr.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    fr.add_argument("--action", dest="frame_action", help="only this OCPP action")
    add = ch.add_parser("add")
    add.add_argument("charger_id", metavar="ID")
    add.add_argument("--password", help="HTTP Basic password (security profiles 1 and 2)")
    add.add_argument(
        "--profile",
        type=int,
        choices=(0, 1, 2, 3),
        help="OCPP security profile: 0 none, 1 Basic auth, 2 TLS + Basic auth, "
        "3 TLS client certificate (default: 1 with --password, else 0)",
    )
    sp = ch.add_parser("set-profile")
    sp.add_argument("charger_id", metavar="ID")
    sp.add_argument("profile", metavar="PROFILE", type=int, choices=(0, 1, 2, 3))
    sg = ch.add_parser("set-group")
    sg.add_argument("charger_id", metavar="ID")
    sg.add_argument(
        "group", metavar="GROUP", nargs="?", help="group name; omitted: no group (all chargers')"
    )
    pw = ch.add_parser("set-password")
    pw.add_argument("charger_id", metavar="ID")
    how = pw.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--generate",
        action="store_true",
        help="a random 20-byte password, sent to the charger and never shown",
    )
    how.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password (32-40 hex digits, or 16-20 characters) from standard input",
    )
    add.add_argument("--allow-no-subprotocol", action="store_true")

    tg = _Group(
        sub.add_parser("tags").add_subparsers(dest="action", required=True, metavar="ACTION"),
        "tags",
    )
    tg.add_parser("list")
    tadd = tg.add_parser("add")
    tadd.add_argument("id_tag", metavar="TAG")
    tadd.add_argument(
        "--status",
        type=_choice("Accepted", "Blocked", "Expired", "Invalid"),
        default="Accepted",
        help="Accepted (default), Blocked, Expired or Invalid (any case)",
    )
    tadd.add_argument("--expiry", help="ISO 8601 expiry time")
    tadd.add_argument("--parent", help="parent id tag")
    tadd.add_argument(
        "--group",
        dest="groups",
        action="append",
        metavar="GROUP",
        help="only on the local lists of this charger group (repeatable; default: every list)",
    )
    tset = tg.add_parser("set")
    tset.add_argument("id_tag", metavar="TAG")
    tset.add_argument(
        "--status",
        type=_choice("Accepted", "Blocked", "Expired", "Invalid"),
        help="Accepted (unblocks), Blocked, Expired or Invalid (any case)",
    )
    tset.add_argument("--expiry", help="ISO 8601 expiry time ('' removes it)")
    tset.add_argument("--parent", help="parent id tag ('' removes it)")
    tset.add_argument(
        "--group",
        dest="groups",
        action="append",
        metavar="GROUP",
        help="only on the local lists of these charger groups (repeatable; replaces them)",
    )
    tset.add_argument(
        "--all-chargers",
        action="store_true",
        help="on every charger's local list again (no group limit)",
    )
    for name in ("block", "remove"):
        tg.add_parser(name).add_argument("id_tag", metavar="TAG")

    tx = _Group(
        sub.add_parser("transactions").add_subparsers(
            dest="action", required=True, metavar="ACTION"
        ),
        "transactions",
    )
    tl = tx.add_parser("list")
    tl.add_argument("--active", action="store_true")
    tl.add_argument("--charger", dest="charger_id")
    tl.add_argument("--limit", type=int, default=50)
    tl.add_argument(
        "--state",
        type=_choice(*TX_STATES, *STOP_STATES),
        help="only transactions in this state (interrupted: to reconcile); orphan, foreign "
        "and conflict list the stops that closed nothing, of that kind",
    )
    te = tx.add_parser("export", help="sessions as CSV for billing, to stdout (streamed)")
    te.add_argument(
        "--from",
        dest="start_from",
        type=_since,
        metavar="WHEN",
        help="sessions started at or after WHEN: ISO 8601 (without an offset: this machine's "
        "local time) or an age like 30d",
    )
    te.add_argument(
        "--to",
        dest="start_to",
        type=_since,
        metavar="WHEN",
        help="sessions started before WHEN (ISO 8601 or an age)",
    )
    te.add_argument("--charger", dest="charger_id", help="only this charger's sessions")
    te.add_argument("--page-size", dest="page_size", type=int, default=500, help=argparse.SUPPRESS)
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

    qu = _Group(
        sub.add_parser("quarantine").add_subparsers(dest="action", required=True, metavar="ACTION"),
        "quarantine",
    )
    ql = qu.add_parser("list")
    ql.add_argument("--charger", dest="charger_id")
    ql.add_argument("--limit", type=int, default=100)

    cm = _Group(
        sub.add_parser("commands").add_subparsers(dest="action", required=True, metavar="ACTION"),
        "commands",
    )
    cl = cm.add_parser("list")
    cl.add_argument("--charger", dest="charger_id", help="only commands sent to this charger")
    cl.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="only commands sent since WHEN: ISO 8601, or an age like 30m, 2h, 7d",
    )
    cl.add_argument(
        "--by", dest="actor", metavar="USER", help="only commands sent by USER (api:NAME: a token)"
    )
    cl.add_argument("--action", dest="audit_action", metavar="ACTION", help="e.g. Reset")
    cl.add_argument("--limit", type=int, default=50, help="how many, newest first (default 50)")
    ll = _Group(
        sub.add_parser("local-list").add_subparsers(dest="action", required=True, metavar="ACTION"),
        "local-list",
    )
    lsync = ll.add_parser("sync")
    lsync.add_argument(
        "charger_ids", metavar="ID", nargs="*", help="chargers (default: every connected one)"
    )
    lsync.add_argument("--full", action="store_true", help="send the whole list (Full update)")
    ll.add_parser("show").add_argument("charger_id", metavar="ID")
    ll.add_parser("version").add_argument("charger_id", metavar="ID")

    rv = _Group(
        sub.add_parser("reservations").add_subparsers(
            dest="action", required=True, metavar="ACTION"
        ),
        "reservations",
    )
    radd = rv.add_parser("add")
    radd.add_argument("charger_id", metavar="ID")
    radd.add_argument("id_tag", metavar="TAG")
    radd.add_argument(
        "--connector", dest="connector_id", type=int, default=0, help="0 (default): any"
    )
    when = radd.add_mutually_exclusive_group(required=True)
    when.add_argument("--expiry", help="ISO 8601 time the reservation ends")
    when.add_argument("--minutes", type=float, help="minutes from now")
    rv.add_parser("cancel").add_argument("reservation_id", metavar="RESERVATION", type=int)
    rlist = rv.add_parser("list")
    rlist.add_argument("--charger", dest="charger_id")
    rlist.add_argument("--open", action="store_true", help="only those still held")
    rlist.add_argument("--limit", type=int, default=100)

    pf = _Group(
        sub.add_parser("profiles").add_subparsers(dest="action", required=True, metavar="ACTION"),
        "profiles",
    )
    pset = pf.add_parser("set")
    pset.add_argument("charger_id", metavar="ID")
    pset.add_argument("connector_id", metavar="CONNECTOR", type=int, help="0: the charger")
    pset.add_argument("profile_file", metavar="FILE", help="csChargingProfiles JSON ('-': stdin)")
    pclear = pf.add_parser("clear")
    pclear.add_argument("charger_id", metavar="ID")
    pclear.add_argument("--id", dest="profile_id", type=int)
    pclear.add_argument("--connector", dest="connector_id", type=int)
    pclear.add_argument(
        "--purpose",
        type=_choice("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"),
    )
    pclear.add_argument("--stack-level", dest="stack_level", type=int)
    plist = pf.add_parser("list")
    plist.add_argument("charger_id", metavar="ID")
    plist.add_argument("--all", action="store_true", help="every profile sent, with answers")
    pcomp = pf.add_parser("composite")
    pcomp.add_argument("charger_id", metavar="ID")
    pcomp.add_argument("connector_id", metavar="CONNECTOR", type=int)
    pcomp.add_argument("duration", metavar="SECONDS", type=int)
    pcomp.add_argument("--unit", type=_choice("A", "W"))
    plimit = pf.add_parser("limit")
    plimit.add_argument("charger_id", metavar="ID")
    plimit.add_argument("limit", metavar="LIMIT", type=float)
    plimit.add_argument("--unit", type=_choice("A", "W"), default="A", help="A (default) or W")
    plimit.add_argument("--id", dest="profile_id", type=int, default=1, help="profile id (1)")
    plimit.add_argument("--stack-level", dest="stack_level", type=int, default=0)

    ctl_circuits.add_parsers(
        _Group(
            sub.add_parser("circuits").add_subparsers(
                dest="action", required=True, metavar="ACTION"
            ),
            "circuits",
        )
    )
    ce = _Group(
        sub.add_parser("certificates").add_subparsers(
            dest="action", required=True, metavar="ACTION"
        ),
        "certificates",
    )
    types = _choice("central", "manufacturer")
    cinst = ce.add_parser("install")
    cinst.add_argument("charger_id", metavar="ID")
    cinst.add_argument("--type", dest="certificate_type", type=types, required=True)
    cinst.add_argument("file", metavar="FILE", help="the root certificate, PEM ('-': stdin)")
    clist = ce.add_parser("list")
    clist.add_argument("charger_id", metavar="ID")
    clist.add_argument("--type", dest="certificate_type", type=types, required=True)
    ce.add_parser("show").add_argument("charger_id", metavar="ID")
    cdel = ce.add_parser("delete")
    cdel.add_argument("charger_id", metavar="ID")
    cdel.add_argument("--index", type=int, help="the certificate's number in `certificates show`")
    cdel.add_argument("--hash-algorithm", dest="hash_algorithm", default="SHA256")
    cdel.add_argument("--issuer-name-hash", dest="issuer_name_hash")
    cdel.add_argument("--issuer-key-hash", dest="issuer_key_hash")
    cdel.add_argument("--serial", dest="serial_number", help="serial number, hex")
    chash = ce.add_parser("hash")
    chash.add_argument("file", metavar="FILE", help="a PEM certificate")
    chash.add_argument("--issuer", help="its issuer's certificate (not needed for a root)")
    chash.add_argument(
        "--hash-algorithm",
        dest="hash_algorithm",
        default="SHA256",
        type=_choice("SHA256", "SHA384", "SHA512"),
    )

    se = sub.add_parser(
        "security", help="security events: failed logins, downgrades, bad certificates"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    se.add_parser("events", help="counts per kind and the recent events, newest first")

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
    av.add_argument(
        "type", type=_choice("operative", "inoperative"), help="operative or inoperative"
    )
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
    trx = sub.add_parser("trigger-ext")
    trx.add_argument("charger_id", metavar="ID")
    trx.add_argument(
        "requested_message",
        metavar="MESSAGE",
        help="BootNotification, LogStatusNotification, FirmwareStatusNotification, Heartbeat, "
        "MeterValues, SignChargePointCertificate or StatusNotification",
    )
    trx.add_argument("--connector", dest="connector_id", type=int)
    fw = _Group(
        sub.add_parser("firmware").add_subparsers(dest="action", required=True, metavar="ACTION"),
        "firmware",
    )
    fa = fw.add_parser("add")
    fa.add_argument("path", metavar="FILE")
    fa.add_argument("--name", help="the name chargers see (default: the file's)")
    fw.add_parser("list")
    fr = fw.add_parser("remove")
    fr.add_argument("file", metavar="NAME", help="the image's name or id")
    fr.add_argument("--force", action="store_true", help="even if a charger has yet to download it")
    fw.add_parser("campaigns").add_argument("campaign_id", metavar="ID", nargs="?", type=int)
    fw.add_parser("cancel").add_argument("campaign_id", metavar="ID", type=int)
    fu = fw.add_parser("update")
    fu.add_argument("charger_id", metavar="ID", nargs="?")
    fu.add_argument(
        "--chargers",
        dest="pattern",
        metavar="PATTERN",
        help="a campaign: every charger matching (shell-style, commas between several)",
    )
    fu.add_argument(
        "--max-parallel", type=int, default=5, metavar="N", help="campaign: at most N at once"
    )
    where = fu.add_mutually_exclusive_group(required=True)
    where.add_argument("--location", help="a URL the charger fetches (http, https, ftp, ftps)")
    where.add_argument("--file", help="a firmware image added with `firmware add` (name or id)")
    fu.add_argument("--at", dest="retrieve_date", help="retrieve date, ISO 8601 (default now)")
    _add_retries(fu)
    fsig = fw.add_parser("update-signed")
    fsig.add_argument("charger_id", metavar="ID")
    signed_where = fsig.add_mutually_exclusive_group(required=True)
    signed_where.add_argument("--location", help="a URL the charger fetches")
    signed_where.add_argument("--file", help="a firmware image added with `firmware add`")
    fsig.add_argument(
        "--signing-cert", required=True, metavar="PEM", help="the signing certificate (file)"
    )
    how = fsig.add_mutually_exclusive_group(required=True)
    how.add_argument("--signature", metavar="B64", help="the image's signature, base64")
    how.add_argument(
        "--sign-with",
        metavar="KEY",
        help="a PEM private key (file) the server signs the --file image with (SHA-256 with "
        "RSA or ECDSA); used once, kept nowhere",
    )
    fsig.add_argument("--at", dest="retrieve_date", help="retrieve date, ISO 8601 (default now)")
    fsig.add_argument("--install-at", dest="install_date", help="install date, ISO 8601")
    _add_retries(fsig)
    lg = _Group(
        sub.add_parser("logs").add_subparsers(dest="action", required=True, metavar="ACTION"),
        "logs",
    )
    lget = lg.add_parser("get")
    lget.add_argument("charger_id", metavar="ID")
    lget.add_argument(
        "--type",
        dest="log_type",
        type=_choice("security", "diagnostics"),
        default="security",
        help="security (default) or diagnostics",
    )
    lget.add_argument("--location", help="upload there instead (default: to this server)")
    lget.add_argument("--since", dest="oldest", help="oldest entries, ISO 8601")
    lget.add_argument("--until", dest="latest", help="newest entries, ISO 8601")
    _add_retries(lget)
    llist = lg.add_parser("list")
    llist.add_argument("charger_id", metavar="ID", nargs="?")
    llist.add_argument("--limit", type=int, default=100)
    lf = lg.add_parser("fetch")
    lf.add_argument("file_id", metavar="FILE_ID", type=int)
    lf.add_argument("-o", "--output", help="where to write it (default: its name, here)")
    dg = _Group(
        sub.add_parser("diagnostics").add_subparsers(
            dest="action", required=True, metavar="ACTION"
        ),
        "diagnostics",
    )
    dget = dg.add_parser("get")
    dget.add_argument("charger_id", metavar="ID")
    dget.add_argument("--location", help="upload there instead (default: to this server)")
    dget.add_argument("--since", dest="start_time", help="oldest entries, ISO 8601")
    dget.add_argument("--until", dest="stop_time", help="newest entries, ISO 8601")
    _add_retries(dget)
    dl = dg.add_parser("list")
    dl.add_argument("--charger", dest="charger_id")
    dl.add_argument("--limit", type=int, default=100)
    df = dg.add_parser("fetch")
    df.add_argument("file_id", metavar="FILE_ID", type=int)
    df.add_argument("-o", "--output", help="where to write it (default: its name, here)")
    ev = sub.add_parser("events", help="follow the event stream until interrupted")
    ev.add_argument("--frames", action="store_true", help="include raw OCPP frames")
    ev.add_argument("--charger", dest="charger_id", metavar="ID", help="only this charger's")
    ev.add_argument(
        "--kind",
        dest="kinds",
        action="append",
        type=_event_kind,
        metavar="KIND",
        help="only these events (repeatable): a name such as connector.status, or a group "
        "such as transaction (any case)",
    )
    return p


def _request_for(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    c = ns.command
    if c == "status":
        return "status", {}
    if c == "chargers":
        if ns.action == "list":
            return "chargers.list", {}
        if ns.action == "health":
            return "chargers.health", _clean(charger_id=ns.charger_id, flagged=ns.flagged or None)
        args: dict[str, Any] = {"charger_id": ns.charger_id}
        if ns.action == "frames":
            args["limit"] = ns.limit
            if ns.frame_action:
                args["action"] = ns.frame_action
        if ns.action == "add":
            if ns.password is not None:
                args["password"] = ns.password
            if ns.profile is not None:
                args["security_profile"] = ns.profile
            args["allow_no_subprotocol"] = ns.allow_no_subprotocol
        if ns.action == "set-profile":
            args["security_profile"] = ns.profile
            return "chargers.set_profile", args
        if ns.action == "set-group":
            args["group"] = ns.group
            return "chargers.set_group", args
        if ns.action == "set-password":
            if ns.generate:
                args["generate"] = True
            else:
                args["password"] = sys.stdin.readline().rstrip("\r\n")
            return "chargers.set_password", args
        return f"chargers.{ns.action}", args
    if c == "tags":
        if ns.action == "list":
            return "tags.list", {}
        args = {"id_tag": ns.id_tag}
        if ns.action in ("add", "set"):
            args.update(status=ns.status, expiry=ns.expiry, parent=ns.parent)
            if ns.groups:
                args["groups"] = ns.groups
            if getattr(ns, "all_chargers", False):
                args["groups"] = []
        return f"tags.{ns.action}", args
    if c == "transactions":
        if ns.action == "list" and ns.state in STOP_STATES:
            stop_args: dict[str, Any] = {"kind": STOP_STATES[ns.state], "limit": ns.limit}
            if ns.charger_id is not None:
                stop_args["charger_id"] = ns.charger_id
            return "transactions.stops", stop_args
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
    if c == "certificates":
        return _certificates_request(ns)
    if c == "commands":
        args = {"limit": ns.limit}
        if ns.charger_id is not None:
            args["charger_id"] = ns.charger_id
        if ns.since is not None:
            args["since"] = ns.since
        if ns.actor is not None:
            args["actor"] = ns.actor
        if ns.audit_action is not None:
            args["action"] = ns.audit_action
        return "commands.list", args
    if c == "local-list":
        if ns.action == "sync":
            sync_args: dict[str, Any] = {"full": ns.full}
            if ns.charger_ids:
                sync_args["charger_ids"] = ns.charger_ids
            return "local_list.sync", sync_args
        if ns.action == "show":
            return "local_list.show", {"charger_id": ns.charger_id}
        return "command", {
            "charger_id": ns.charger_id,
            "action": "GetLocalListVersion",
            "args": {},
        }
    if c == "circuits":
        return ctl_circuits.request_for(ns)
    if c == "profiles":
        if ns.action == "set":
            path = ns.profile_file
            try:
                if path == "-":
                    text = sys.stdin.read()
                else:
                    with open(path, encoding="utf-8") as handle:
                        text = handle.read()
                profile = json.loads(text)
            except (OSError, ValueError) as exc:
                raise CtlError(2, f"cannot read the profile from {path}: {exc}") from None
            return "profiles.set", {
                "charger_id": ns.charger_id,
                "connector_id": ns.connector_id,
                "profile": profile,
            }
        if ns.action == "limit":
            # "Limit a charger": a ChargePointMaxProfile on connector 0, one period from
            # now on, Relative so it needs no start time (OCPP 1.6 §3.13.1).
            return "profiles.set", {
                "charger_id": ns.charger_id,
                "connector_id": 0,
                "profile": {
                    "chargingProfileId": ns.profile_id,
                    "stackLevel": ns.stack_level,
                    "chargingProfilePurpose": "ChargePointMaxProfile",
                    "chargingProfileKind": "Relative",
                    "chargingSchedule": {
                        "chargingRateUnit": ns.unit,
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": ns.limit}],
                    },
                },
            }
        if ns.action == "clear":
            clear_args = {
                "charger_id": ns.charger_id,
                "profile_id": ns.profile_id,
                "connector_id": ns.connector_id,
                "purpose": ns.purpose,
                "stack_level": ns.stack_level,
            }
            return "profiles.clear", {k: v for k, v in clear_args.items() if v is not None}
        if ns.action == "composite":
            comp_args: dict[str, Any] = {
                "charger_id": ns.charger_id,
                "connector_id": ns.connector_id,
                "duration": ns.duration,
            }
            if ns.unit:
                comp_args["unit"] = ns.unit
            return "profiles.composite", comp_args
        return "profiles.list", {"charger_id": ns.charger_id, "all": ns.all}
    if c == "reservations":
        if ns.action == "add":
            add_args: dict[str, Any] = {
                "charger_id": ns.charger_id,
                "id_tag": ns.id_tag,
                "connector_id": ns.connector_id,
            }
            if ns.expiry:
                add_args["expiry"] = ns.expiry
            else:
                add_args["minutes"] = ns.minutes
            return "reservations.add", add_args
        if ns.action == "cancel":
            return "reservations.cancel", {"reservation_id": ns.reservation_id}
        list_args: dict[str, Any] = {"open": ns.open, "limit": ns.limit}
        if ns.charger_id:
            list_args["charger_id"] = ns.charger_id
        return "reservations.list", list_args
    if c == "security":
        return "security.events", {}
    if c == "quarantine":
        args = {"limit": ns.limit}
        if ns.charger_id is not None:
            args["charger_id"] = ns.charger_id
        return "quarantine.list", args
    if c == "firmware":
        if ns.action == "add":
            path = os.path.abspath(ns.path)
            return "firmware.add", {"path": path, "name": ns.name, "sha256": _sha256(path)}
        if ns.action == "list":
            return "firmware.list", {}
        if ns.action == "remove":
            return "firmware.remove", {"file": ns.file, "force": ns.force}
        if ns.action == "campaigns":
            return "firmware.campaigns", _clean(campaign_id=ns.campaign_id)
        if ns.action == "cancel":
            return "firmware.cancel", {"campaign_id": ns.campaign_id}
        if ns.action == "update-signed":
            return "firmware.update_signed", _clean(
                charger_id=ns.charger_id,
                location=ns.location,
                file=ns.file,
                signing_certificate=_read_text(ns.signing_cert, "the signing certificate"),
                signature=ns.signature,
                private_key=None
                if ns.sign_with is None
                else _read_text(ns.sign_with, "the signing key"),
                retrieve_date=ns.retrieve_date,
                install_date=ns.install_date,
                **_retries(ns),
            )
        if (ns.charger_id is None) == (ns.pattern is None):
            raise CtlError(2, "give a charger ID or --chargers PATTERN (a campaign)")
        if ns.pattern is not None:
            return "firmware.campaign", _clean(
                pattern=ns.pattern,
                location=ns.location,
                file=ns.file,
                retrieve_date=ns.retrieve_date,
                **_retries(ns),
                max_parallel=ns.max_parallel,
            )
        return "firmware.update", _clean(
            charger_id=ns.charger_id,
            location=ns.location,
            file=ns.file,
            retrieve_date=ns.retrieve_date,
            **_retries(ns),
        )
    if c == "logs":
        if ns.action == "list":
            return "logs.list", _clean(charger_id=ns.charger_id, limit=ns.limit)
        return "logs.get", _clean(
            charger_id=ns.charger_id,
            log_type="SecurityLog" if ns.log_type == "security" else "DiagnosticsLog",
            location=ns.location,
            oldest=ns.oldest,
            latest=ns.latest,
            **_retries(ns),
        )
    if c == "diagnostics":
        if ns.action == "list":
            return "diagnostics.list", _clean(charger_id=ns.charger_id, limit=ns.limit)
        return "diagnostics.get", _clean(
            charger_id=ns.charger_id,
            location=ns.location,
            start_time=ns.start_time,
            stop_time=ns.stop_time,
            **_retries(ns),
        )
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
        case "trigger-ext":
            command_args = {
                "requested_message": ns.requested_message,
                "connector_id": ns.connector_id,
            }
        case _:  # trigger
            command_args = {
                "requested_message": ns.requested_message,
                "connector_id": ns.connector_id,
            }
    clean = {k: v for k, v in command_args.items() if v is not None}
    return "command", {"charger_id": ns.charger_id, "action": c, "args": clean}


def _export(client: Client, ns: argparse.Namespace) -> None:
    """Write the billing export as CSV to stdout, page by page as the server sends them
    (columns: voltaro/domain/session_export.py; docs/reconciliation.md)."""
    if not 1 <= ns.page_size <= 5000:
        raise CtlError(2, "--page-size must be from 1 to 5000")
    args = _clean(
        charger_id=ns.charger_id, limit=ns.page_size, **{"from": ns.start_from, "to": ns.start_to}
    )
    out = csv.writer(sys.stdout, lineterminator="\r\n")
    out.writerow(session_export.HEADER)
    while True:
        page = client.request("transactions.export", args)
        out.writerows(session_export.csv_row(view) for view in page["items"])
        sys.stdout.flush()
        if page["next"] is None:
            return
        args["after"] = page["next"]


def _read_text(path: str, what: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="ascii") as handle:
            return handle.read()
    except (OSError, ValueError) as exc:
        raise CtlError(2, f"cannot read {what} from {path}: {exc}") from None


def _certificates_request(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    if ns.action == "show":
        return "certificates.show", {"charger_id": ns.charger_id}
    if ns.action == "install":
        return "command", {
            "charger_id": ns.charger_id,
            "action": "InstallCertificate",
            "args": {
                "certificate_type": ns.certificate_type,
                "certificate": _read_text(ns.file, "the certificate"),
            },
        }
    if ns.action == "list":
        return "command", {
            "charger_id": ns.charger_id,
            "action": "GetInstalledCertificateIds",
            "args": {"certificate_type": ns.certificate_type},
        }
    # delete
    given = [ns.issuer_name_hash, ns.issuer_key_hash, ns.serial_number]
    if ns.index is not None:
        if any(v is not None for v in given):
            raise CtlError(2, "give --index or the hash data, not both")
        return "certificates.delete", {"charger_id": ns.charger_id, "index": ns.index}
    if any(v is None for v in given):
        raise CtlError(
            2,
            "give --index N (from `certificates show`) or all of --issuer-name-hash, "
            "--issuer-key-hash and --serial",
        )
    return "certificates.delete", {
        "charger_id": ns.charger_id,
        "hash_data": {
            "hash_algorithm": ns.hash_algorithm,
            "issuer_name_hash": ns.issuer_name_hash,
            "issuer_key_hash": ns.issuer_key_hash,
            "serial_number": ns.serial_number,
        },
    }


def _certificate_hash(ns: argparse.Namespace) -> dict[str, Any]:
    """`certificates hash`: computed here, from the operator's file; nothing is sent."""
    from voltaro.domain.certificates import (
        CertificateError,
        HashAlgorithm,
        describe,
        hash_data,
        load_certificate,
    )

    try:
        certificate = load_certificate(_read_text(ns.file, "the certificate"))
        issuer = load_certificate(_read_text(ns.issuer, "the issuer")) if ns.issuer else None
        data = hash_data(certificate, issuer, HashAlgorithm(ns.hash_algorithm))
    except CertificateError as exc:
        raise CtlError(2, f"{ns.file}: {exc}") from None
    return {
        **describe(certificate),
        "hash_algorithm": data.hash_algorithm.value,
        "issuer_name_hash": data.issuer_name_hash,
        "issuer_key_hash": data.issuer_key_hash,
        "serial_number_hex": data.serial_number,
    }


def _clean(**args: Any) -> dict[str, Any]:
    return {k: v for k, v in args.items() if v is not None}


def _sha256(path: str) -> str:
    """The image's SHA-256 as read here; the server refuses a copy that differs."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
    except OSError as exc:
        raise CtlError(2, f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def _fetch(client: Client, file_id: int, output: str | None) -> dict[str, Any]:
    """Copy a stored file here through the control socket, piece by piece."""
    first = client.request("files.read", {"id": file_id, "offset": 0})
    target = output or first["name"]
    offset = 0
    piece = first
    digest = hashlib.sha256()
    try:
        with open(target, "xb") as out:
            while True:
                data = base64.b64decode(piece["data"])
                out.write(data)
                digest.update(data)
                offset += len(data)
                if piece["eof"] or not data:
                    break
                piece = client.request("files.read", {"id": file_id, "offset": offset})
    except FileExistsError:
        raise CtlError(2, f"{target} exists: choose another with --output") from None
    except OSError as exc:
        raise CtlError(1, f"cannot write {target}: {exc.strerror or exc}") from None
    if digest.hexdigest() != first["sha256"]:
        raise CtlError(1, f"{target}: SHA-256 differs from the server's; fetch it again")
    return {
        **{k: v for k, v in first.items() if k not in ("data", "offset", "eof")},
        "written": os.path.abspath(target),
    }


def _certificates_text(result: dict[str, Any]) -> str:
    installed = _table(
        [
            (
                c["index"],
                c["certificate_type"],
                c["serial_number"],
                c["issuer_name_hash"][:16] + "…",
                c["issuer_key_hash"][:16] + "…",
                c["source"],
                _time(c["at"]) or c["at"],
            )
            for c in result["installed"]
        ],
        ["#", "TYPE", "SERIAL", "ISSUER NAME HASH", "ISSUER KEY HASH", "SOURCE", "AT"],
    )
    signings = _table(
        [
            (
                _time(s["received_at"]) or s["received_at"],
                s["status"],
                s["subject"],
                s["serial_number"],
                s["not_after"],
                s["detail"],
            )
            for s in result["signings"]
        ],
        ["RECEIVED", "STATUS", "SUBJECT", "SERIAL", "NOT AFTER", "DETAIL"],
    )
    return (
        f"certificates held by {result['charger_id']}:\n{installed}\n\n"
        f"SignCertificate requests:\n{signings}"
    )


def _human(op: str, result: Any) -> str:
    if op.startswith("circuits."):
        return ctl_circuits.human(op, result, human.detail_text)
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
                    c.get("security_profile", 0),
                )
                for c in result
            ],
            [
                "ID",
                "STATE",
                "REGISTRATION",
                "VENDOR",
                "MODEL",
                "CONNECTORS",
                "LAST SEEN",
                "PROFILE",
            ],
        )
    if op == "security.events":
        counts = ", ".join(f"{k}={v}" for k, v in result["counts"].items() if v) or "none"
        event_rows = [
            (
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e["at"])),
                e["kind"],
                e["charger_id"],
                e["remote"],
                e["detail"],
            )
            for e in result["recent"]
        ]
        return f"counts: {counts}\n" + _table(
            event_rows, ["AT", "KIND", "CHARGER", "REMOTE", "DETAIL"]
        )
    if op == "tags.list":
        return _table(
            [
                (
                    t["id_tag"],
                    t["status"],
                    t["expiry_date"],
                    t["parent_id_tag"],
                    ",".join(t.get("groups") or []) or None,
                )
                for t in result
            ],
            ["TAG", "STATUS", "EXPIRY", "PARENT", "GROUPS"],
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
                    _time(t["start_time"]),
                    _duration(t),
                    _energy_kwh(t),
                    t["stop_reason"],
                )
                for t in result
            ],
            ["TX", "CHARGER", "CONN", "TAG", "STATE", "START", "DURATION", "ENERGY", "REASON"],
        )
    if op == "transactions.stops":
        return _table(
            [
                (
                    t["kind"],
                    t["charger_id"],
                    t["transaction_id"],
                    human.kwh(t["meter_stop"]),
                    _time(t["stop_time"]) or t["stop_time"],
                    t["reason"],
                    _time(t["received_at"]),
                )
                for t in result
            ],
            ["KIND", "CHARGER", "TX", "METER", "STOPPED", "REASON", "RECEIVED"],
        )
    if op == "firmware.campaigns" and isinstance(result, list):
        return _table(
            [
                (
                    c["id"],
                    c["pattern"],
                    c["firmware"],
                    c["chargers"],
                    " ".join(f"{k}:{v}" for k, v in sorted(c["counts"].items())),
                    "finished" if c["finished_at"] else "running",
                )
                for c in result
            ],
            ["ID", "CHARGERS", "FIRMWARE", "N", "PROGRESS", "STATE"],
        )
    if op in ("firmware.campaign", "firmware.campaigns", "firmware.cancel"):
        head = (
            f"campaign {result['id']}: {result['pattern']} ({result['chargers']} chargers, "
            f"{result['max_parallel']} at a time, from {_time(result['retrieve_at'])}), "
            + ("finished" if result["finished_at"] else "running")
        )
        rows = [
            (t["charger_id"], t["state"], _time(t["updated_at"]), t["detail"])
            for t in result["targets"]
        ]
        return head + "\n" + _table(rows, ["CHARGER", "STATE", "SINCE", "DETAIL"])
    if op == "firmware.remove":
        return f"firmware #{result['id']} {result['name']} removed"
    if op in ("firmware.list", "diagnostics.list", "logs.list"):
        return _table(
            [
                (
                    f["id"],
                    f["name"],
                    f["size"],
                    f["charger_id"],
                    _time(f["created_at"]),
                    f["sha256"][:16],
                )
                for f in result
            ],
            ["ID", "NAME", "BYTES", "CHARGER", "ADDED", "SHA256"],
        )
    if op == "quarantine.list":
        return _table(
            [
                (
                    q["id"],
                    _time(q["at"]),
                    q.get("kind", "refused"),
                    q["charger_id"],
                    q["unique_id"],
                    q["action"],
                    q["transaction_id"],
                    q["error"],
                )
                for q in result
            ],
            ["ID", "AT", "KIND", "CHARGER", "MESSAGE", "ACTION", "TX", "ERROR"],
        )
    if op == "commands.list":
        return human.command_rows(result)
    if op == "chargers.health":
        return human.health_rows(result)
    if op == "profiles.list":
        return _table(
            [
                (
                    p["profile_id"],
                    p["connector_id"],
                    p["purpose"],
                    p["stack_level"],
                    p["profile"]["chargingProfileKind"],
                    p["profile"]["chargingSchedule"]["chargingRateUnit"],
                    " ".join(
                        f"{q['startPeriod']}s:{q['limit']:g}"
                        for q in p["profile"]["chargingSchedule"]["chargingSchedulePeriod"]
                    ),
                    p["status"],
                    _time(p["sent_at"]),
                    _time(p["cleared_at"]),
                )
                for p in result
            ],
            [
                "ID",
                "CONN",
                "PURPOSE",
                "STACK",
                "KIND",
                "UNIT",
                "PERIODS",
                "ANSWER",
                "SENT",
                "CLEARED",
            ],
        )
    if op == "local_list.sync":
        return _table(
            [
                (
                    r["charger_id"],
                    r["result"],
                    r["version"],
                    r["update_type"],
                    r["messages"],
                    r["entries"],
                    r["detail"],
                )
                for r in result
            ],
            ["CHARGER", "RESULT", "VERSION", "UPDATE", "MESSAGES", "ENTRIES", "DETAIL"],
        )
    if op in ("reservations.list", "reservations.add", "reservations.cancel"):
        held = result if isinstance(result, list) else [result]
        return _table(
            [
                (
                    r["reservation_id"],
                    r["charger_id"],
                    r["connector_id"],
                    r["id_tag"],
                    r["state"],
                    r["answer"],
                    _time(r["expiry_date"]),
                    r["transaction_id"],
                    r["error"],
                )
                for r in held
            ],
            ["ID", "CHARGER", "CONN", "TAG", "STATE", "ANSWER", "EXPIRY", "TX", "ERROR"],
        )
    if op in (
        "command",
        "firmware.update",
        "diagnostics.get",
        "logs.get",
        "firmware.update_signed",
    ):
        lines = [f"{result['action']}: {result['status']}"]
        for entry in result.get("configuration", []):
            flag = " (readonly)" if entry["readonly"] else ""
            lines.append(f"  {entry['key']} = {entry['value']}{flag}")
        for key in result.get("unknown_keys", []):
            lines.append(f"  {key}: unknown key")
        if result.get("data") is not None:
            lines.append(f"  data: {result['data']}")
        for key, value in (result.get("details") or {}).items():
            lines.append(f"  {key}: {value}")
        if result.get("warning"):
            lines.append(f"  WARNING: {result['warning']}")
        return "\n".join(lines)
    if op == "certificates.show":
        return _certificates_text(result)
    if op == "status":
        # What was refused, shed or failed since the start first (issue 11).
        protection = result.get("protection") or {}
        notes = [f"! {note}" for note in wire.protection_notes(protection)]
        text = human.status_text({k: v for k, v in result.items() if k != "protection"})
        if protection:
            counters = human.fields(list(human.flatten(protection)))
            text += "\nprotection (counts since the server started):\n" + "\n".join(
                "  " + line for line in counters.splitlines()
            )
        return "\n".join([*notes, text])
    if op == "transactions.show":
        return human.transaction_text(result)
    if op == "chargers.show":
        # What needs the operator's eye first (settings not in effect, pending changes),
        # then the fields, then a table per list.
        return human.detail_text(result)
    if isinstance(result, dict):
        return human.detail_text(result)
    return json.dumps(result, indent=2)


MIN_PASSWORD = 8  # refused below; warned below 16 (OCPP 1.6 security whitepaper: 16-40)


def _precheck(ns: argparse.Namespace) -> list[str]:
    """Refuse (CtlError, exit 2) or warn about arguments a server would take silently."""
    warnings: list[str] = []
    if ns.command == "chargers" and ns.action == "add" and ns.password is not None:
        if len(ns.password) < MIN_PASSWORD:
            raise CtlError(
                2,
                f"a password of {len(ns.password)} characters is too easy to guess: use at "
                f"least {MIN_PASSWORD} (16-40 recommended for security profile 1)",
            )
        if len(ns.password) < 16:
            warnings.append("passwords under 16 characters are weak (16-40 recommended)")
    if ns.command == "tags" and ns.action in ("add", "set") and ns.expiry:
        try:
            expiry = datetime.fromisoformat(ns.expiry.replace("Z", "+00:00"))
        except ValueError:
            raise CtlError(2, f"--expiry {ns.expiry!r} is not an ISO 8601 time") from None
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
        if expiry <= datetime.now(UTC):
            warnings.append(f"tag {ns.id_tag} is already expired ({ns.expiry}): it cannot charge")
    exporting = ns.command == "transactions" and ns.action == "export"
    start, end = (ns.start_from, ns.start_to) if exporting else (None, None)
    if start and end and datetime.fromisoformat(start) >= datetime.fromisoformat(end):
        raise CtlError(2, f"--from {ns.start_from} is not before --to {ns.start_to}")
    return warnings


def _split_json_flag(argv: Sequence[str]) -> tuple[list[str], bool]:
    """--json anywhere on the line (before a lone --), not only before the command."""
    args, as_json, literal = [], False, False
    for arg in argv:
        if arg == "--" and not literal:
            literal = True
        elif arg == "--json" and not literal:
            as_json = True
            continue
        args.append(arg)
    return args, as_json


def _fail(exc: CtlError, as_json: bool) -> int:
    message = exc.message
    if as_json:
        code, _, text = message.partition(": ")
        known = code in EXIT and text
        error = {"code": code if known else _CODE_OF_EXIT.get(exc.code, "error")}
        error["message"] = text if known else message
        sys.stderr.write(json.dumps({"error": error}) + "\n")
    else:
        sys.stderr.write(f"voltaro ctl: {message}\n")
    return exc.code


def main(argv: Sequence[str] | None = None) -> int:
    args, as_json = _split_json_flag(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args, as_json)
    except BrokenPipeError:
        # `voltaro ctl ... | head`: the reader is gone; end quietly (no traceback, no
        # "server not running"), and keep Python from complaining again at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _hidden(argv: list[str]) -> int | None:
    """`completion SHELL` (print the script) and `_ids KIND` (for the script)."""
    if len(argv) == 2 and argv[0] == "completion" and argv[1] in ("bash", "zsh"):
        from voltaro.control.completion import completion_script

        print(completion_script(argv[1], HELP), end="")
        return 0
    if len(argv) == 2 and argv[0] == "_ids" and argv[1] in ("chargers", "tags"):
        try:
            client = Client(os.environ.get("VOLTARO_CONTROL_SOCKET") or default_control_socket())
            rows = client.request(f"{argv[1]}.list", {})
            client.close()
        except (CtlError, OSError, wire.WireError):
            return 0  # no server: nothing to offer
        key = "charger_id" if argv[1] == "chargers" else "id_tag"
        print("\n".join(str(r[key]) for r in rows))
        return 0
    return None


def _main(argv: list[str], as_json: bool) -> int:
    hidden = _hidden(argv)
    if hidden is not None:
        return hidden
    parser = _parser()
    if as_json:
        parser.set_defaults(json=True)
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if ns.command == "certificates" and ns.action == "hash":
        try:
            computed = _certificate_hash(ns)
        except CtlError as exc:
            return _fail(exc, ns.json)
        print(json.dumps(computed, indent=2) if ns.json else human.fields(list(computed.items())))
        return 0
    try:
        for warning in _precheck(ns):
            sys.stderr.write(f"voltaro ctl: warning: {warning}\n")
        client = Client(ns.socket, wait=ns.wait)
    except CtlError as exc:
        return _fail(exc, ns.json)
    try:
        if ns.command == "events":
            subscribe: dict[str, Any] = {"frames": ns.frames}
            if ns.charger_id is not None:
                subscribe["charger_id"] = ns.charger_id
            if ns.kinds:
                subscribe["kinds"] = ns.kinds
            client.request("subscribe", subscribe)
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
                        at = _time(frame.get("at")) or frame.get("at")
                        print(f"{at} {frame['event']} {data}", flush=True)
            except KeyboardInterrupt:
                return 0
            return 0
        if ns.command == "transactions" and ns.action == "export":
            _export(client, ns)
            return 0
        if ns.command == "certificates" and ns.action == "list" and not ns.json:
            op, args = _request_for(ns)
            result = client.request(op, args)
            print(_human(op, result))
            # The numbers `certificates delete --index` takes.
            print(
                _certificates_text(
                    client.request("certificates.show", {"charger_id": ns.charger_id})
                )
            )
            return 0
        if ns.command in ("diagnostics", "logs") and ns.action == "fetch":
            fetched = _fetch(client, ns.file_id, ns.output)
            print(json.dumps(fetched, indent=2) if ns.json else f"written to {fetched['written']}")
            return 0
        op, args = _request_for(ns)
        if ns.request_id is not None:
            if op != "command":
                raise CtlError(2, "--request-id is for commands to a charger")
            args["request_id"] = ns.request_id
        result = client.request(op, args)
        print(json.dumps(result, indent=2) if ns.json else _human(op, result))
        if op == "local_list.sync" and not all(r["ok"] for r in result):
            return 1  # some charger's list is not in sync: scripts must see it
        return 0
    except CtlError as exc:
        return _fail(exc, ns.json)
    except BrokenPipeError:
        raise
    except (OSError, wire.WireError) as exc:
        sys.stderr.write(f"voltaro ctl: connection to the server failed: {exc}\n")
        return EXIT_NO_SERVER
    finally:
        client.close()
