"""Length-prefixed msgpack frames: reassembly from arbitrary chunks, and round trips over real sockets."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from concurrent.futures import ThreadPoolExecutor

import msgspec
import pytest

from service.model import Outcome
from service.protocol import (
    Ack,
    AttemptFinished,
    HandlerLog,
    KillJob,
    RunJob,
    SchedulerToSupervisor,
    SupervisorToScheduler,
)
from service.transport import AsyncChannel, ChannelClosed, FrameBuffer, encode_frame, receive_frame, send_frame

RUN = RunJob(
    job_id="job-1", attempt=1, type="echo", payload={"n": 1, "xs": [1.5, "s", None]}, timeout_seconds=5.0, memory_mb=64
)
KILL = KillJob(job_id="job-1", attempt=1, outcome=Outcome.CANCELLED)
ACK = Ack(seqs=[1, 2, 3])
FINISHED = AttemptFinished(job_id="job-1", attempt=1, outcome=Outcome.SUCCEEDED, at=1.5, result={"ok": True}, seq=7)
LOG = HandlerLog(job_id="job-1", attempt=1, level="INFO", message="héllo ✓", at=2.0)


def big_run_job(size: int = 1 << 20) -> RunJob:
    blob = random.Random(7).randbytes(size)
    return RunJob(job_id="big", attempt=2, type="echo", payload={"blob": blob}, timeout_seconds=None, memory_mb=1)


# ----------------------------------------------------------------------------------------------- FrameBuffer


def test_encode_frame_prefixes_the_msgpack_body_with_its_big_endian_length() -> None:
    frame = encode_frame(ACK)

    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    assert msgspec.msgpack.decode(frame[4:], type=SchedulerToSupervisor) == ACK


def test_frame_buffer_reassembles_frames_split_at_every_byte_boundary() -> None:
    messages = [RUN, KILL]
    frames = [encode_frame(message) for message in messages]
    data = b"".join(frames)
    ends = [len(frames[0]), len(data)]

    for split in range(len(data) + 1):
        buffer: FrameBuffer[SchedulerToSupervisor] = FrameBuffer(SchedulerToSupervisor)
        before = buffer.feed(data[:split])
        after = buffer.feed(data[split:])

        complete_before = [message for message, end in zip(messages, ends, strict=True) if end <= split]
        assert before == complete_before, f"split at byte {split}"
        assert before + after == messages, f"split at byte {split}"


def test_frame_buffer_fed_one_byte_at_a_time_yields_each_message_on_its_last_byte() -> None:
    frames = [encode_frame(message) for message in (FINISHED, LOG)]
    buffer: FrameBuffer[SupervisorToScheduler] = FrameBuffer(SupervisorToScheduler)
    data = b"".join(frames)
    ends = {len(frames[0]) - 1: [FINISHED], len(data) - 1: [LOG]}

    for index in range(len(data)):
        assert buffer.feed(data[index : index + 1]) == ends.get(index, []), f"byte {index}"


def test_frame_buffer_returns_every_frame_of_one_chunk_in_order() -> None:
    buffer: FrameBuffer[SchedulerToSupervisor] = FrameBuffer(SchedulerToSupervisor)

    assert buffer.feed(encode_frame(RUN) + encode_frame(KILL) + encode_frame(ACK)) == [RUN, KILL, ACK]


def test_frame_buffer_keeps_a_trailing_partial_frame_for_the_next_feed() -> None:
    buffer: FrameBuffer[SchedulerToSupervisor] = FrameBuffer(SchedulerToSupervisor)
    ack = encode_frame(ACK)

    assert buffer.feed(encode_frame(RUN) + encode_frame(KILL) + ack[:3]) == [RUN, KILL]
    assert buffer.feed(ack[3:] + encode_frame(RUN)[:5]) == [ACK]
    assert buffer.feed(b"") == []


def test_frame_buffer_decodes_a_frame_of_zero_length_payload_fields() -> None:
    empty = RunJob(job_id="", attempt=0, type="", payload={}, timeout_seconds=None, memory_mb=0)
    buffer: FrameBuffer[SchedulerToSupervisor] = FrameBuffer(SchedulerToSupervisor)

    assert buffer.feed(encode_frame(empty)) == [empty]


# ----------------------------------------------------------------------------------------------- blocking sockets


@pytest.mark.parametrize("writer_blocking", [True, False], ids=["blocking-writer", "non-blocking-writer"])
def test_send_and_receive_frame_round_trip_a_megabyte_over_a_socket_pair(writer_blocking: bool) -> None:
    message = big_run_job()
    decoder = msgspec.msgpack.Decoder(SchedulerToSupervisor)
    writer, reader = socket.socketpair()
    # Closing order on failure: writer first, so the reader thread sees EOF and the pool can join.
    with ThreadPoolExecutor(max_workers=1) as pool, reader, writer:
        writer.setblocking(writer_blocking)
        received = pool.submit(lambda: [receive_frame(reader, decoder), receive_frame(reader, decoder)])

        send_frame(writer, message)
        send_frame(writer, ACK)

        assert received.result(timeout=30) == [message, ACK]


def test_receive_frame_raises_channel_closed_when_the_peer_closes_mid_frame() -> None:
    decoder = msgspec.msgpack.Decoder(SchedulerToSupervisor)
    writer, reader = socket.socketpair()
    with reader:
        with writer:
            writer.sendall(encode_frame(RUN)[:-1])

        with pytest.raises(ChannelClosed):
            receive_frame(reader, decoder)


def test_receive_frame_raises_channel_closed_when_the_peer_closes_between_frames() -> None:
    decoder = msgspec.msgpack.Decoder(SchedulerToSupervisor)
    writer, reader = socket.socketpair()
    with reader:
        with writer:
            send_frame(writer, ACK)

        assert receive_frame(reader, decoder) == ACK
        with pytest.raises(ChannelClosed):
            receive_frame(reader, decoder)


# ----------------------------------------------------------------------------------------------- AsyncChannel


async def open_stream(sock: socket.socket) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(sock=sock, limit=1 << 26)


async def close_stream(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


def test_async_channel_round_trips_messages_both_ways() -> None:
    big = big_run_job()

    async def scenario() -> None:
        left, right = socket.socketpair()
        scheduler_streams = await open_stream(left)
        supervisor_streams = await open_stream(right)
        scheduler: AsyncChannel[SupervisorToScheduler] = AsyncChannel(*scheduler_streams, SupervisorToScheduler)
        supervisor: AsyncChannel[SchedulerToSupervisor] = AsyncChannel(*supervisor_streams, SchedulerToSupervisor)
        try:
            scheduler.send(RUN)
            scheduler.send(big)
            scheduler.send(KILL)
            drained = asyncio.create_task(scheduler.drain())
            assert [await supervisor.receive() for _ in range(3)] == [RUN, big, KILL]
            await drained

            supervisor.send(FINISHED)
            supervisor.send(LOG)
            await supervisor.drain()
            assert [await scheduler.receive(), await scheduler.receive()] == [FINISHED, LOG]
        finally:
            await close_stream(scheduler_streams[1])
            await close_stream(supervisor_streams[1])

    asyncio.run(scenario())


def test_async_channel_over_a_unix_server_round_trips_messages(tmp_path_factory: pytest.TempPathFactory) -> None:
    # A short directory: unix socket paths are limited to ~108 bytes.
    path = str(tmp_path_factory.mktemp("sock") / "s")

    async def scenario() -> None:
        server_side: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server_side.put((reader, writer))

        server = await asyncio.start_unix_server(accept, path=path)
        async with server:
            client: AsyncChannel[SchedulerToSupervisor] = await AsyncChannel.connect(path, SchedulerToSupervisor)
            reader, writer = await server_side.get()
            scheduler: AsyncChannel[SupervisorToScheduler] = AsyncChannel(reader, writer, SupervisorToScheduler)
            try:
                scheduler.send(ACK)
                await scheduler.drain()
                assert await client.receive() == ACK

                client.send(FINISHED)
                await client.drain()
                assert await scheduler.receive() == FINISHED
            finally:
                client.close()
                await close_stream(writer)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "partial", [b"", encode_frame(ACK)[:2], encode_frame(ACK)[:-1]], ids=["idle", "header", "body"]
)
def test_async_channel_receive_raises_channel_closed_when_the_peer_closes(partial: bytes) -> None:
    async def scenario() -> None:
        left, right = socket.socketpair()
        mine = await open_stream(left)
        peer = await open_stream(right)
        channel: AsyncChannel[SchedulerToSupervisor] = AsyncChannel(*mine, SchedulerToSupervisor)
        try:
            peer[1].write(partial)
            await close_stream(peer[1])

            with pytest.raises(ChannelClosed):
                await channel.receive()
        finally:
            await close_stream(mine[1])

    asyncio.run(scenario())


def test_async_channel_refuses_to_send_once_closed() -> None:
    async def scenario() -> None:
        left, right = socket.socketpair()
        mine = await open_stream(left)
        peer = await open_stream(right)
        channel: AsyncChannel[SchedulerToSupervisor] = AsyncChannel(*mine, SchedulerToSupervisor)
        try:
            assert not channel.closed
            channel.close()

            assert channel.closed
            with pytest.raises(ChannelClosed):
                channel.send(ACK)
        finally:
            await close_stream(mine[1])
            await close_stream(peer[1])

    asyncio.run(scenario())


def test_receive_many_returns_each_burst_of_frames_in_order_and_send_all_writes_them_at_once() -> None:
    big = big_run_job()  # larger than one read: its frame arrives over several reads

    async def scenario() -> None:
        left, right = socket.socketpair()
        scheduler_streams = await open_stream(left)
        supervisor_streams = await open_stream(right)
        scheduler: AsyncChannel[SupervisorToScheduler] = AsyncChannel(*scheduler_streams, SupervisorToScheduler)
        supervisor: AsyncChannel[SchedulerToSupervisor] = AsyncChannel(*supervisor_streams, SchedulerToSupervisor)
        try:
            scheduler.send_all([RUN, KILL, ACK, big, RUN])
            drained = asyncio.create_task(scheduler.drain())
            received: list[object] = []
            while len(received) < 5:
                burst = await supervisor.receive_many()
                assert burst, "receive_many returns at least one message"
                received += burst
            await drained
            assert received == [RUN, KILL, ACK, big, RUN]

            supervisor.send_all([])  # nothing to write is no frame at all
            supervisor.send(FINISHED)
            await supervisor.drain()
            assert await scheduler.receive_many() == [FINISHED]
        finally:
            await close_stream(scheduler_streams[1])
            await close_stream(supervisor_streams[1])

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "partial", [b"", encode_frame(ACK)[:2], encode_frame(ACK)[:-1]], ids=["idle", "header", "body"]
)
def test_receive_many_raises_channel_closed_when_the_peer_closes(partial: bytes) -> None:
    async def scenario() -> None:
        left, right = socket.socketpair()
        mine = await open_stream(left)
        peer = await open_stream(right)
        channel: AsyncChannel[SchedulerToSupervisor] = AsyncChannel(*mine, SchedulerToSupervisor)
        try:
            peer[1].write(partial)
            await close_stream(peer[1])

            with pytest.raises(ChannelClosed):
                await channel.receive_many()
        finally:
            await close_stream(mine[1])

    asyncio.run(scenario())
