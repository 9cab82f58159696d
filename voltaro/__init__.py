"""Voltaro: an OCPP 1.6J Central System on trio."""

from __future__ import annotations

__version__ = "0.1.0"
