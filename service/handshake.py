"""The handshake that opens every link between two nodes of a cluster: a mutual HMAC challenge on the
cluster's shared secret (`TASKQ_CLUSTER_SECRET`), before any frame.

    leader  -> client: MAGIC, a 32-byte random nonce Ns
    client  -> leader: HMAC(secret, "client" | Ns | Nc), its own nonce Nc
    leader  -> client: HMAC(secret, "leader" | Nc | Ns)

Each side proves it holds the secret without sending it, and fresh nonces on both sides make a
recorded exchange useless for another link. A peer that fails is dropped (and logged by the caller).
The frames that follow are not encrypted: run the cluster port on a private network (ARCHITECTURE.md,
"Cluster").
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os

MAGIC = b"TQL1"
NONCE_BYTES = 32
MAC_BYTES = 32
TIMEOUT_SECONDS = 5.0


class HandshakeFailed(ConnectionError):
    """The peer does not hold the cluster secret, or does not speak the protocol."""


def _mac(secret: bytes, role: bytes, first: bytes, second: bytes) -> bytes:
    return hmac.new(secret, role + first + second, hashlib.sha256).digest()


async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: bytes) -> None:
    """The listening side (the leader). Raises HandshakeFailed."""
    server_nonce = os.urandom(NONCE_BYTES)
    writer.write(MAGIC + server_nonce)
    try:
        await writer.drain()
        answer = await asyncio.wait_for(reader.readexactly(MAC_BYTES + NONCE_BYTES), TIMEOUT_SECONDS)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        raise HandshakeFailed(f"no answer to the challenge: {exc!r}") from exc
    mac, client_nonce = answer[:MAC_BYTES], answer[MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, b"client", server_nonce, client_nonce)):
        raise HandshakeFailed("wrong answer to the challenge: the peer does not hold the cluster secret")
    writer.write(_mac(secret, b"leader", client_nonce, server_nonce))
    await writer.drain()


async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: bytes) -> None:
    """The connecting side. Raises HandshakeFailed."""
    try:
        hello = await asyncio.wait_for(reader.readexactly(len(MAGIC) + NONCE_BYTES), TIMEOUT_SECONDS)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        raise HandshakeFailed(f"no challenge from the peer: {exc!r}") from exc
    if not hello.startswith(MAGIC):
        raise HandshakeFailed("the peer is not a taskq leader")
    server_nonce = hello[len(MAGIC) :]
    client_nonce = os.urandom(NONCE_BYTES)
    writer.write(_mac(secret, b"client", server_nonce, client_nonce) + client_nonce)
    try:
        await writer.drain()
        proof = await asyncio.wait_for(reader.readexactly(MAC_BYTES), TIMEOUT_SECONDS)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        raise HandshakeFailed(f"the peer refused the answer: {exc!r}") from exc
    if not hmac.compare_digest(proof, _mac(secret, b"leader", client_nonce, server_nonce)):
        raise HandshakeFailed("the peer does not hold the cluster secret")
