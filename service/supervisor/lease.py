"""The executor's lease: how long this node's supervisor may keep running attempts without hearing from a
scheduler, and which leader's orders it still takes.

In a cluster the leader answers each `SupervisorStats` with `Ack(term, echo=<its sent_at>, lease)`. The
executor may run its attempts until `echo + lease` on its own monotonic clock: `echo` is when it sent the
stats the leader answered, so the lease never reaches past what the leader has heard, and clocks of
different machines are never compared. Past that moment the leader may give the node's attempts to
another node (it waits a kill grace and a second longer), so the executor must have killed them by then
(ARCHITECTURE.md, "The executor's lease").

`ExecutorLease` is the bookkeeping, pure and clock-free (the caller passes `now`). `SharedExpiry` is the
8-byte shared memory region through which the zygote learns the same expiry, so that it can kill the
workers itself when the supervisor is frozen (SIGSTOP, a stall) and cannot.
"""

from __future__ import annotations

import math
import mmap
import os
import struct

# Native byte order and alignment: packing a native double into an aligned buffer is one 8-byte copy,
# which compilers emit as a single store (and the reader's as a single load) on x86-64 and arm64, so the
# zygote never reads half of an old expiry and half of a new one. ("=d" would pack byte by byte.)
_DOUBLE = struct.Struct("@d")
NO_LEASE = 0.0  # what a fresh region holds (memfd pages start zeroed): nothing to enforce


class ExecutorLease:
    """The highest leader term seen and the lease's expiry (monotonic seconds).

    Before any answer carried a lease (`lease == 0` in all of them: a single node), there is no lease:
    nothing ever lapses, and term 0 orders are always taken. A lease, once granted, stays until it lapses;
    an answer without one (`lease == 0`) neither extends nor revokes it. Answers from a new leader extend
    it as the old leader's did, so a failover shorter than the lease costs no running attempt.

    `required` (a clustered node): no attempt may start before the first lease is granted either. Without
    it, an attempt started between the Hello and the first answer would have no lease to lapse, and would
    run on forever should the link drop right then, while the leader gives it to another node.
    """

    def __init__(self, *, required: bool = False) -> None:
        self.required = required
        self.term = 0
        self.expires_at: float | None = None  # None: never granted
        self.granted = 0.0  # the length of the lease that set `expires_at`, for messages

    def admit(self, term: int) -> bool:
        """Whether an order (RunJob, KillJob, Ack) of leader `term` may be taken; remembers the highest.
        One from an older term comes from a deposed leader, whose writes the database fences off: its start
        was never committed, its kill and its acknowledgements concern a past it no longer owns."""
        if term < self.term:
            return False
        self.term = term
        return True

    def renew(self, echo: float, lease: float) -> bool:
        """An answer to the stats sent at `echo` grants `lease` seconds from then. Returns whether the
        expiry moved: an answer that arrives late (its stats were sent before a later one's) grants less."""
        if lease <= 0:
            return False
        expiry = echo + lease
        if self.expires_at is not None and expiry <= self.expires_at:
            return False
        self.expires_at = expiry
        self.granted = lease
        return True

    def lapsed(self, now: float) -> bool:
        """A lease was granted and `now` is past it without a newer answer."""
        return self.expires_at is not None and now >= self.expires_at

    def may_start(self, now: float) -> bool:
        """Whether a new attempt may start now: under a lease that holds, or where none is needed yet."""
        if self.expires_at is None:
            return not self.required
        return now < self.expires_at

    def silence(self, now: float) -> float:
        """Seconds since the stats whose answer was the last word from a scheduler (0 without a lease)."""
        if self.expires_at is None:
            return 0.0
        return now - (self.expires_at - self.granted)


class SharedExpiry:
    """The lease's expiry as a CLOCK_MONOTONIC double (system-wide on Linux, so the zygote compares it
    with its own `time.monotonic()`) in a memfd both processes map. The supervisor writes it on every
    renewal; `NO_LEASE` (0) means there is none. A memfd, not a file: nothing to clean up, and only the
    processes given its descriptor can map it."""

    def __init__(self, fd: int, *, writable: bool) -> None:
        self._map = mmap.mmap(fd, _DOUBLE.size, prot=mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0))

    @classmethod
    def create(cls) -> tuple[SharedExpiry, int]:
        """A new region holding `NO_LEASE`, and its descriptor (close-on-exec) to pass to a zygote."""
        fd = os.memfd_create("taskq-lease", os.MFD_CLOEXEC)
        os.ftruncate(fd, _DOUBLE.size)
        return cls(fd, writable=True), fd

    @classmethod
    def attach(cls, fd: int) -> SharedExpiry:
        """The zygote's read-only view; the mapping outlives the descriptor, which is closed here."""
        try:
            return cls(fd, writable=False)
        finally:
            os.close(fd)

    def write(self, expiry: float) -> None:
        _DOUBLE.pack_into(self._map, 0, expiry)

    def read(self) -> float:
        value: float = _DOUBLE.unpack_from(self._map, 0)[0]
        return value if math.isfinite(value) else NO_LEASE

    def close(self) -> None:
        self._map.close()
