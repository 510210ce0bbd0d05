"""The ready queue: pending jobs in dispatch order, with O(log n) insert, remove, head and rank.

Order is by effective priority, highest first, FIFO among equals. Effective priority rises linearly with
waiting time (aging): `level + (now - ready_at) / interval`. Because every waiting job ages at the same
rate, comparing two effective priorities never depends on `now`:

    level_a + (now - ready_a)/I  >  level_b + (now - ready_b)/I   <=>   ready_a - level_a*I  <  ready_b - level_b*I

so the static key `(ready_at - level * I, seq)` keeps the queue sorted forever without re-sorting, and a
job that arrived with another never swaps places with it. A `SortedList` gives the rank of a key in
O(log n), which is what `position_in_queue` needs.
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedList

QueueKey = tuple[float, int, str]


class ReadyQueue:
    def __init__(self, aging_interval: float) -> None:
        self.aging_interval = aging_interval
        self._keys: SortedList = SortedList()

    def key(self, *, ready_at: float, level: int, seq: int, job_id: str) -> QueueKey:
        return (ready_at - level * self.aging_interval, seq, job_id)

    def add(self, key: QueueKey) -> None:
        self._keys.add(key)

    def remove(self, key: QueueKey) -> None:
        self._keys.remove(key)

    def position(self, key: QueueKey) -> int:
        """How many pending jobs are ahead of this one."""
        return int(self._keys.bisect_left(key))

    def __iter__(self) -> Iterator[QueueKey]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def head(self) -> QueueKey | None:
        return self._keys[0] if self._keys else None

    def effective_priority(self, key: QueueKey, now: float) -> float:
        return (now - key[0]) / self.aging_interval
