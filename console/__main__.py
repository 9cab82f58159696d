"""`voltaro console [--socket PATH]` (also `python -m console`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from console.link import default_socket


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="voltaro console", description="Live console of a running Voltaro server."
    )
    parser.add_argument("--socket", default=default_socket(), help="control socket path")
    args = parser.parse_args(argv)
    from console.app import ConsoleApp

    ConsoleApp(args.socket).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
