"""Time on the wire: strict when we send, lenient when we receive (OCPP 1.6 §3.14, R98).

We always send UTC ``YYYY-MM-DDTHH:MM:SS(.fff)Z`` (quirk Q4: some chargers reject
``+00:00``). We accept offsets (also short ones like ``+02``), naive times (taken as
UTC, quirk Q3), a space instead of ``T``, and fractional seconds of any length.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_SHORT_OFFSET = re.compile(r"([+-])(\d{2})$")
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_utc(moment: datetime) -> str:
    """Render ``moment`` as UTC with a ``Z`` suffix and millisecond precision when needed."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    if moment.year < 1000:
        # isoformat pads the year to four digits; strftime's %Y does not (glibc).
        if moment.microsecond:
            return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    # isoformat is several times cheaper than strftime (issue 14: a few per message);
    # the "+00:00" it ends with becomes the Z (quirk Q4).
    # Without timespec: "...SS.ffffff+00:00", or "...SS+00:00" when microsecond is 0.
    if moment.microsecond:
        return moment.isoformat()[:-9] + "Z"
    return moment.isoformat()[:-6] + "Z"


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 timestamp from a charger into an aware UTC datetime.

    Raises:
        ValueError: the text is not a date-time in any form we tolerate.
    """
    raw = text.strip()
    if not raw:
        raise ValueError("empty timestamp")
    if raw[-1] in "zZ":
        raw = raw[:-1] + "+00:00"
    raw = _SHORT_OFFSET.sub(r"\1\2:00", raw)
    raw = _LONG_FRACTION.sub(r"\1", raw)  # Python accepts at most 6 fraction digits
    parsed = datetime.fromisoformat(raw)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00+01:00 or 9999-12-31T23:59-05:00: a valid string whose UTC
        # instant lies outside the years 1-9999 that datetime (and the stores) can hold.
        raise ValueError(f"timestamp out of range: {text[:40]!r}") from None


def ensure_utc(moment: datetime) -> datetime:
    """Aware UTC datetime from a possibly naive one (naive values from SQLite are UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
