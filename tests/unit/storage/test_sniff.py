"""storage.sniff: the kind of a file by its bytes, checked against its name and the allowlist."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from storage.archives import UnsafeArchive
from storage.sniff import (
    ALLOWED_KINDS,
    MIME_TYPES,
    FileTypeMismatch,
    FileTypeNotAllowed,
    TypeInfo,
    extension_of,
    sniff_file,
)
from tests.cad_samples import cad_sample

# The real exports: (file, kind, facts).
SAMPLES = [
    ("angle_block.STL", "stl", {"encoding": "binary", "triangles": 704}),
    ("1002_tray_bottom.STL", "stl", {"encoding": "ascii"}),
    ("fandisk.obj", "obj", {}),
    (
        "octagonal_pocket.ply",
        "ply",
        {"format": "binary_little_endian", "vertex_count": 1658, "face_count": 3262},
    ),
    ("featuretype.STEP", "step", {"schema": "AUTOMOTIVE_DESIGN"}),
    ("base_interface_AP203.STEP", "step", {"schema": "CONFIG_CONTROL_DESIGN"}),
    ("box_sides.STEP", "step", {"schema": "AUTOMOTIVE_DESIGN"}),
    ("twoCars.igs", "iges", {}),
    (
        "featuretype.3MF",
        "3mf",
        {"entries": 3, "uncompressed_bytes": 155515, "nested_archives": 0, "encrypted": False},
    ),
    ("pins.glb", "glb", {"version": 2}),
    ("1002_tray_bottom.DXF", "dxf", {"encoding": "ascii", "version": "AC1015"}),
]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def sniff(tmp_path: Path, name: str, data: bytes, claimed_type: str | None = None) -> TypeInfo:
    return sniff_file(write(tmp_path, name, data), filename=name, claimed_type=claimed_type)


def png(width: int = 3, height: int = 2) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\0" + b"\xff\0\0" * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\0" * 64
GIF = b"GIF89a" + struct.pack("<HH", 16, 9) + b"\x00\x00\x00" + b"\0" * 32 + b";"
WEBP = b"RIFF" + struct.pack("<I", 30) + b"WEBPVP8 " + b"\0" * 22
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\0" * 120
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\0" * 120


def zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def office(part: str) -> bytes:
    return zip_of({"[Content_Types].xml": b"<Types/>", f"{part}/document.xml": b"<doc/>"})


def binary_stl(triangles: int, header: bytes = b"binary stl") -> bytes:
    facet = struct.pack("<12fH", *([0.0] * 12), 0)
    return header.ljust(80, b" ") + struct.pack("<I", triangles) + facet * triangles


ASCII_STL = b"""solid cube
  facet normal 0 0 1
    outer loop
      vertex 0 0 0
      vertex 1 0 0
      vertex 0 1 0
    endloop
  endfacet
endsolid cube
"""
ASCII_PLY = b"""ply
format ascii 1.0
element vertex 3
property float x
property float y
property float z
element face 1
property list uchar int vertex_indices
end_header
0 0 0
1 0 0
0 1 0
3 0 1 2
"""
OBJ = b"# a triangle\no tri\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 3//1\n"
GLTF = json.dumps({"asset": {"version": "2.0"}, "scenes": [], "nodes": []}).encode()


@pytest.mark.parametrize(("name", "kind", "facts"), SAMPLES)
def test_every_real_sample_is_recognised(name: str, kind: str, facts: dict[str, Any]) -> None:
    path = cad_sample(name)

    info = sniff_file(path, filename=name)

    assert info == TypeInfo(kind=kind, mime_type=MIME_TYPES[kind], facts=facts)


def test_a_binary_stl_whose_header_says_solid_is_binary() -> None:
    path = cad_sample("angle_block.STL")
    assert path.read_bytes()[:5] == b"solid"

    info = sniff_file(path, filename="angle_block.STL")

    assert info.facts == {"encoding": "binary", "triangles": 704}


@pytest.mark.parametrize(
    ("name", "data", "kind", "facts"),
    [
        (
            "part.stl",
            binary_stl(3, b"solid but binary"),
            "stl",
            {"encoding": "binary", "triangles": 3},
        ),
        ("part.stl", binary_stl(0), "stl", {"encoding": "binary", "triangles": 0}),
        ("part.stl", ASCII_STL, "stl", {"encoding": "ascii"}),
        ("empty.stl", b"solid empty\nendsolid empty\n", "stl", {"encoding": "ascii"}),
        ("mesh.ply", ASCII_PLY, "ply", {"format": "ascii", "vertex_count": 3, "face_count": 1}),
        ("mesh.obj", OBJ, "obj", {}),
        ("scene.gltf", GLTF, "gltf", {"version": "2.0"}),
        ("plan.dxf", b"AutoCAD Binary DXF\r\n\x1a\x00" + b"\0" * 40, "dxf", {"encoding": "binary"}),
        (
            "plan.dxf",
            b"999\nmade by hand\n  0\nSECTION\n  2\nENTITIES\n  0\nENDSEC\n  0\nEOF\n",
            "dxf",
            {"encoding": "ascii"},
        ),
        ("image.png", png(3, 2), "png", {"width": 3, "height": 2}),
        ("photo.jpg", JPEG, "jpeg", {}),
        ("photo.jpeg", JPEG, "jpeg", {}),
        ("anim.gif", GIF, "gif", {"width": 16, "height": 9}),
        ("image.webp", WEBP, "webp", {}),
        ("drawing.pdf", PDF, "pdf", {"version": "1.7"}),
        ("notes.txt", "Größe: 10 mm\r\nTiefe: 5 mm\n".encode(), "text", {}),
        ("bom.csv", b"part,qty\nbolt,4\n", "text", {}),
        ("part.gcode", b"G21\nG90\nG1 X10 Y10 F3000\n", "text", {}),
    ],
)
def test_synthetic_files_of_every_kind(
    tmp_path: Path, name: str, data: bytes, kind: str, facts: dict[str, Any]
) -> None:
    info = sniff(tmp_path, name, data)

    assert (info.kind, info.mime_type, info.facts) == (kind, MIME_TYPES[kind], facts)


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("report.docx", office("word"), "docx"),
        ("sheet.xlsx", office("xl"), "xlsx"),
        ("slides.pptx", office("ppt"), "pptx"),
        ("bundle.zip", zip_of({"a.txt": b"a", "b/c.txt": b"c"}), "zip"),
        ("print.3mf", zip_of({"3D/3dmodel.model": b"<model/>", "[Content_Types].xml": b""}), "3mf"),
    ],
)
def test_zip_based_kinds_are_told_apart_by_their_parts(
    tmp_path: Path, name: str, data: bytes, kind: str
) -> None:
    info = sniff(tmp_path, name, data)

    assert info.kind == kind
    assert info.mime_type == MIME_TYPES[kind]
    assert info.facts["entries"] == 2


def test_the_allowlist_is_the_kinds_with_a_mime_type() -> None:
    expected = {
        *("stl", "obj", "ply", "step", "iges", "3mf", "glb", "gltf", "dxf", "pdf"),
        *("png", "jpeg", "gif", "webp", "docx", "xlsx", "pptx", "zip", "text"),
    }
    assert expected == ALLOWED_KINDS


@pytest.mark.parametrize(
    ("name", "data", "detected"),
    [
        ("part.stl", PDF, "pdf"),  # a PDF named .stl
        ("part.stl", OBJ, "obj"),
        ("part.step", ASCII_STL, "stl"),
        ("photo.jpg", png(), "png"),
        ("sheet.xlsx", office("word"), "docx"),
        ("model.3mf", zip_of({"a.txt": b"a"}), "zip"),
        ("drawing.pdf", b"just some text\n", "text"),
        ("part.obj", b"this is not an obj file\n", "text"),
        ("model.glb", b"glTF" + struct.pack("<II", 2, 999) + b"\0" * 20, "other:binary"),
    ],
)
def test_bytes_that_contradict_the_name_are_refused(
    tmp_path: Path, name: str, data: bytes, detected: str
) -> None:
    with pytest.raises((FileTypeMismatch, FileTypeNotAllowed)) as caught:
        sniff(tmp_path, name, data)

    error = caught.value
    assert error.status == 415
    if detected.startswith("other:"):
        assert error.code == "file_type_not_allowed"
    else:
        assert error.code == "file_type_mismatch"
        assert error.details == {"detected": detected, "extension": extension_of(name)}


@pytest.mark.parametrize(
    ("name", "data", "detected"),
    [
        ("tool.exe", EXE, "application/x-msdownload"),
        ("part.stl", ELF, "application/x-executable"),
        ("noextension", ELF, "application/x-executable"),
        ("data.bin", bytes(range(256)) * 4, "application/octet-stream"),
    ],
)
def test_kinds_outside_the_allowlist_are_refused(
    tmp_path: Path, name: str, data: bytes, detected: str
) -> None:
    with pytest.raises(FileTypeNotAllowed) as caught:
        sniff(tmp_path, name, data)

    assert caught.value.status == 415
    assert caught.value.code == "file_type_not_allowed"
    assert caught.value.details == {"detected": detected, "filename": name}


def test_a_name_without_extension_takes_the_kind_found(tmp_path: Path) -> None:
    assert sniff(tmp_path, "README", b"hello\n").kind == "text"
    assert sniff(tmp_path, "drawing", PDF).kind == "pdf"


def test_a_text_name_accepts_text_formats_as_text(tmp_path: Path) -> None:
    info = sniff(tmp_path, "notes.txt", OBJ)

    assert info == TypeInfo(kind="text", mime_type="text/plain", facts={})


def test_an_unknown_extension_is_a_mismatch(tmp_path: Path) -> None:
    with pytest.raises(FileTypeMismatch):
        sniff(tmp_path, "drawing.xyz", PDF)


def test_the_declared_type_is_checked_when_it_names_a_kind(tmp_path: Path) -> None:
    stl = binary_stl(1)
    for vague in ("application/octet-stream", "text/plain", "application/x-whatever"):
        assert sniff(tmp_path, "part.stl", stl, claimed_type=vague).kind == "stl"
    for windows_says in ("application/vnd.ms-pki.stl", "model/stl; charset=binary"):
        info = sniff(tmp_path, "part.stl", stl, claimed_type=windows_says)
        assert info.facts["claimed_type"] == windows_says

    with pytest.raises(FileTypeMismatch) as caught:
        sniff(tmp_path, "image.png", png(), claimed_type="application/pdf")
    assert caught.value.details == {"detected": "png", "claimed_type": "application/pdf"}
    with pytest.raises(FileTypeMismatch):
        sniff(tmp_path, "part.stl", stl, claimed_type="application/x-msdownload")


def test_a_broken_zip_is_refused_as_unsafe(tmp_path: Path) -> None:
    data = zip_of({"a.txt": b"a" * 100})
    with pytest.raises(UnsafeArchive) as caught:
        sniff(tmp_path, "bundle.zip", data[:-30])

    assert caught.value.status == 422
    assert caught.value.code == "corrupt_archive"


def test_a_large_gltf_is_judged_by_its_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("storage.sniff.GLTF_PARSE_LIMIT", 100)
    data = b'{"asset": {"version": "2.0"}, "buffers": [{"uri": "data:,' + b"A" * 500 + b'"}]}'

    assert sniff(tmp_path, "scene.gltf", data) == TypeInfo("gltf", "model/gltf+json", {})
    with pytest.raises(FileTypeMismatch):
        sniff(tmp_path, "scene.gltf", b'{"scenes": [], "pad": "' + b"A" * 500 + b'"}')


def test_a_text_head_with_a_binary_tail_is_not_text(tmp_path: Path) -> None:
    data = b"line\n" * 20_000 + b"\0\1\2\3" * 100

    with pytest.raises(FileTypeNotAllowed):
        sniff(tmp_path, "log.txt", data)
