"""Sortable ids: UUIDv7 (time-ordered, so primary keys and event ids sort by creation)."""

from __future__ import annotations

import uuid

import uuid_utils


def new_id() -> uuid.UUID:
    """A new UUIDv7 as a standard-library UUID (what the ORM and JSON expect)."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def new_id_str() -> str:
    return str(new_id())
