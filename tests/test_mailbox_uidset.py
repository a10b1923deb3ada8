"""uidset: sequence-set strings and capped batches (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ndr_sweeper.mailbox.uidset import batches, parse_set, to_set

uid_lists = st.lists(st.integers(min_value=1, max_value=5_000_000), max_size=400)


@pytest.mark.parametrize(
    ("uids", "expected"),
    [
        ([], ""),
        ([7], "7"),
        ([1, 2, 3, 4, 5, 7, 9, 10, 11, 12], "1:5,7,9:12"),
        ([12, 9, 10, 11, 7, 7, 5, 4, 3, 2, 1], "1:5,7,9:12"),
        ([1, 3], "1,3"),
        ([4294967295], "4294967295"),
    ],
)
def test_to_set(uids, expected):
    assert to_set(uids) == expected


def test_to_set_rejects_zero():
    with pytest.raises(ValueError):
        to_set([0, 1])


def test_parse_set():
    assert parse_set("1:3,7,12:10") == [1, 2, 3, 7, 10, 11, 12]
    assert parse_set(b"5") == [5]
    for bad in ("", "1:*", "a", "0"):
        with pytest.raises(ValueError):
            parse_set(bad)


@given(uid_lists)
def test_roundtrip(uids):
    s = to_set(uids)
    if uids:
        assert parse_set(s) == sorted(set(uids))
    else:
        assert s == ""


@given(
    uid_lists,
    st.integers(min_value=1, max_value=50),
    st.integers(min_value=24, max_value=300),
)
def test_batches_respect_caps_and_cover_everything(uids, max_count, max_bytes):
    got = list(batches(uids, max_count=max_count, max_bytes=max_bytes))
    flat = [u for b in got for u in b.uids]
    assert flat == sorted(set(uids))
    for b in got:
        assert 0 < len(b.uids) <= max_count
        assert len(b.set.encode()) <= max_bytes
        assert parse_set(b.set) == list(b.uids)


def test_consecutive_uids_stay_one_range():
    (only,) = batches(range(1, 100_001), max_count=100_000)
    assert only.set == "1:100000"
    assert [b.set for b in batches(range(1, 12), max_count=5)] == ["1:5", "6:10", "11"]


def test_scattered_uids_split_by_bytes():
    odd = range(1, 40_001, 2)  # 20,000 UIDs, ~110 KB as one set
    got = list(batches(odd, max_count=100_000))
    assert len(got) > 10
    assert all(len(b.set) <= 8192 for b in got)
    assert sum(len(b.uids) for b in got) == 20_000


def test_bad_caps():
    with pytest.raises(ValueError):
        list(batches([1], max_count=0))
    with pytest.raises(ValueError):
        list(batches([1], max_bytes=10))
