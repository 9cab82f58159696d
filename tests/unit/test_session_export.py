"""The CSV export's cells (voltaro/domain/session_export.py): pure rules, no database."""

from __future__ import annotations

from voltaro.domain.session_export import HEADER, cell, csv_row


def test_cells() -> None:
    assert cell("energy_wh", None) == ""
    assert cell("energy_wh", 1500) == "1500"
    assert cell("meter_start", -5) == "-5"  # numbers are never guarded
    assert cell("last_meter_wh", 12.0) == "12"
    assert cell("id_tag", "04AB") == "04AB"
    for risky in ("=HYPERLINK(1)", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert cell("id_tag", risky) == "'" + risky
    assert cell("end_reason", "superseded by a new start") == "superseded by a new start"


def test_row_follows_the_header() -> None:
    view = {"transaction_id": 7, "charger_id": "CP-1", "meter_start": 0, "meter_stop": 10}
    row = csv_row(view)
    assert len(row) == len(HEADER)
    assert dict(zip(HEADER, row, strict=True))["meter_stop_wh"] == "10"
    assert dict(zip(HEADER, row, strict=True))["stop_time"] == ""
