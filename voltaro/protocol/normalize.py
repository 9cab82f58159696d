"""Repair the field quirks of real chargers before validation (lenient input, R97).

Each repair is for a deviation seen in the field (quirk ids from our requirements
catalogue). Anything we cannot repair still goes to validation and gets the proper
CALLERROR; what we can repair is accepted and stored as the charger meant it.
"""

from __future__ import annotations

from typing import Any


def _round_wh(value: Any) -> Any:
    # Q8/R61: fractional meterStart/meterStop (Wh) would strand the session if refused.
    if isinstance(value, float) and value == value and abs(value) < 2**53:
        return round(value)
    if isinstance(value, str):
        try:
            return round(float(value))
        except ValueError:
            return value
    return value


def _meter_values(value: Any) -> Any:
    # Q6: a single meterValue object instead of an array.
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return value
    repaired = []
    for entry in value:
        if not isinstance(entry, dict):
            repaired.append(entry)
            continue
        entry = dict(entry)
        samples = entry.get("sampledValue")
        if isinstance(samples, dict):
            samples = [samples]
        if isinstance(samples, list):
            fixed = []
            for sample in samples:
                if isinstance(sample, dict) and isinstance(sample.get("value"), int | float):
                    # Q5: the value as a JSON number; 1.6 says it is a string.
                    sample = {**sample, "value": _number_text(sample["value"])}
                fixed.append(sample)
            entry["sampledValue"] = fixed
            if not fixed:
                continue  # Q6: an empty sampledValue array carries nothing: drop it
        repaired.append(entry)
    return repaired


def _number_text(number: int | float) -> str:
    if isinstance(number, bool):
        return str(number).lower()
    if isinstance(number, float) and number.is_integer():
        return str(int(number)) if abs(number) < 1e15 else repr(number)
    return str(number)


def normalize(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A repaired copy of a charger's CALL payload (the original is left untouched)."""
    if action == "StartTransaction" and "meterStart" in payload:
        payload = {**payload, "meterStart": _round_wh(payload["meterStart"])}
    elif action == "StopTransaction":
        payload = dict(payload)
        if "meterStop" in payload:
            payload["meterStop"] = _round_wh(payload["meterStop"])
        if "transactionData" in payload:
            payload["transactionData"] = _meter_values(payload["transactionData"])
            if payload["transactionData"] == []:
                del payload["transactionData"]
    elif action == "MeterValues" and "meterValue" in payload:
        payload = {**payload, "meterValue": _meter_values(payload["meterValue"])}
        if payload["meterValue"] == []:
            # Nothing to store, but still a valid message to answer with {} (Q6, R69).
            payload["meterValue"] = []
    return payload
