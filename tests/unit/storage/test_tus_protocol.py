"""Parsing of the tus headers: metadata, checksums, concatenation, lengths."""

from __future__ import annotations

import base64
import hashlib
from uuid import UUID

import pytest

from storage.tus_protocol import (
    Checksum,
    Concat,
    InvalidTusHeader,
    TusVersionUnsupported,
    check_tus_resumable,
    encode_metadata,
    parse_checksum,
    parse_concat,
    parse_length,
    parse_metadata,
)
from storage.tus_types import target_of


def test_metadata_round_trips_and_allows_keys_without_values() -> None:
    header = "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential,filetype dGV4dA=="

    parsed = parse_metadata(header)

    assert parsed == {
        "filename": "world_domination_plan.pdf",
        "is_confidential": "",
        "filetype": "text",
    }
    assert parse_metadata(encode_metadata(parsed)) == parsed
    assert parse_metadata(None) == {}
    assert parse_metadata("  ") == {}


@pytest.mark.parametrize(
    "header",
    ["filename !!!", "filename YQ== extra", "a YQ==,a Yg==", ",", "name " + "/w=="],
)
def test_malformed_metadata_is_refused(header: str) -> None:
    with pytest.raises(InvalidTusHeader) as caught:
        parse_metadata(header)
    assert caught.value.code == "invalid_metadata"
    assert caught.value.status == 400


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_checksums_name_an_algorithm_and_a_base64_digest(algorithm: str) -> None:
    digest = hashlib.new(algorithm, b"abc").digest()

    parsed = parse_checksum(f"{algorithm} {base64.b64encode(digest).decode()}")

    assert parsed == Checksum(algorithm=algorithm, digest=digest)
    assert parse_checksum(None) is None


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("md5 kAFQmDzST7DWlj99KOF/cg==", "checksum_algorithm_unsupported"),
        ("sha1 not*base64", "invalid_tus_header"),
        ("sha256 " + base64.b64encode(b"short").decode(), "invalid_tus_header"),
    ],
)
def test_bad_checksum_headers_are_400(header: str, code: str) -> None:
    with pytest.raises(InvalidTusHeader) as caught:
        parse_checksum(header)
    assert caught.value.code == code


def test_concat_is_partial_or_final_with_upload_urls() -> None:
    a, b = UUID(int=1), UUID(int=2)

    assert parse_concat("partial") == Concat(partial=True)
    assert parse_concat(f"final;/api/v1/uploads/{a} http://h/api/v1/uploads/{b}/") == Concat(
        partial=False, parts=(a, b)
    )
    assert parse_concat(None) is None
    for bad in ("final;", "final;/api/v1/uploads/nope", "whole"):
        with pytest.raises(InvalidTusHeader):
            parse_concat(bad)


def test_lengths_are_non_negative_integers() -> None:
    assert parse_length("0", "Upload-Offset") == 0
    assert parse_length("524288000", "Upload-Length") == 524_288_000
    assert parse_length(None, "Upload-Length") is None
    for bad in ("-1", "1.5", "", "1e3", "9" * 20):
        with pytest.raises(InvalidTusHeader):
            parse_length(bad, "Upload-Length")


def test_only_tus_1_0_0_is_spoken() -> None:
    check_tus_resumable("1.0.0")
    for bad in (None, "0.2.2", "1.0"):
        with pytest.raises(TusVersionUnsupported) as caught:
            check_tus_resumable(bad)
        assert caught.value.status == 412
        assert caught.value.headers == {"Tus-Version": "1.0.0"}


def test_the_target_is_a_folder_or_a_file_never_both() -> None:
    folder, file = UUID(int=3), UUID(int=4)

    assert target_of({}) == (None, None)
    assert target_of({"folder_id": str(folder)}) == (folder, None)
    assert target_of({"file_id": str(file)}) == (None, file)
    for bad in ({"folder_id": "x"}, {"folder_id": str(folder), "file_id": str(file)}):
        with pytest.raises(InvalidTusHeader):
            target_of(bad)
