"""Zip archives (plain zip, 3MF, Office documents) checked before they are accepted, without
extracting them.

What is read: the end-of-central-directory record (entry count and directory size, checked
before anything else is parsed), then the central directory. Refused with `UnsafeArchive`:

- `zip_bomb`: too many entries, a central directory too large, a total uncompressed size over
  the cap, an entry (or the whole archive) whose declared compression ratio is over the cap,
  entries whose data overlap (the "overlapping files" bomb), archives nested too deep;
- `archive_path_traversal`: an entry name that is absolute (`/x`, `\\x`, `C:x`), climbs out
  (`..`), holds a NUL byte, or is a symbolic link.

Contents are read only where they must be (the first bytes of each entry, to find nested
archives; a nested archive itself), always through streaming decompression that stops at the
size the header declared: a lying header cannot make it inflate more. Everything here is
blocking: call it from a worker thread.
"""

from __future__ import annotations

import itertools
import stat
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from core.errors import ValidationFailed

MAX_ENTRIES = 10_000
MAX_CENTRAL_DIRECTORY_BYTES = 4 * 1024 * 1024
MAX_UNCOMPRESSED_BYTES = 2 * 1024**3
MAX_RATIO = 100
# Entries smaller than this are not held to the ratio cap: a few KiB of XML squeeze well.
RATIO_FLOOR_BYTES = 1024 * 1024
MAX_DEPTH = 2  # an archive inside an archive inside an archive is refused
MAX_NESTED_BYTES = 64 * 1024 * 1024  # a nested archive is copied out to be read: up to this

ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_LOCAL_HEADER_SIZE = 30
_MAX_COMMENT = 0xFFFF
_READ = 64 * 1024


class UnsafeArchive(ValidationFailed):
    """The archive could hurt whoever opens it (422): `zip_bomb` or `archive_path_traversal`."""

    default_code = "zip_bomb"
    default_message = "The archive is not safe to open"


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = MAX_ENTRIES
    max_central_directory_bytes: int = MAX_CENTRAL_DIRECTORY_BYTES
    max_uncompressed_bytes: int = MAX_UNCOMPRESSED_BYTES
    max_ratio: float = MAX_RATIO
    ratio_floor_bytes: int = RATIO_FLOOR_BYTES
    max_depth: int = MAX_DEPTH
    max_nested_bytes: int = MAX_NESTED_BYTES


@dataclass(frozen=True)
class ArchiveReport:
    """What a safe archive holds: entry names (files and folders), their declared total."""

    names: tuple[str, ...]
    entries: int
    uncompressed_bytes: int
    nested_archives: int
    encrypted: bool

    def facts(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "uncompressed_bytes": self.uncompressed_bytes,
            "nested_archives": self.nested_archives,
            "encrypted": self.encrypted,
        }


def is_zip(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC) or head.startswith(_EMPTY_ZIP_MAGIC)


def check_zip(path: Path, *, limits: ArchiveLimits | None = None) -> ArchiveReport:
    """Check the zip file at `path`; raise `UnsafeArchive`, or `zipfile.BadZipFile` when it is
    no zip at all."""
    with path.open("rb") as file:
        return _check(file, path.stat().st_size, limits or ArchiveLimits(), depth=0)


def _bomb(message: str, **details: Any) -> UnsafeArchive:
    return UnsafeArchive("zip_bomb", message, details=details)


def _check(file: IO[bytes], size: int, limits: ArchiveLimits, *, depth: int) -> ArchiveReport:
    entries, directory_bytes = _directory_size(file, size)
    if entries > limits.max_entries:
        raise _bomb(
            f"The archive has {entries} entries (at most {limits.max_entries})",
            reason="too_many_entries",
            entries=entries,
        )
    if directory_bytes > limits.max_central_directory_bytes:
        raise _bomb("The archive's directory is too large", reason="directory_too_large")
    file.seek(0)
    with zipfile.ZipFile(file) as archive:
        infos = archive.infolist()
        if len(infos) > limits.max_entries:  # the count in the end record can lie
            raise _bomb(
                f"The archive has {len(infos)} entries (at most {limits.max_entries})",
                reason="too_many_entries",
                entries=len(infos),
            )
        for info in infos:
            check_entry_name(info)
        total = _check_sizes(infos, size, limits)
        _check_overlaps(infos)
        nested, nested_bytes = _check_nested(archive, infos, limits, depth=depth, budget=total)
    return ArchiveReport(
        names=tuple(info.filename for info in infos),
        entries=len(infos),
        uncompressed_bytes=total + nested_bytes,
        nested_archives=nested,
        encrypted=any(info.flag_bits & 0x1 for info in infos),
    )


def _directory_size(file: IO[bytes], size: int) -> tuple[int, int]:
    """Entry count and central directory size from the end record (zip64 aware)."""
    tail_size = min(size, _EOCD.size + _MAX_COMMENT)
    file.seek(size - tail_size)
    tail = file.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise zipfile.BadZipFile("no end of central directory record")
    _, _, _, _, entries, directory_bytes, _, _ = _EOCD.unpack_from(tail, at)
    locator_at = at - _ZIP64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at : locator_at + 4] == b"PK\x06\x07":
        _, _, offset, _ = _ZIP64_LOCATOR.unpack_from(tail, locator_at)
        if 0 <= offset <= size - _ZIP64_EOCD.size:
            file.seek(offset)
            record = file.read(_ZIP64_EOCD.size)
            if record[:4] == b"PK\x06\x06":
                fields = _ZIP64_EOCD.unpack(record)
                entries, directory_bytes = fields[7], fields[8]
    return int(entries), int(directory_bytes)


def check_entry_name(info: zipfile.ZipInfo) -> None:
    """Refuse names that would land outside the folder an archive is extracted into."""
    # zipfile turns "\" into "/" on Windows only; do it everywhere. orig_filename is the name
    # as stored, before zipfile's own clean-up.
    raw = info.orig_filename
    name = raw.replace("\\", "/")
    unsafe = (
        "\0" in raw
        or name.startswith("/")
        or (len(name) > 1 and name[1] == ":")  # C:evil, C:/evil
        or ".." in PurePosixPath(name).parts
    )
    if unsafe:
        raise UnsafeArchive(
            "archive_path_traversal",
            "An entry of the archive points outside it",
            details={"entry": raw[:200]},
        )
    if info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeArchive(
            "archive_path_traversal",
            "The archive holds a symbolic link",
            details={"entry": raw[:200]},
        )


def _check_sizes(infos: list[zipfile.ZipInfo], size: int, limits: ArchiveLimits) -> int:
    total = 0
    for info in infos:
        total += info.file_size
        if total > limits.max_uncompressed_bytes:
            raise _bomb(
                f"The archive unpacks to more than {limits.max_uncompressed_bytes} bytes",
                reason="too_large_uncompressed",
            )
        if info.file_size >= limits.ratio_floor_bytes:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_ratio:
                raise _bomb(
                    f"An entry of the archive is compressed {ratio:.0f} to 1",
                    reason="compression_ratio",
                    entry=info.filename[:200],
                    ratio=round(ratio),
                )
    if total >= limits.ratio_floor_bytes and total / max(size, 1) > limits.max_ratio:
        raise _bomb(
            f"The archive is compressed {total / max(size, 1):.0f} to 1",
            reason="compression_ratio",
            ratio=round(total / max(size, 1)),
        )
    return total


def _check_overlaps(infos: list[zipfile.ZipInfo]) -> None:
    """Entries whose data share bytes (one compressed kernel named many times) are a bomb
    that passes every ratio check. The lower bound of where an entry's data ends is its
    local header, its name and its compressed size (the local extra field is not counted)."""
    ordered = sorted(infos, key=lambda info: info.header_offset)
    for before, after in itertools.pairwise(ordered):
        end = (
            before.header_offset
            + _LOCAL_HEADER_SIZE
            + len(before.orig_filename.encode("utf-8", "surrogateescape"))
            + before.compress_size
        )
        if after.header_offset < end:
            raise _bomb("Entries of the archive overlap", reason="overlapping_entries")


def _check_nested(
    archive: zipfile.ZipFile,
    infos: list[zipfile.ZipInfo],
    limits: ArchiveLimits,
    *,
    depth: int,
    budget: int,
) -> tuple[int, int]:
    """Find archives inside (by their first bytes) and check each; returns how many there
    were and the bytes they unpack to."""
    found = 0
    unpacked = 0
    for info in infos:
        if info.is_dir() or info.file_size < len(ZIP_MAGIC) or info.flag_bits & 0x1:
            continue
        with archive.open(info) as entry:
            head = entry.read(len(ZIP_MAGIC))
        if not is_zip(head):
            continue
        found += 1
        if depth + 1 > limits.max_depth:
            raise _bomb("Archives are nested too deep", reason="nested_too_deep")
        if info.file_size > limits.max_nested_bytes:
            raise _bomb("A nested archive is too large to check", reason="nested_too_large")
        with tempfile.TemporaryFile() as copy:
            for chunk in _inflate(archive, info):
                copy.write(chunk)
            nested_size = copy.tell()
            report = _check(copy, nested_size, limits, depth=depth + 1)
        found += report.nested_archives
        unpacked += report.uncompressed_bytes
        if budget + unpacked > limits.max_uncompressed_bytes:
            raise _bomb(
                f"The archive unpacks to more than {limits.max_uncompressed_bytes} bytes",
                reason="too_large_uncompressed",
            )
    return found, unpacked


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """An entry's bytes, refusing any beyond what its header declared."""
    produced = 0
    with archive.open(info) as entry:
        while chunk := entry.read(_READ):
            produced += len(chunk)
            if produced > info.file_size:
                raise _bomb("An entry holds more than its header says", reason="lying_header")
            yield chunk
