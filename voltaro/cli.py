"""The ``voltaro`` command: serve, db upgrade, ctl, console.

Every setting can come from the TOML file, ``VOLTARO_*`` variables or these flags (flags
win; voltaro.settings does the merge). A bad value prints one line naming the setting
and exits with status 2, like an argparse usage error. A server that cannot start (a
port in use, a live control socket, an unreachable database) prints one line and exits
with status 1; the traceback is printed too only with ``--log-level DEBUG``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

import trio

from voltaro.settings import Settings, SettingsError, load_settings
from voltaro.startup import StartupError, find_exception

EXIT_CANNOT_START = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: a subcommand whose implementation is missing

# Flags of `serve` -> setting names (one name everywhere: --http-port is http_port).
_SERVE_FLAGS = (
    "host",
    "port",
    "tls_port",
    "tls_certfile",
    "tls_keyfile",
    "tls_client_ca",
    "ca_certfile",
    "ca_keyfile",
    "ca_hook",
    "certificate_organization",
    "database_url",
    "control_socket",
    "http_host",
    "http_port",
    "log_level",
    "log_format",
    "node_id",
    "node_lease_seconds",
    "node_address",
)
# Switches of `serve` (no value: present = true) -> setting names.
_SERVE_SWITCHES = ("cluster",)

# Subcommands implemented elsewhere: name -> (module, function, what it does).
_DELEGATED = {
    "ctl": ("voltaro.control.ctl", "main", "operate a running server over its control socket"),
    "console": ("console.__main__", "main", "the live terminal console"),
}


def _version() -> str:
    try:
        return importlib.metadata.version("voltaro")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voltaro", description="Voltaro, an OCPP 1.6J Central System."
    )
    parser.add_argument("--version", action="version", version=f"voltaro {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    defaults = Settings()
    serve = commands.add_parser(
        "serve",
        help="run the Central System",
        description="Run the Central System until SIGTERM or Ctrl-C.",
        epilog="Every setting is also a TOML key and a VOLTARO_<NAME> environment variable "
        "(precedence: defaults < TOML file < environment < flags); the full table with "
        "defaults is in README.md, Configuration. Exit status: 0 stopped, 1 cannot start "
        "(port in use, database unreachable, ...), 2 bad setting.",
    )
    serve.add_argument(
        "--config", metavar="FILE", help="TOML settings file (also VOLTARO_CONFIG; default: none)"
    )
    for name in _SERVE_FLAGS:
        serve.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            metavar=name.split("_")[-1].upper(),
            help=f"setting {name}, also VOLTARO_{name.upper()} "
            f"(default: {getattr(defaults, name)})",
        )
    for name in _SERVE_SWITCHES:
        serve.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            action="store_const",
            const=True,
            help=f"setting {name} = true, also VOLTARO_{name.upper()} "
            f"(default: {str(getattr(defaults, name)).lower()})",
        )

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_commands.add_parser("upgrade", help="bring the database to the current schema")
    upgrade.add_argument("--config", metavar="FILE", help="TOML settings file")
    upgrade.add_argument(
        "--database-url",
        dest="database_url",
        metavar="URL",
        help=f"setting database_url, also VOLTARO_DATABASE_URL (default: {defaults.database_url})",
    )

    ca = commands.add_parser("ca", help="the local CA that signs charger certificates")
    ca_commands = ca.add_subparsers(dest="ca_command", metavar="ACTION", required=True)
    init = ca_commands.add_parser(
        "init",
        help="create a CA key and certificate (the key file is mode 0600, never printed)",
        description="Create a CA (EC P-256 key, self-signed certificate) for SignCertificate; "
        "then set ca_certfile and ca_keyfile to the printed paths. Existing files are "
        "never overwritten.",
    )
    init.add_argument("--dir", default=".", help="where to write ca.pem and ca.key (.)")
    init.add_argument("--cn", default="Voltaro Charger CA", help="the CA's common name")
    init.add_argument("--org", default="", help="the CA's organisation (O), e.g. the CPO")
    init.add_argument("--days", type=int, default=3650, help="validity in days (3650)")

    for name, (_, _, summary) in _DELEGATED.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def _load(args: argparse.Namespace, flags: Sequence[str]) -> Settings:
    overrides = {name: getattr(args, name, None) for name in flags}
    return load_settings(config_file=args.config, overrides=overrides)


def _delegate(name: str, argv: list[str]) -> int:
    module_name, function, _ = _DELEGATED[name]
    try:
        module = importlib.import_module(module_name)
        entry: Callable[[list[str]], int] = getattr(module, function)
    except (ImportError, AttributeError):
        print(f"voltaro {name}: not available in this installation", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return int(entry(argv) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in _DELEGATED:
        # Their own parsers own every option after the subcommand name.
        return _delegate(args_list[0], args_list[1:])
    args = _parser().parse_args(args_list)
    if args.command == "ca":
        return init_ca(args)
    try:
        if args.command == "serve":
            settings = _load(args, (*_SERVE_FLAGS, *_SERVE_SWITCHES))
        else:
            settings = _load(args, ("database_url",))
    except SettingsError as exc:
        print(f"voltaro: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "serve":
        return serve(settings)
    return upgrade_database(settings)


def init_ca(args: argparse.Namespace) -> int:
    from voltaro.service.authority import CaError, create_ca

    try:
        cert, key = create_ca(args.dir, common_name=args.cn, organization=args.org, days=args.days)
    except CaError as exc:
        print(f"voltaro ca init: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    print(f"CA certificate: {cert}")
    print(f"CA key (mode 0600, keep it secret): {key}")
    print(f"set: ca_certfile = {cert!r}, ca_keyfile = {key!r}")
    return 0


def serve(settings: Settings) -> int:
    from voltaro import app
    from voltaro.gc_tuning import tune_for_long_lived_connections
    from voltaro.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    tune_for_long_lived_connections()
    try:
        trio.run(_serve_until_signalled, settings, app.run)
    except BaseException as exc:
        return _cannot_start(exc, settings)
    return 0


def _cannot_start(exc: BaseException, settings: Settings) -> int:
    """One line for a start-up failure the operator can fix; anything else propagates."""
    reason = find_exception(exc, StartupError)
    if reason is None:
        raise exc
    if settings.log_level == "DEBUG":
        traceback.print_exception(exc)
    print(f"voltaro: {reason}", file=sys.stderr)
    return EXIT_CANNOT_START


async def _serve_until_signalled(settings: Settings, run: Callable[..., object]) -> None:
    stop = trio.Event()
    # SIGINT too: trio would otherwise raise KeyboardInterrupt somewhere arbitrary; a
    # signal starts the graceful shutdown, a second one cuts it short.
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for _ in signals:
                    if stop.is_set():
                        nursery.cancel_scope.cancel()
                        return
                    stop.set()

            nursery.start_soon(watch)
            await run(settings, stop=stop)  # type: ignore[misc]
            nursery.cancel_scope.cancel()


def upgrade_database(settings: Settings) -> int:
    from voltaro.app import upgrade_database as upgrade
    from voltaro.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    try:
        before, after = upgrade(settings)
    except StartupError as exc:
        return _cannot_start(exc, settings)
    if before is None:
        print(f"voltaro: created the schema in an empty database (revision {after})")
    elif before != after:
        print(f"voltaro: upgraded the database from revision {before} to {after}")
    else:
        print(f"voltaro: the database is already at the current schema (revision {after})")
    return 0
