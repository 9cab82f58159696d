"""The CSV export of charging sessions for billing: its columns and one row per session.

One definition for both producers, ``voltaro ctl transactions export`` and
``GET /transactions.csv``: each turns a session's JSON view (service/views.py
``transaction_view``, the same fields ctl reads over the control socket) into a row
here, so the two files are byte for byte the same. Column meanings are documented in
docs/reconciliation.md ("CSV export"); the order is part of the interface.

Text a charger or an operator chose (id tags, reasons) may begin with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return, which spreadsheet programs run as a formula
(CSV injection, OWASP): such a cell is written with a leading ``'``. Numbers and times
are never changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# (column, the view's field)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("transaction_id", "transaction_id"),
    ("charger_id", "charger_id"),
    ("connector_id", "connector_id"),
    ("id_tag", "id_tag"),
    ("id_tag_status", "id_tag_status"),
    ("start_time", "start_time"),
    ("stop_time", "stop_time"),
    ("meter_start_wh", "meter_start"),
    ("meter_stop_wh", "meter_stop"),
    ("energy_wh", "energy_wh"),
    ("energy_flag", "energy_flag"),
    ("state", "state"),
    ("stop_reason", "stop_reason"),
    ("stop_id_tag", "stop_id_tag"),
    ("end_reason", "end_reason"),
    ("ended_at", "ended_at"),
    ("closed_by", "closed_by"),
)

HEADER: tuple[str, ...] = tuple(column for column, _ in COLUMNS)

# Fields whose text comes from a charger or a person (never a number or a time).
_FREE_TEXT = frozenset(
    {"charger_id", "id_tag", "stop_reason", "stop_id_tag", "end_reason", "closed_by"}
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(field: str, value: Any) -> str:
    """One CSV cell: empty for a missing value, integers as digits, text as is (guarded
    against formula injection for free text)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    if field in _FREE_TEXT and text.startswith(_FORMULA_START):
        return "'" + text
    return text


def csv_row(view: Mapping[str, Any]) -> list[str]:
    """The export row of one session, from its JSON view."""
    return [cell(field, view.get(field)) for _, field in COLUMNS]
