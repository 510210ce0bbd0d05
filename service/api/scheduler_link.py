"""The API's connection to the scheduler actor: fire-and-forget notices and request/reply with ids.

The link reconnects by itself. While it is down, requests fail fast with `ServiceUnavailable`; a job
committed meanwhile is not lost, because the scheduler loads every live job from PostgreSQL when it
(re)starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable

from service.errors import ServiceUnavailable
from service.protocol import ApiHello, ApiToScheduler, Events, JobEvent, Reply, SchedulerToApi
from service.transport import AsyncChannel, ChannelClosed

log = logging.getLogger("taskq.api.link")

REQUEST_TIMEOUT_SECONDS = 5.0


class SchedulerLink:
    def __init__(
        self,
        socket_path: str,
        on_events: Callable[[list[JobEvent]], None],
        restarts: int = 0,
        *,
        node: str = "",
        on_largest_node: Callable[[list[int]], None] | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.restarts = restarts
        self.node = node
        self.on_events = on_events
        self.on_largest_node = on_largest_node
        self._channel: AsyncChannel[SchedulerToApi] | None = None
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        # The scheduler's count of jobs waiting or running, as of its last word (events or a submit's
        # answer): what TASKQ_MAX_LIVE_JOBS is checked against before a submission is committed.
        self.live_jobs = 0

    @property
    def connected(self) -> bool:
        return self._channel is not None

    def start(self) -> None:
        self._task = asyncio.create_task(self._maintain())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._channel is not None:
            self._channel.close()

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self.connected

    async def request(self, build: Callable[[int], ApiToScheduler], timeout: float = REQUEST_TIMEOUT_SECONDS) -> Reply:
        channel = self._channel
        if channel is None:
            raise ServiceUnavailable("the scheduler is not reachable right now; retry shortly")
        request_id = next(self._ids)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            channel.send(build(request_id))
            return await asyncio.wait_for(future, timeout)
        except (ChannelClosed, TimeoutError) as exc:
            raise ServiceUnavailable("the scheduler did not answer in time; retry shortly") from exc
        finally:
            self._waiting.pop(request_id, None)

    async def _maintain(self) -> None:
        delay = 0.05
        while True:
            try:
                channel: AsyncChannel[SchedulerToApi] = await AsyncChannel.connect(self.socket_path, SchedulerToApi)
            except OSError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            opened = time.monotonic()
            try:
                channel.send(ApiHello(os.getpid(), self.restarts, self.node))
                self._channel = channel
                self._connected.set()
                while True:
                    for message in await channel.receive_many():
                        if message.live_jobs is not None:
                            self.live_jobs = message.live_jobs
                        if isinstance(message, Events):
                            if message.largest_node is not None and self.on_largest_node is not None:
                                self.on_largest_node(message.largest_node)
                            if message.events:
                                self.on_events(message.events)
                            continue
                        future = self._waiting.get(message.request_id)
                        if future is not None and not future.done():
                            future.set_result(message)
            except ChannelClosed:
                log.warning("scheduler link lost; reconnecting")
                # A link closed at once (a cluster with no leader right now: the local relay refuses it)
                # is retried with a growing delay, not in a tight loop; capped low, because a new leader
                # is expected within a lease, and until this link is back its API's /stats, explain and
                # the sweep of what it committed meanwhile wait for it.
                if time.monotonic() - opened < 1.0:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.2)
                else:
                    delay = 0.05
            except Exception:  # a link that stops reconnecting would leave the API unready for good
                log.exception("scheduler link failed; reconnecting")
                channel.close()
                await asyncio.sleep(delay)
            finally:
                self._channel = None
                self._connected.clear()
                for future in self._waiting.values():
                    if not future.done():
                        future.set_exception(ChannelClosed("scheduler link lost"))
