"""Pure rules of the files service: names, tags, search words and query escaping, metadata
diffs, HTTP ranges. No database."""

from __future__ import annotations

import pytest

from api.files.downloads import RangeNotSatisfiable, parse_range
from core.errors import ValidationFailed
from storage.diffs import flatten, metadata_changes
from storage.documents import MAX_TAGS, normalize_tags
from storage.folders import check_name, sanitize_filename
from storage.search import MAX_SEARCH_TEXT, build_search_text, fts5_match, pg_tsquery


def test_names_are_trimmed_and_refused_when_unsafe() -> None:
    assert check_name("  Bracket v2.step ") == "Bracket v2.step"
    assert check_name("Cafe\u0301.txt") == "Café.txt"  # NFC
    for bad in ("", "   ", ".", "..", "a/b", "a\\b", "line\nbreak", "x" * 256, "nul\x00"):
        with pytest.raises(ValidationFailed) as refused:
            check_name(bad)
        assert refused.value.code == "invalid_name"


def test_tags_are_normalised_deduplicated_and_bounded() -> None:
    assert normalize_tags(["  Steel ", "steel", "CNC  Milled", "rev-2.1"]) == [
        "steel",
        "cnc milled",
        "rev-2.1",
    ]
    for bad in ("", "x" * 41, "-leading", "semi;colon", "<b>"):
        with pytest.raises(ValidationFailed) as refused:
            normalize_tags([bad])
        assert refused.value.code == "invalid_tag"
    with pytest.raises(ValidationFailed) as too_many:
        normalize_tags([f"t{n}" for n in range(MAX_TAGS + 1)])
    assert too_many.value.code == "too_many_tags"


def test_search_text_holds_words_of_name_tags_kind_and_facts() -> None:
    text = build_search_text(
        name="Bracket_v2.STEP",
        tags=["steel", "cnc milled"],
        kind="step",
        facts={"solid": "Housing-Left", "triangles": 1200, "nested": {"part": ["Bolt M8"]}},
    )
    assert text == "bracket v2 step steel cnc milled housing left bolt m8"
    huge = build_search_text(name="n", tags=[], kind="", facts={"t": "word " * 10_000})
    assert len(huge) <= MAX_SEARCH_TEXT


@pytest.mark.parametrize(
    ("query", "fts5", "tsquery"),
    [
        ("Bracket", '"bracket"*', "bracket:*"),
        ("bolt M8", '"bolt"* "m8"*', "bolt:* & m8:*"),
        ('"NEAR(a b)" OR x*', '"near"* "a"* "b"* "or"* "x"*', "near:* & a:* & b:* & or:* & x:*"),
        ("a:* & !b | (c) <-> 'd'", '"a"* "b"* "c"* "d"*', "a:* & b:* & c:* & d:*"),
        ("   ", None, None),
        ("%_*()\"'", None, None),
    ],
)
def test_queries_reach_the_search_languages_as_plain_words(
    query: str, fts5: str | None, tsquery: str | None
) -> None:
    assert fts5_match(query) == fts5
    assert pg_tsquery(query) == tsquery


def test_metadata_changes_flatten_and_give_numeric_deltas() -> None:
    assert flatten({"a": {"b": {"c": 1}}, "d": [1, 2], "e": {}}) == {
        "a.b.c": 1,
        "d": [1, 2],
        "e": {},
    }
    changes = metadata_changes(
        {"triangles": 10, "watertight": True, "bbox": {"x": 1.0}},
        {"triangles": 12, "watertight": False, "bbox": {"x": 1.0}},
    )
    assert [(c.key, c.before, c.after, c.delta) for c in changes] == [
        ("triangles", 10, 12, 2.0),
        ("watertight", True, False, None),  # booleans are not numbers here
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 10)),
        ("bytes=90-", (90, 10)),
        ("bytes=-5", (95, 5)),
        ("bytes=-500", (0, 100)),
        ("bytes=95-1000", (95, 5)),
        ("bytes=5-1", None),  # invalid: ignored, the whole file is sent
        ("bytes=0-1,4-5", None),  # several ranges: ignored
        ("items=0-1", None),
        ("bytes=-", None),
    ],
)
def test_ranges(header: str, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=-0", "bytes=200-300"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as refused:
        parse_range(header, 100)
    assert refused.value.headers == {"Content-Range": "bytes */100"}


@pytest.mark.parametrize(
    ("uploaded", "kept"),
    [
        ("part.stl", "part.stl"),
        ("C:\\Users\\ada\\part.stl", "part.stl"),
        ("../../etc/passwd", "passwd"),
        ("tab\there.txt", "tab_here.txt"),
        ("..", "unnamed"),
        ("", "unnamed"),
        ("x" * 300 + ".step", "x" * 250 + ".step"),
    ],
)
def test_uploaded_names_are_made_safe(uploaded: str, kept: str) -> None:
    assert sanitize_filename(uploaded) == kept
