"""The running-server fixture, shared with the end-to-end tests."""

from __future__ import annotations

from tests.e2e.conftest import server

__all__ = ["server"]
