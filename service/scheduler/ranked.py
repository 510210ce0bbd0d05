"""An order-statistics list of `(score, seq)` pairs: insert, remove and rank in O(log n), cache-friendly.

The pairs are kept sorted (by score, then seq) in blocks of about `load` entries. Each block is two
parallel `array`s of machine words (`double` scores, `int64` seqs), so every search inside a block is a
C-level `bisect` over contiguous memory, never a comparison of Python tuples scattered over the heap.
A Fenwick tree over the block sizes turns "which block" into "how many entries before it" in O(log B).

Why not `sortedcontainers.SortedList` of tuples: it is O(log n) too, but at a million entries each
comparison chases pointers to a tuple and a float, and its positional index is walked in Python; rank
cost grew 13x from 10^3 to 10^6 entries. Here it grows about 3-3.5x, most of it cache misses that
any structure pays at that size (see evaluation_results.md).

Costs with B = n / load blocks: `rank` is two bisects plus O(log B) Fenwick steps; `add` and `remove`
are two bisects, an O(load) `memmove` and O(log B) Fenwick steps; a block split or merge rebuilds the
Fenwick tree in O(B), once per Θ(load) updates, so O(B / load) amortised, which stays below O(log n)
for the sizes a node holds (load 1024 keeps B / load < 1 up to a million entries, < 4 at four million).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator

DEFAULT_LOAD = 1024


def _find(scores: array[float], seqs: array[int], score: float, seq: int) -> int:
    """The index of the first pair not less than `(score, seq)` in parallel sorted arrays."""
    i = bisect_left(scores, score)
    if i < len(scores) and scores[i] == score:  # equal scores: order by seq among them
        i = bisect_left(seqs, seq, i, bisect_right(scores, score, i))
    return i


class RankedPairs:
    """Distinct `(score, seq)` pairs in sorted order. Scores are floats (not NaN), seqs are int64."""

    __slots__ = ("_len", "_load", "_max_scores", "_max_seqs", "_scores", "_seqs", "_tree")

    def __init__(self, load: int = DEFAULT_LOAD) -> None:
        if load < 4:
            raise ValueError("load must be at least 4")
        self._load = load
        self._max_scores: array[float] = array("d")  # the last pair of each block
        self._max_seqs: array[int] = array("q")
        self._scores: list[array[float]] = []
        self._seqs: list[array[int]] = []
        self._tree: array[int] = array("q", [0])  # Fenwick tree of block sizes, 1-based
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[tuple[float, int]]:
        for scores, seqs in zip(self._scores, self._seqs, strict=True):
            yield from zip(scores, seqs, strict=True)

    def first(self) -> tuple[float, int] | None:
        return (self._scores[0][0], self._seqs[0][0]) if self._len else None

    def rank(self, score: float, seq: int) -> int:
        """How many pairs are less than `(score, seq)`."""
        b = _find(self._max_scores, self._max_seqs, score, seq)
        if b == len(self._scores):
            return self._len
        total = _find(self._scores[b], self._seqs[b], score, seq)
        tree = self._tree
        while b:  # Fenwick prefix sum of the sizes of blocks 0 .. b-1
            total += tree[b]
            b &= b - 1
        return total

    def __contains__(self, pair: tuple[float, int]) -> bool:
        score, seq = pair
        b = _find(self._max_scores, self._max_seqs, score, seq)
        if b == len(self._scores):
            return False
        i = _find(self._scores[b], self._seqs[b], score, seq)
        return self._scores[b][i] == score and self._seqs[b][i] == seq

    def add(self, score: float, seq: int) -> None:
        if score != score:
            raise ValueError("score is NaN")
        if not self._len:
            self._scores.append(array("d", [score]))
            self._seqs.append(array("q", [seq]))
            self._max_scores.append(score)
            self._max_seqs.append(seq)
            self._len = 1
            self._rebuild()
            return
        b = _find(self._max_scores, self._max_seqs, score, seq)
        if b == len(self._scores):  # past every pair: append to the last block
            b -= 1
            scores, seqs = self._scores[b], self._seqs[b]
            scores.append(score)
            seqs.append(seq)
            self._max_scores[b] = score
            self._max_seqs[b] = seq
        else:
            scores, seqs = self._scores[b], self._seqs[b]
            i = _find(scores, seqs, score, seq)
            if scores[i] == score and seqs[i] == seq:
                raise ValueError(f"pair {(score, seq)} is already present")
            scores.insert(i, score)
            seqs.insert(i, seq)
        self._len += 1
        if len(scores) > 2 * self._load:
            self._split(b)
        else:
            self._bump(b, 1)

    def remove(self, score: float, seq: int) -> None:
        b = _find(self._max_scores, self._max_seqs, score, seq)
        if b == len(self._scores):
            raise KeyError((score, seq))
        scores, seqs = self._scores[b], self._seqs[b]
        i = _find(scores, seqs, score, seq)
        if scores[i] != score or seqs[i] != seq:
            raise KeyError((score, seq))
        del scores[i]
        del seqs[i]
        self._len -= 1
        if not scores:
            del self._scores[b], self._seqs[b], self._max_scores[b], self._max_seqs[b]
            self._rebuild()
            return
        if i == len(scores):
            self._max_scores[b] = scores[-1]
            self._max_seqs[b] = seqs[-1]
        if len(scores) < self._load // 2 and len(self._scores) > 1:
            self._merge(b - 1 if b else b)
        else:
            self._bump(b, -1)

    # ------------------------------------------------------------------------------------------ internals

    def _split(self, b: int) -> None:
        scores, seqs, half = self._scores[b], self._seqs[b], len(self._scores[b]) // 2
        self._scores.insert(b + 1, scores[half:])
        self._seqs.insert(b + 1, seqs[half:])
        del scores[half:], seqs[half:]
        self._max_scores.insert(b, scores[-1])
        self._max_seqs.insert(b, seqs[-1])
        self._rebuild()

    def _merge(self, b: int) -> None:
        """Join block b+1 into block b (split again if the result is too large): blocks stay dense, so
        the number of blocks, and with it the Fenwick depth, stays about n / load."""
        self._scores[b].extend(self._scores[b + 1])
        self._seqs[b].extend(self._seqs[b + 1])
        del self._scores[b + 1], self._seqs[b + 1], self._max_scores[b], self._max_seqs[b]
        if len(self._scores[b]) > 2 * self._load:
            self._split(b)
        else:
            self._rebuild()

    def _bump(self, b: int, delta: int) -> None:
        tree, size = self._tree, len(self._tree)
        b += 1
        while b < size:
            tree[b] += delta
            b += b & -b

    def _rebuild(self) -> None:
        size = len(self._scores)
        tree = array("q", bytes(8 * (size + 1)))
        for b, scores in enumerate(self._scores, 1):
            tree[b] += len(scores)
            parent = b + (b & -b)
            if parent <= size:
                tree[parent] += tree[b]
        self._tree = tree
