"""The OCPP 1.6J protocol layer: the only package that imports the `ocpp` library."""

from __future__ import annotations

from voltaro.protocol.connection import OcppConnection
from voltaro.protocol.rpc import ConnectionLimits
from voltaro.protocol.validation import warm_up

__all__ = ["ConnectionLimits", "OcppConnection", "warm_up"]
