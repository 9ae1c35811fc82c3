"""Differences between two versions of a file.

- Text (a `text/*` type, JSON, XML, YAML, CSV...): a unified diff, when both sides are at most
  `MAX_TEXT_BYTES` and decode as UTF-8; both versions must be downloadable (the diff shows
  their content). Bigger: `diff_too_large` (422); not UTF-8: `diff_not_text` (422).
- CAD (kinds the render farm measures): a diff of `FileVersion.metadata` (triangles, bounding
  box, volume, area...), flattened to dotted keys, with the numeric change where both are
  numbers. Metadata is facts, not content, so no scan is needed.
- Anything else: `diff_unsupported` (422).

The text diff runs in a worker thread (difflib is pure CPU).
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from core.errors import ValidationFailed
from core.principal import Principal
from db.models.files import FileVersion
from storage.blobs import BlobStore
from storage.file_access import check_can_read
from storage.versions import check_downloadable, version_of

MAX_TEXT_BYTES = 1024 * 1024
MAX_DIFF_LINES = 20_000
CAD_KINDS = frozenset(
    {"stl", "obj", "ply", "off", "step", "stp", "iges", "igs", "3mf", "glb", "gltf", "dxf"}
)
TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/javascript",
        "application/x-sh",
        "application/sql",
    }
)
TEXT_KINDS = frozenset({"txt", "text", "csv", "json", "xml", "yaml", "md", "gcode", "ini", "toml"})


class DiffKind(StrEnum):
    TEXT = "text"
    METADATA = "metadata"


@dataclass(frozen=True)
class MetadataChange:
    key: str
    before: Any
    after: Any
    delta: float | None  # after - before, when both are numbers


@dataclass(frozen=True)
class VersionDiff:
    kind: DiffKind
    from_version: int
    to_version: int
    identical: bool
    unified: str | None = None  # text diffs
    changes: list[MetadataChange] = field(default_factory=list)  # metadata diffs


def _is_cad(version: FileVersion) -> bool:
    return version.kind.lower() in CAD_KINDS


def _is_text(version: FileVersion) -> bool:
    mime = version.mime_type.split(";", 1)[0].strip().lower()
    return (
        mime.startswith("text/")
        or mime in TEXT_TYPES
        or mime.endswith(("+json", "+xml"))
        or version.kind.lower() in TEXT_KINDS
    )


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"bbox": {"min": [0, 0]}}` -> `{"bbox.min": [0, 0]}` (lists stay whole)."""
    flat: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            flat.update(flatten(item, f"{path}."))
        else:
            flat[path] = item
    return flat


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def metadata_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[MetadataChange]:
    old, new = flatten(before), flatten(after)
    changes = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        x, y = _number(a), _number(b)
        delta = y - x if x is not None and y is not None else None
        changes.append(MetadataChange(key=key, before=a, after=b, delta=delta))
    return changes


def _check_text_size(version: FileVersion) -> None:
    if version.size > MAX_TEXT_BYTES:
        raise ValidationFailed(
            "diff_too_large",
            f"Text diffs are limited to {MAX_TEXT_BYTES} bytes per version",
            details={"version": version.number, "size": version.size, "limit": MAX_TEXT_BYTES},
        )


async def _read_text(store: BlobStore, version: FileVersion) -> list[str]:
    parts: list[bytes] = []
    async with aclosing(await store.open(version.blob_key)) as chunks:
        async for chunk in chunks:
            parts.append(chunk)
    try:
        text = b"".join(parts).decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed(
            "diff_not_text", "The version is not UTF-8 text", details={"version": version.number}
        ) from None
    return text.splitlines(keepends=True)


def _unified(a: list[str], b: list[str], name: str, x: int, y: int) -> str:
    lines = difflib.unified_diff(a, b, fromfile=f"{name}@v{x}", tofile=f"{name}@v{y}")
    out: list[str] = []
    for count, line in enumerate(lines):
        if count >= MAX_DIFF_LINES:
            out.append(f"... diff truncated after {MAX_DIFF_LINES} lines\n")
            break
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


async def diff_versions(
    *, principal: Principal, file_id: UUID, from_number: int, to_number: int, store: BlobStore
) -> VersionDiff:
    file = await check_can_read(principal, file_id)
    before = await version_of(file, from_number)
    after = await version_of(file, to_number)
    if _is_cad(before) and _is_cad(after):
        changes = metadata_changes(before.metadata, after.metadata)
        return VersionDiff(
            kind=DiffKind.METADATA,
            from_version=before.number,
            to_version=after.number,
            identical=before.blob_key == after.blob_key,
            changes=changes,
        )
    if _is_text(before) and _is_text(after):
        check_downloadable(before)
        check_downloadable(after)
        _check_text_size(before)
        _check_text_size(after)
        if before.blob_key == after.blob_key:
            return VersionDiff(
                kind=DiffKind.TEXT,
                from_version=before.number,
                to_version=after.number,
                identical=True,
                unified="",
            )
        a = await _read_text(store, before)
        b = await _read_text(store, after)
        unified = await asyncio.to_thread(_unified, a, b, file.name, before.number, after.number)
        return VersionDiff(
            kind=DiffKind.TEXT,
            from_version=before.number,
            to_version=after.number,
            identical=False,
            unified=unified,
        )
    raise ValidationFailed(
        "diff_unsupported",
        "Diffs are for text files and for CAD models (their measurements)",
        details={"from_kind": before.kind, "to_kind": after.kind},
    )
