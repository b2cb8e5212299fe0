"""The pattern grammar: ranges, folding, terms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostbatch.errors import SelectionError
from hostbatch.inventory.patterns import (
    count_names,
    expand,
    fold,
    fold_text,
    parse_terms,
    split_terms,
)


def test_expand_keeps_zero_padding() -> None:
    assert expand("web[01-03]") == ["web01", "web02", "web03"]
    assert expand("web[8-10]") == ["web8", "web9", "web10"]


def test_expand_lists_and_several_brackets() -> None:
    assert expand("sw[1-2]p[1,3]") == ["sw1p1", "sw1p3", "sw2p1", "sw2p3"]
    assert expand("db[01,05-06].eu") == ["db01.eu", "db05.eu", "db06.eu"]


def test_expand_plain_name_is_itself() -> None:
    assert expand("host.example") == ["host.example"]


@pytest.mark.parametrize("bad", ["web[03-01]", "web[a-b]", "web[01-", "web01]", "web[]"])
def test_expand_rejects_bad_ranges(bad: str) -> None:
    with pytest.raises(SelectionError, match=r"web"):
        expand(bad)


def test_expand_refuses_huge_ranges() -> None:
    with pytest.raises(SelectionError, match=r"too large|limit"):
        expand("h[0-9999999]")


def test_fold_ranges() -> None:
    assert fold(["web03", "web07", "web08", "web09"]) == ["web[03,07-09]"]
    assert fold_text(["db1", "web2", "web1"]) == "db1,web[1-2]"
    assert fold(["alpha", "beta"]) == ["alpha", "beta"]


def test_split_terms_ignores_commas_in_brackets() -> None:
    assert split_terms("web[01,03],@db, !web01") == ["web[01,03]", "@db", "!web01"]


def test_parse_terms_kinds() -> None:
    terms = list(parse_terms("all,@db,!web07,web[01-02]"))
    assert [(t.exclude, t.kind, t.value) for t in terms] == [
        (False, "all", ""),
        (False, "group", "db"),
        (True, "host", "web07"),
        (False, "host", "web[01-02]"),
    ]
    assert [t.kind for t in parse_terms("web,db", default_kind="group")] == ["group", "group"]


@given(
    prefix=st.sampled_from(["web", "db-", "n", "rack1-sw"]),
    low=st.integers(min_value=0, max_value=500),
    span=st.integers(min_value=0, max_value=60),
    width=st.integers(min_value=1, max_value=4),
)
def test_expand_range_property(prefix: str, low: int, span: int, width: int) -> None:
    high = low + span
    low_text = str(low).zfill(width)
    names = expand(f"{prefix}[{low_text}-{high}]")
    assert len(names) == span + 1
    assert len(set(names)) == len(names)
    assert names[0] == prefix + low_text
    assert int(names[-1][len(prefix) :]) == high
    padded = low_text.startswith("0") and len(low_text) > 1
    if padded:
        assert all(len(n) >= len(prefix) + len(low_text) for n in names)


@given(st.sets(st.integers(min_value=0, max_value=300), min_size=1, max_size=40), st.booleans())
def test_fold_then_expand_round_trips(numbers: set[int], padded: bool) -> None:
    names = [f"node{n:03d}" if padded else f"node{n}" for n in numbers]
    expanded = [name for pattern in fold(names) for name in expand(pattern)]
    assert sorted(expanded) == sorted(names)


@pytest.mark.parametrize("text", ["", ",", "web01,", ",web01", "a,,b", "  ", "!"])
def test_empty_terms_are_errors(text: str) -> None:
    with pytest.raises(SelectionError, match="empty"):
        list(parse_terms(text))


def test_count_names_does_not_build_them() -> None:
    assert count_names("web[01-03]x[1,5-6]") == 9
    assert count_names("plain") == 1
    assert count_names("n[0-999999][0-999999][0-999999]") == 10**18
