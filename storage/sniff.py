"""What a file is, by its bytes: the kind of an upload, checked against its name and the
allowlist.

Magic numbers of the common binary formats (PDF, images, zip, and whatever else might be sent:
executables, media) come from `filetype`, a pure-Python library that reads only the first
bytes. It was chosen over python-magic because it needs no system library (libmagic): the
embedded mode runs with nothing but Python, and no C parser of a few hundred file formats is
fed untrusted uploads. The CAD formats, which no such library knows well, are recognised by
checks of our own:

- STL: binary when the size is exactly 84 + 50 * n for the n the header declares (the
  80-byte header may start with `solid`, see angle_block.STL); ASCII when it starts with
  `solid` and holds facets (or is an empty solid) and is text;
- OBJ (statement keywords), PLY (`ply` + `format ascii|binary_*`), STEP (`ISO-10303-21;`),
  IGES (80-column records with the section letter in column 73), DXF (ASCII group codes
  `0`/`SECTION`, or the binary sentinel), glTF (JSON with an `asset` object), GLB (the `glTF`
  magic with the file's own length in its header);
- zip family, by the central directory: 3MF (`3D/3dmodel.model`), Office Open XML
  (`[Content_Types].xml` and a `word/`, `xl/` or `ppt/` part), else plain zip; every one is
  checked by `storage.archives` (zip bombs, path traversal).

The kind must agree with the file name's extension (`FileTypeMismatch`, 415) and be on the
allowlist (`FileTypeNotAllowed`, 415). A name without an extension takes the kind found; text
formats are also plain text, so `notes.txt` holding OBJ statements is accepted as text.
Everything here is blocking: run it in a worker thread.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import filetype

from core.errors import UnsupportedMediaType
from storage.archives import ArchiveLimits, UnsafeArchive, check_zip, is_zip

HEAD_BYTES = 64 * 1024
TAIL_BYTES = 8 * 1024
# A glTF JSON file up to this size is parsed whole; a larger one is judged by its head.
GLTF_PARSE_LIMIT = 16 * 1024 * 1024
STL_HEADER = 80
STL_TRIANGLE = 50

MIME_TYPES: dict[str, str] = {
    "stl": "model/stl",
    "obj": "model/obj",
    "ply": "model/x-ply",
    "step": "model/step",
    "iges": "model/iges",
    "3mf": "model/3mf",
    "glb": "model/gltf-binary",
    "gltf": "model/gltf+json",
    "dxf": "image/vnd.dxf",
    "pdf": "application/pdf",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "zip": "application/zip",
    "text": "text/plain",
}
ALLOWED_KINDS = frozenset(MIME_TYPES)
ZIP_KINDS = frozenset({"zip", "3mf", "docx", "xlsx", "pptx"})
# Formats that are text: a name that says plain text accepts them as text.
TEXT_KINDS = frozenset({"text", "stl", "obj", "ply", "step", "iges", "dxf", "gltf"})

EXTENSION_KINDS: dict[str, str] = {
    "stl": "stl",
    "obj": "obj",
    "ply": "ply",
    "step": "step",
    "stp": "step",
    "p21": "step",
    "iges": "iges",
    "igs": "iges",
    "3mf": "3mf",
    "glb": "glb",
    "gltf": "gltf",
    "dxf": "dxf",
    "pdf": "pdf",
    "png": "png",
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "jpe": "jpeg",
    "gif": "gif",
    "webp": "webp",
    "docx": "docx",
    "xlsx": "xlsx",
    "pptx": "pptx",
    "zip": "zip",
    **dict.fromkeys(
        ("txt", "text", "csv", "tsv", "md", "log", "json", "yaml", "yml", "ini", "cfg"), "text"
    ),
    **dict.fromkeys(("gcode", "nc", "ngc", "tap", "scad"), "text"),  # machine and CAD scripts
}

# Client-declared types that name one kind; others (application/octet-stream, vendor types
# browsers make up for CAD files) say nothing and are ignored.
_CLAIMED_KINDS: dict[str, str] = {
    mime: kind for kind, mime in MIME_TYPES.items() if kind not in ("text", "zip")
} | {
    "image/jpg": "jpeg",
    "image/pjpeg": "jpeg",
    "application/x-pdf": "pdf",
    "application/sla": "stl",
    "application/vnd.ms-pki.stl": "stl",
    "model/x.stl-binary": "stl",
    "model/x.stl-ascii": "stl",
    "application/step": "step",
    "application/iges": "iges",
    # Known, never allowed: contradicts every kind.
    "application/x-msdownload": "",
    "application/x-executable": "",
}


class FileTypeMismatch(UnsupportedMediaType):
    """The bytes are not what the name (or the declared type) says."""

    default_code = "file_type_mismatch"
    default_message = "The file's content does not match its name"


class FileTypeNotAllowed(UnsupportedMediaType):
    """The bytes are of a kind this service does not accept."""

    default_code = "file_type_not_allowed"
    default_message = "Files of this type are not accepted"


@dataclass(frozen=True)
class TypeInfo:
    """`kind` is one of `ALLOWED_KINDS`; `facts` are cheap facts read on the way (STL
    encoding and triangle count, PLY format and counts, STEP schema, archive sizes...)."""

    kind: str
    mime_type: str
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Found:
    kind: str
    facts: dict[str, Any] = field(default_factory=dict)
    mime_type: str | None = None  # for kinds outside the allowlist


def extension_of(filename: str) -> str:
    suffix = PurePath(filename.replace("\\", "/")).suffix
    return suffix[1:].lower()


def sniff_file(
    path: Path,
    *,
    filename: str,
    claimed_type: str | None = None,
    archive_limits: ArchiveLimits | None = None,
) -> TypeInfo:
    """Detect the kind of the file at `path` and check it against its name and the allowlist.
    Raises `FileTypeMismatch`, `FileTypeNotAllowed` or `UnsafeArchive`."""
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(HEAD_BYTES)
        if size > HEAD_BYTES:
            file.seek(max(HEAD_BYTES, size - TAIL_BYTES))
            tail = file.read(TAIL_BYTES)
        else:
            tail = b""
    extension = extension_of(filename)
    expected = EXTENSION_KINDS.get(extension) if extension else None
    found = _detect(path, head, tail, size, archive_limits, expected=expected)
    if found.kind not in ALLOWED_KINDS:
        raise FileTypeNotAllowed(
            details={"detected": found.mime_type or found.kind, "filename": filename[:255]}
        )
    kind = found.kind
    if extension:
        if expected == "text" and found.kind in TEXT_KINDS:
            kind = "text"
        elif expected != found.kind:
            raise FileTypeMismatch(
                message=f"The content is {found.kind}, not what the name {filename!r} says",
                details={"detected": found.kind, "extension": extension},
            )
    _check_claimed_type(claimed_type, kind)
    facts = dict(found.facts)
    if claimed_type:
        facts["claimed_type"] = claimed_type[:127]
    return TypeInfo(kind=kind, mime_type=MIME_TYPES[kind], facts=facts)


def _check_claimed_type(claimed_type: str | None, kind: str) -> None:
    if not claimed_type:
        return
    mime = claimed_type.split(";", 1)[0].strip().lower()
    claimed = _CLAIMED_KINDS.get(mime)
    if claimed is None or claimed == kind:
        return
    raise FileTypeMismatch(
        message=f"The content is {kind}, not {mime}",
        details={"detected": kind, "claimed_type": mime},
    )


def _detect(
    path: Path,
    head: bytes,
    tail: bytes,
    size: int,
    archive_limits: ArchiveLimits | None,
    *,
    expected: str | None,
) -> _Found:
    # Structural checks first: they hold for the whole file, not just a magic number.
    glb = _glb(head, size)
    if glb is not None:
        return glb
    # A binary STL's header is free-form: a file can pass the size arithmetic and carry
    # another format's magic (a polyglot, or a tiny file with zeros at byte 80). The name
    # decides between two readings that both hold; otherwise the magic number wins.
    stl = _binary_stl(head, size)
    if stl is not None and expected == "stl":
        return stl
    if is_zip(head):
        return _zip(path, archive_limits)
    guess = filetype.guess(head) if head else None
    if guess is not None:
        kind = {"jpg": "jpeg"}.get(guess.extension, guess.extension)
        if kind in ("png", "jpeg", "gif", "webp", "pdf"):
            return _Found(kind, _image_facts(kind, head))
        return _Found(f"other:{guess.extension}", mime_type=guess.mime)
    if stl is not None:
        return stl
    if head.startswith(b"AutoCAD Binary DXF\r\n\x1a\x00"):
        return _Found("dxf", {"encoding": "binary"})
    ply = _ply(head)
    if ply is not None:
        return ply
    text = _as_text(head, tail, complete=size <= HEAD_BYTES)
    if text is None:
        return _Found("other:binary", mime_type="application/octet-stream")
    for detect in (_ascii_stl, _step, _iges, _dxf, _obj):
        found = detect(text)
        if found is not None:
            return found
    gltf = _gltf(path, text, size)
    if gltf is not None:
        return gltf
    return _Found("text")


def _glb(head: bytes, size: int) -> _Found | None:
    if len(head) < 12 or head[:4] != b"glTF":
        return None
    version, length = struct.unpack_from("<II", head, 4)
    if length != size:
        return None
    return _Found("glb", {"version": version})


def _binary_stl(head: bytes, size: int) -> _Found | None:
    if size < STL_HEADER + 4 or len(head) < STL_HEADER + 4:
        return None
    (triangles,) = struct.unpack_from("<I", head, STL_HEADER)
    if size != STL_HEADER + 4 + STL_TRIANGLE * triangles:
        return None
    return _Found("stl", {"encoding": "binary", "triangles": triangles})


def _zip(path: Path, limits: ArchiveLimits | None) -> _Found:
    try:
        report = check_zip(path, limits=limits)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise UnsafeArchive(
            "corrupt_archive", "The archive cannot be read", details={"reason": str(exc)[:200]}
        ) from None
    names = {name.replace("\\", "/").lower() for name in report.names}
    facts = report.facts()
    if "3d/3dmodel.model" in names:
        return _Found("3mf", facts)
    if "[content_types].xml" in names:
        for prefix, kind in (("word/", "docx"), ("xl/", "xlsx"), ("ppt/", "pptx")):
            if any(name.startswith(prefix) for name in names):
                return _Found(kind, facts)
    return _Found("zip", facts)


def _image_facts(kind: str, head: bytes) -> dict[str, Any]:
    if kind == "png" and len(head) >= 24 and head[12:16] == b"IHDR":
        width, height = struct.unpack_from(">II", head, 16)
        return {"width": width, "height": height}
    if kind == "gif" and len(head) >= 10:
        width, height = struct.unpack_from("<HH", head, 6)
        return {"width": width, "height": height}
    if kind == "pdf":
        match = re.match(rb"%PDF-(\d\.\d)", head)
        return {"version": match.group(1).decode()} if match else {}
    return {}


_PLY_FORMAT = re.compile(rb"format (ascii|binary_little_endian|binary_big_endian) [\d.]+")
_PLY_ELEMENT = re.compile(rb"element (\w+) (\d+)")


def _ply(head: bytes) -> _Found | None:
    if not (head.startswith(b"ply\n") or head.startswith(b"ply\r\n")):
        return None
    end = head.find(b"end_header")
    if end < 0:
        return None
    header = head[:end]
    match = _PLY_FORMAT.search(header)
    if match is None:
        return None
    facts: dict[str, Any] = {"format": match.group(1).decode()}
    for name, count in _PLY_ELEMENT.findall(header):
        if name in (b"vertex", b"face"):
            facts[f"{name.decode()}_count"] = int(count)
    return _Found("ply", facts)


_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")


def _as_text(head: bytes, tail: bytes, *, complete: bool) -> str | None:
    """The head as text when head and tail are text (UTF-8 or Latin-1 without control
    characters); a multi-byte character cut at the head's end is forgiven."""
    for sample in (head, tail):
        if _CONTROL.search(sample):
            return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not complete and exc.start >= len(head) - 3 and exc.reason == "unexpected end of data":
            return head[: exc.start].decode("utf-8")
    return head.decode("latin-1")  # CAD exporters still write Latin-1 names


def _ascii_stl(text: str) -> _Found | None:
    stripped = text.lstrip()
    if not stripped.startswith("solid"):
        return None
    if "facet normal" in stripped or re.match(r"solid[^\n]*\n\s*endsolid", stripped):
        return _Found("stl", {"encoding": "ascii"})
    return None


_STEP_SCHEMA = re.compile(r"FILE_SCHEMA\s*\(\s*\(\s*'([^']+)'", re.IGNORECASE)


def _step(text: str) -> _Found | None:
    if not text.lstrip("\ufeff \t\r\n").startswith("ISO-10303-21;"):
        return None
    match = _STEP_SCHEMA.search(text)
    return _Found("step", {"schema": match.group(1).strip()} if match else {})


def _iges(text: str) -> _Found | None:
    lines = text.splitlines()[:4]
    if not lines or lines[0][72:73] not in ("S", "G"):
        return None
    if not all(len(line) == 80 and line[73:].strip().isdigit() for line in lines):
        return None
    return _Found("iges", {})


def _dxf(text: str) -> _Found | None:
    lines = [line.strip() for line in text.splitlines()[:40]]
    at = 0
    while at + 1 < len(lines) and lines[at] == "999":  # comments may come first
        at += 2
    if at + 1 < len(lines) and lines[at] == "0" and lines[at + 1] == "SECTION":
        version = None
        if "$ACADVER" in lines:
            index = lines.index("$ACADVER")
            version = lines[index + 2] if index + 2 < len(lines) else None
        return _Found("dxf", {"encoding": "ascii", **({"version": version} if version else {})})
    return None


_OBJ_KEYWORDS = frozenset(
    {
        *("v", "vt", "vn", "vp", "f", "l", "p", "o", "g", "s", "mtllib", "usemtl"),
        *("cstype", "deg", "bmat", "step", "curv", "curv2", "surf", "parm", "trim", "hole"),
        *("scrv", "sp", "end", "con", "mg", "lod", "bevel", "c_interp", "d_interp"),
        *("trace_obj", "ctech", "stech", "shadow_obj"),
    }
)


def _obj(text: str) -> _Found | None:
    lines = text.splitlines()
    if len(text) >= HEAD_BYTES - 3:  # the last line may be cut: leave it out
        lines = lines[:-1]
    vertices = False
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword = line.split(None, 1)[0]
        if keyword not in _OBJ_KEYWORDS:
            return None
        vertices = vertices or keyword == "v"
    return _Found("obj", {}) if vertices else None


_GLTF_ASSET = re.compile(r'"asset"\s*:\s*\{')


def _gltf(path: Path, text: str, size: int) -> _Found | None:
    if not text.lstrip("\ufeff \t\r\n").startswith("{"):
        return None
    if size > GLTF_PARSE_LIMIT:  # too big to parse here: the head must show the asset
        return _Found("gltf", {}) if _GLTF_ASSET.search(text) else None
    try:
        document = json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError):
        return None
    asset = document.get("asset") if isinstance(document, dict) else None
    if not isinstance(asset, dict) or "version" not in asset:
        return None
    return _Found("gltf", {"version": str(asset["version"])})
