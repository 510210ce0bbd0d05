"""RankedPairs against a plain sorted list: same order, same ranks, same membership, after any sequence of
adds and removes, with a tiny block size so that splits, merges and Fenwick rebuilds happen constantly."""

from __future__ import annotations

import bisect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.scheduler.ranked import RankedPairs

# Few distinct scores, so that equal scores (ordered by seq) are common.
scores = st.sampled_from([-1.5, 0.0, 0.25, 1.0, 1e9, 1.8e9 - 60.0])
ops = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "rank"]), scores, st.integers(-(2**40), 2**40)),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, load=st.sampled_from([4, 5, 8, 64]))
def test_agrees_with_a_sorted_list(ops: list[tuple[str, float, int]], load: int) -> None:
    ranked, model = RankedPairs(load), []
    for op, score, seq in ops:
        pair = (score, seq)
        present = pair in model
        assert (pair in ranked) is present
        if op == "add" and not present:
            ranked.add(score, seq)
            bisect.insort(model, pair)
        elif op == "remove" and model:
            victim = model[seq % len(model)]  # remove something present
            ranked.remove(*victim)
            model.remove(victim)
        assert ranked.rank(score, seq) == bisect.bisect_left(model, pair)
        assert len(ranked) == len(model)
    assert list(ranked) == model
    assert ranked.first() == (model[0] if model else None)
    for i, pair in enumerate(model):
        assert ranked.rank(*pair) == i


def test_rejects_duplicates_missing_pairs_and_nan() -> None:
    ranked = RankedPairs(4)
    for seq in range(20):
        ranked.add(1.0, seq)
    with pytest.raises(ValueError, match="already present"):
        ranked.add(1.0, 7)
    with pytest.raises(KeyError):
        ranked.remove(1.0, 99)
    with pytest.raises(KeyError):
        ranked.remove(2.0, 0)
    with pytest.raises(ValueError, match="NaN"):
        ranked.add(float("nan"), 1)
    assert len(ranked) == 20


def test_blocks_stay_dense_as_entries_come_and_go() -> None:
    """After a large build and removal of most entries, the block count follows n / load, so rank's
    Fenwick walk stays O(log n) and does not keep the depth of the largest size ever held."""
    ranked = RankedPairs(8)
    for seq in range(4000):
        ranked.add(float(seq % 97), seq)
    for seq in range(0, 4000, 1):
        if seq % 50:
            ranked.remove(float(seq % 97), seq)
    assert len(ranked) == 80
    assert len(ranked._scores) <= 80 // (8 // 2)
    assert [seq for _, seq in ranked] == sorted(range(0, 4000, 50), key=lambda s: (float(s % 97), s))
