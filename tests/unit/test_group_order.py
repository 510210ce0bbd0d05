"""Group commits run two at a time, but a group with dependencies waits for the groups already in flight:
a parent submitted just before it may be in one of them, and must be committed before it is looked up."""

from __future__ import annotations

import asyncio
from typing import Any

from service.api.submit import SubmitBatcher


def batcher() -> SubmitBatcher:
    nothing: Any = None  # the ordering needs no pool, link or telemetry
    return SubmitBatcher(nothing, nothing, 60.0, nothing)


def test_a_group_with_dependencies_starts_only_after_the_groups_in_flight_end() -> None:
    async def scenario() -> list[str]:
        order: list[str] = []
        b = batcher()
        parent_may_finish = asyncio.Event()

        async def group(name: str, *, wait: bool, hold: asyncio.Event | None = None) -> None:
            async with b._in_order(wait=wait):
                order.append(f"{name} starts")
                if hold is not None:
                    await hold.wait()
                order.append(f"{name} ends")

        parent = asyncio.create_task(group("parent", wait=False, hold=parent_may_finish))
        await asyncio.sleep(0)  # the parent's group is in flight
        child = asyncio.create_task(group("child", wait=True))
        other = asyncio.create_task(group("other", wait=False))  # no dependencies: need not wait
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert "child starts" not in order
        parent_may_finish.set()
        await asyncio.gather(parent, child, other)
        return order

    order = asyncio.run(scenario())
    assert order.index("child starts") > order.index("parent ends")
    assert order.index("child starts") > order.index("other ends")
    assert order.index("other starts") < order.index("parent ends")  # two groups were in flight at once


def test_a_group_without_dependencies_never_waits() -> None:
    async def scenario() -> int:
        b = batcher()
        never = asyncio.Event()
        held = asyncio.create_task(_hold(b, never))
        await asyncio.sleep(0)
        async with b._in_order(wait=False):
            in_flight = b._in_flight
        held.cancel()
        await asyncio.gather(held, return_exceptions=True)
        return in_flight

    assert asyncio.run(scenario()) == 2


async def _hold(b: SubmitBatcher, until: asyncio.Event) -> None:
    async with b._in_order(wait=False):
        await until.wait()
