"""storage.archives: zip bombs and path traversal refused without extracting."""

from __future__ import annotations

import io
import stat
import struct
import time
import zipfile
from pathlib import Path

import pytest

from storage.archives import (
    MAX_ENTRIES,
    ArchiveLimits,
    ArchiveReport,
    UnsafeArchive,
    check_zip,
)
from storage.sniff import sniff_file
from tests.cad_samples import cad_sample

MiB = 1024 * 1024


def make_zip(path: Path, entries: dict[str, bytes] | list[tuple[str, bytes]]) -> Path:
    items = entries.items() if isinstance(entries, dict) else entries
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in items:
            archive.writestr(zipfile.ZipInfo(name), data, zipfile.ZIP_DEFLATED)
    return path


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_plain_archive_passes_with_its_report(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "ok.zip", {"a.txt": b"hello", "dir/b.txt": b"x" * 1000})

    report = check_zip(path)

    assert report == ArchiveReport(
        names=("a.txt", "dir/b.txt"),
        entries=2,
        uncompressed_bytes=1005,
        nested_archives=0,
        encrypted=False,
    )


def test_the_real_3mf_passes() -> None:
    report = check_zip(cad_sample("featuretype.3MF"))

    assert report.names == ("3D/3dmodel.model", "[Content_Types].xml", "_rels/.rels")
    assert report.nested_archives == 0


def test_a_long_run_of_zeros_is_a_zip_bomb(tmp_path: Path) -> None:
    # 20 MiB of zeros deflate to about 20 KiB: a ratio near 1000.
    path = make_zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(20 * MiB)})
    assert path.stat().st_size < 100_000

    started = time.perf_counter()
    with pytest.raises(UnsafeArchive) as caught:
        check_zip(path)
    elapsed = time.perf_counter() - started

    assert caught.value.status == 422
    assert caught.value.code == "zip_bomb"
    assert caught.value.details["reason"] == "compression_ratio"
    assert caught.value.details["entry"] == "zeros.bin"
    assert caught.value.details["ratio"] > 500
    assert elapsed < 0.5  # judged by the directory, nothing inflated


def test_a_bomb_spread_over_many_small_entries_is_caught_by_the_total_ratio(
    tmp_path: Path,
) -> None:
    # Each entry is under the per-entry floor; together they unpack 1000 to 1.
    path = make_zip(tmp_path / "spread.zip", {f"{i}.bin": bytes(512 * 1024) for i in range(8)})

    with pytest.raises(UnsafeArchive) as caught:
        check_zip(path)

    assert caught.value.details["reason"] == "compression_ratio"
    assert "entry" not in caught.value.details


def test_an_archive_over_the_uncompressed_cap_is_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "big.zip", {"a.bin": bytes(3000), "b.bin": bytes(3000)})

    with pytest.raises(UnsafeArchive) as caught:
        check_zip(path, limits=ArchiveLimits(max_uncompressed_bytes=5000))

    assert caught.value.code == "zip_bomb"
    assert caught.value.details["reason"] == "too_large_uncompressed"


def test_too_many_entries_are_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "many.zip", [(f"f{i}", b"") for i in range(MAX_ENTRIES + 1)])

    with pytest.raises(UnsafeArchive) as caught:
        check_zip(path)

    assert caught.value.code == "zip_bomb"
    assert caught.value.details == {"reason": "too_many_entries", "entries": MAX_ENTRIES + 1}


def test_the_entry_count_is_read_from_the_directory_even_when_the_end_record_lies(
    tmp_path: Path,
) -> None:
    path = make_zip(tmp_path / "lies.zip", [(f"f{i}", b"") for i in range(20)])
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)  # "1 entry"
    path.write_bytes(bytes(data))

    with pytest.raises(UnsafeArchive) as caught:
        check_zip(path, limits=ArchiveLimits(max_entries=10))

    assert caught.value.details["reason"] == "too_many_entries"


def test_a_huge_central_directory_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "dir.zip", [(f"{'n' * 200}{i}", b"") for i in range(50)])

    with pytest.raises(UnsafeArchive) as caught:
        check_zip(path, limits=ArchiveLimits(max_central_directory_bytes=4096))

    assert caught.value.details["reason"] == "directory_too_large"


@pytest.mark.parametrize(
    "name",
    ["../evil", "a/../../evil", "/etc/passwd", "..\\evil", "\\windows\\evil", "C:\\evil", "C:evil"],
)
def test_entry_names_that_leave_the_folder_are_refused(tmp_path: Path, name: str) -> None:
    path = make_zip(tmp_path / "trav.zip", [("fine.txt", b"ok"), (name, b"gotcha")])

    with pytest.raises(UnsafeArchive) as caught:
        check_zip(path)

    assert caught.value.status == 422
    assert caught.value.code == "archive_path_traversal"
    assert caught.value.details == {"entry": name}


def test_a_symbolic_link_entry_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("link")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(link, "/etc/passwd")

    with pytest.raises(UnsafeArchive) as caught:
        check_zip(path)

    assert caught.value.code == "archive_path_traversal"


def test_names_that_merely_contain_dots_pass(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "dots.zip", {"a..b/c...txt": b"x", "..hidden": b"y"})

    assert check_zip(path).entries == 2


def test_overlapping_entries_are_a_zip_bomb(tmp_path: Path) -> None:
    # Point the second entry's directory record at the first entry's data.
    path = make_zip(tmp_path / "overlap.zip", {"a.txt": b"a" * 100, "b.txt": b"b" * 100})
    data = bytearray(path.read_bytes())
    second = data.find(b"PK\x01\x02", data.find(b"PK\x01\x02") + 4)
    struct.pack_into("<I", data, second + 42, 0)
    path.write_bytes(bytes(data))

    with pytest.raises(UnsafeArchive) as caught:
        check_zip(path)

    assert caught.value.details["reason"] == "overlapping_entries"


def test_nested_archives_are_checked_too(tmp_path: Path) -> None:
    inner = zip_bytes({"../escape": b"x"})
    path = make_zip(tmp_path / "outer.zip", {"inner.zip": inner})

    with pytest.raises(UnsafeArchive) as caught:
        check_zip(path)

    assert caught.value.code == "archive_path_traversal"


def test_two_levels_of_nesting_pass_and_three_are_refused(tmp_path: Path) -> None:
    level2 = zip_bytes({"deep.txt": b"deep"})
    level1 = zip_bytes({"level2.zip": level2})
    two = make_zip(tmp_path / "two.zip", {"level1.zip": level1})

    report = check_zip(two)

    assert report.nested_archives == 2
    assert report.uncompressed_bytes == len(level1) + len(level2) + 4

    three = make_zip(tmp_path / "three.zip", {"outer.docx": zip_bytes({"level1.zip": level1})})
    with pytest.raises(UnsafeArchive) as caught:
        check_zip(three)
    assert caught.value.details["reason"] == "nested_too_deep"


def test_sniffing_a_bomb_named_like_any_zip_kind_refuses_it(tmp_path: Path) -> None:
    entries = {"[Content_Types].xml": b"<Types/>", "word/document.xml": bytes(8 * MiB)}
    path = make_zip(tmp_path / "report.docx", entries)

    with pytest.raises(UnsafeArchive) as caught:
        sniff_file(path, filename="report.docx")

    assert caught.value.code == "zip_bomb"
