from __future__ import annotations


class AlreadyExists(Exception):
    """The record to add is there already."""


class NotFound(Exception):
    """A record the operation needs does not exist."""
