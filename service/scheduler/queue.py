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

QueueKey = tuple[float, int, str]


class ReadyQueue:
    def __init__(self, aging_interval: float) -> None:
        self.aging_interval = aging_interval
        self._keys = RankedPairs()
        self._ids: dict[int, str] = {}  # seq -> job id: the index holds machine words, not strings

    def key(self, *, ready_at: float, level: int, seq: int, job_id: str) -> QueueKey:
        return (ready_at - level * self.aging_interval, seq, job_id)

    def add(self, key: QueueKey) -> None:
        self._keys.add(key[0], key[1])
        self._ids[key[1]] = key[2]

    def remove(self, key: QueueKey) -> None:
        self._keys.remove(key[0], key[1])
        del self._ids[key[1]]

    def position(self, key: QueueKey) -> int:
        """How many pending jobs are ahead of this one."""
        return self._keys.rank(key[0], key[1])

    def __iter__(self) -> Iterator[QueueKey]:
        ids = self._ids
        for score, seq in self._keys:
            yield (score, seq, ids[seq])

    def __len__(self) -> int:
        return len(self._keys)

    def head(self) -> QueueKey | None:
        first = self._keys.first()
        return None if first is None else (first[0], first[1], self._ids[first[1]])

    def effective_priority(self, key: QueueKey, now: float) -> float:
        return (now - key[0]) / self.aging_interval
