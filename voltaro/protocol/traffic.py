"""What every charger connection of one server sent and received, counted cheaply.

Frames by direction, OCPP-J message type and action, and how long the charger's CALLs
waited for their answer, per action (issue 19). The counts are plain dicts updated on
the trio thread by every connection (one ``Traffic`` per server, shared like the
CallErrorLog); voltaro/service/metrics.py turns them into Prometheus series at scrape
time. Action names come from chargers, so anything that is not an OCPP 1.6 action is
counted as "unknown": the number of keys stays bounded whatever a charger sends.
"""

from __future__ import annotations

from ocpp.v16.enums import Action

from voltaro.instruments import Histogram

KNOWN_ACTIONS = frozenset(a.value for a in Action)

# OCPP-J §4.1.3 MessageTypeId -> the label; None is a frame that is no valid message.
MESSAGE_TYPES = {2: "call", 3: "result", 4: "error", None: "invalid"}


class Traffic:
    __slots__ = ("answers", "frames")

    def __init__(self) -> None:
        # (direction "in"/"out", message type id or None, action label) -> frames
        self.frames: dict[tuple[str, int | None, str], int] = {}
        # action label -> seconds from reading a CALL to sending its answer
        self.answers: dict[str, Histogram] = {}

    def frame(self, direction: str, kind: int | None, action: str | None) -> None:
        if action is None:
            label = "none"
        elif action in KNOWN_ACTIONS:
            label = action
        else:
            label = "unknown"
        key = (direction, kind if kind in MESSAGE_TYPES else None, label)
        frames = self.frames
        frames[key] = frames.get(key, 0) + 1

    def answered(self, action: str, seconds: float) -> None:
        label = action if action in KNOWN_ACTIONS else "unknown"
        histogram = self.answers.get(label)
        if histogram is None:
            histogram = self.answers[label] = Histogram()
        histogram.observe(seconds)
