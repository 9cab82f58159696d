"""Why the server could not start, said in one line that names the setting.

The composition root turns the failures an operator can fix (a port in use, a live
control socket, an unreachable database) into :class:`StartupError`; ``voltaro serve``
prints its message and exits 1, with the traceback only at ``--log-level DEBUG``.
"""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class StartupError(Exception):
    """The server cannot start; the message says what, where and which setting."""


def find_exception(exc: BaseException, kind: type[E]) -> E | None:
    """The first ``kind`` in ``exc``, looking through exception groups and causes."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        if current.__cause__ is not None:
            stack.append(current.__cause__)
    return None


def os_reason(exc: OSError) -> str:
    """``address already in use`` rather than ``[Errno 98] Address already in use``."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]
