"""The ready queue: pending jobs in dispatch order, with O(log n) insert, remove, head and rank.

Order is by effective priority, highest first, FIFO among equals. Effective priority rises linearly with
waiting time (aging): `level + (now - ready_at) / interval`. Because every waiting job ages at the same
rate, comparing two effective priorities never depends on `now`:

    level_a + (now - ready_a)/I  >  level_b + (now - ready_b)/I   <=>   ready_a - level_a*I  <  ready_b - level_b*I

so the static key `(ready_at - level * I, seq)` keeps the queue sorted forever without re-sorting, and a
job that arrived with another never swaps places with it. `RankedPairs` gives the rank of a key in
O(log n), which is what `position_in_queue` needs.
"""

from __future__ import annotations

from collections.abc import Iterator

from service.scheduler.ranked import RankedPairs


class ReadyQueue:
    """Pending jobs by `(score, seq)`, where score = ready_at - level * I; iteration yields job ids."""

    def __init__(self, aging_interval: float) -> None:
        self.aging_interval = aging_interval
        self._keys = RankedPairs()
        self._ids: dict[int, str] = {}  # seq -> job id: the index holds machine words, not strings

    def score(self, ready_at: float, level: int) -> float:
        # Always computed from the same two inputs, so the same job always gets the same float.
        return ready_at - level * self.aging_interval

    def add(self, ready_at: float, level: int, seq: int, job_id: str) -> None:
        self._keys.add(self.score(ready_at, level), seq)
        self._ids[seq] = job_id

    def remove(self, ready_at: float, level: int, seq: int) -> None:
        self._keys.remove(self.score(ready_at, level), seq)
        del self._ids[seq]

    def position(self, ready_at: float, level: int, seq: int) -> int:
        """How many pending jobs are ahead of this one."""
        return self._keys.rank(self.score(ready_at, level), seq)

    def __iter__(self) -> Iterator[str]:
        ids = self._ids
        for _, seq in self._keys:
            yield ids[seq]

    def __len__(self) -> int:
        return len(self._keys)

    def head(self) -> str | None:
        first = self._keys.first()
        return None if first is None else self._ids[first[1]]

    def effective_priority(self, ready_at: float, level: int, now: float) -> float:
        return level + (now - ready_at) / self.aging_interval
