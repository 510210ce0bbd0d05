"""Length-prefixed msgpack frames over stream sockets: the one wire format between actors.

A frame is a 4-byte big-endian length followed by a msgpack body that decodes to one protocol Struct.
`AsyncChannel` serves the asyncio actors (api, scheduler); `FrameBuffer` and `send_frame` serve the
select-based supervisor and the workers, which must stay single-threaded so that forking is safe.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
from collections import deque
from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")

_HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024

_encoder = msgspec.msgpack.Encoder()


class ChannelClosed(ConnectionError):
    """The peer went away; whatever it did not acknowledge must be re-sent or reconciled."""


def encode_frame(message: Any) -> bytes:
    body = _encoder.encode(message)
    return _HEADER.pack(len(body)) + body


class AsyncChannel(Generic[T]):
    """One end of a stream socket carrying frames; decodes incoming frames to `T`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, incoming: Any) -> None:
        self._reader = reader
        self._writer = writer
        self._frames: FrameBuffer[T] = FrameBuffer(incoming)
        self._ready: deque[T] = deque()  # decoded, not yet handed out by `receive`

    @classmethod
    async def connect(cls, path: str, incoming: Any) -> AsyncChannel[T]:
        reader, writer = await asyncio.open_unix_connection(path, limit=MAX_FRAME)
        return cls(reader, writer, incoming)

    async def receive(self) -> T:
        """The next message."""
        if not self._ready:
            self._ready.extend(await self._read())
        return self._ready.popleft()

    async def receive_many(self) -> list[T]:
        """Every complete frame that has arrived (at least one): one wake-up of the reading task per
        burst of frames rather than two per frame."""
        if self._ready:
            ready = list(self._ready)
            self._ready.clear()
            return ready
        return await self._read()

    async def _read(self) -> list[T]:
        while True:
            try:
                data = await self._reader.read(1 << 16)
            except ConnectionError as exc:
                raise ChannelClosed(str(exc)) from exc
            if not data:
                raise ChannelClosed("peer closed the socket")
            messages = self._frames.feed(data)
            if messages:
                return messages

    def send(self, message: Any) -> None:
        """Queue a frame; the transport writes it without blocking the loop."""
        if self._writer.is_closing():
            raise ChannelClosed("channel is closed")
        self._writer.write(encode_frame(message))

    def send_all(self, messages: list[Any]) -> None:
        """Queue several frames as one write (one system call instead of one per frame)."""
        if not messages:
            return
        if self._writer.is_closing():
            raise ChannelClosed("channel is closed")
        self._writer.write(b"".join(encode_frame(message) for message in messages))

    async def drain(self) -> None:
        try:
            await self._writer.drain()
        except ConnectionError as exc:
            raise ChannelClosed(str(exc)) from exc

    def close(self) -> None:
        self._writer.close()

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()


@functools.cache
def _decoder_for(incoming: Any) -> msgspec.msgpack.Decoder[Any]:
    # Building a decoder for a tagged union walks every member type; the supervisor makes a buffer per
    # worker, so building one each time cost about 6% of its CPU at a few hundred jobs a second.
    return msgspec.msgpack.Decoder(incoming)


class FrameBuffer(Generic[T]):
    """Reassembles frames from the bytes a non-blocking socket hands over, for select loops."""

    def __init__(self, incoming: Any) -> None:
        self._buffer = bytearray()
        self._decoder: msgspec.msgpack.Decoder[T] = _decoder_for(incoming)

    def feed(self, data: bytes) -> list[T]:
        buffer = self._buffer
        buffer += data
        messages: list[T] = []
        start, size = 0, len(buffer)
        with memoryview(buffer) as view:  # frames decoded in place: no copy of each body
            while size - start >= _HEADER.size:
                (length,) = _HEADER.unpack_from(buffer, start)
                _check_length(length)
                end = start + _HEADER.size + length
                if size < end:
                    break
                messages.append(self._decoder.decode(view[start + _HEADER.size : end]))
                start = end
        del buffer[:start]  # once per feed, after the view is released
        return messages


def send_frame(sock: socket.socket, message: Any) -> None:
    """Blocking send of one frame (the socket may be non-blocking: then it waits for room)."""
    send_bytes(sock, encode_frame(message))


def send_bytes(sock: socket.socket, payload: bytes) -> None:
    """Blocking send of encoded frames (the socket may be non-blocking: then it waits for room)."""
    data = memoryview(payload)
    while data:
        try:
            sent = sock.send(data)
        except BlockingIOError:
            import select

            select.select([], [sock], [])
            continue
        data = data[sent:]


def receive_frame(sock: socket.socket, decoder: msgspec.msgpack.Decoder[T]) -> T:
    """Blocking receive of one frame, for the worker's simple request/response life."""
    header = _receive_exactly(sock, _HEADER.size)
    (length,) = _HEADER.unpack(header)
    _check_length(length)
    return decoder.decode(_receive_exactly(sock, length))


def _check_length(length: int) -> None:
    if length > MAX_FRAME:  # a corrupt header must not make us allocate gigabytes
        raise ChannelClosed(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ChannelClosed("peer closed the socket")
        chunks += chunk
    return bytes(chunks)
