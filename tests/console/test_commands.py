"""The console's command forms (pure, no Textual)."""

from __future__ import annotations

import pytest

from console.commands import BY_ACTION, FormError, build_args, is_destructive
from voltaro.control import wire


def test_command_forms() -> None:
    spec = BY_ACTION["availability"]
    args = build_args(spec, {"connector_id": "0", "type": "inoperative"})
    assert args == {"connector_id": 0, "type": "Inoperative"}
    assert is_destructive(spec, args)
    with pytest.raises(FormError):
        build_args(BY_ACTION["unlock"], {"connector_id": "one"})
    assert build_args(BY_ACTION["get-config"], {"keys": "A, B"}) == {"keys": ["A", "B"]}
    assert BY_ACTION["hard-reset"].role() is wire.Role.ADMIN
