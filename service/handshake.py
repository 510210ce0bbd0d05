"""The handshake that opens every link between two nodes of a cluster: a mutual HMAC challenge on the
cluster's shared secret (`TASKQ_CLUSTER_SECRET`), before any frame.

    leader  -> client: MAGIC, a 32-byte random nonce Ns
    client  -> leader: HMAC(secret, "client" | Ns | Nc), its own nonce Nc
    leader  -> client: HMAC(secret, "leader" | Nc | Ns)

Each side proves it holds the secret without sending it, and fresh nonces on both sides make a
recorded exchange useless for another link. A peer that fails is dropped (and logged by the caller).
With `TASKQ_CLUSTER_TLS_CERT`, `_KEY` and `_CA` set, the link is mutual TLS first (each side presents
a certificate signed by the cluster's CA) and the challenge runs inside it; without them the frames
that follow are not encrypted, and the cluster port belongs on a private network.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import ssl

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


def server_tls(cert: str, key: str, ca: str) -> ssl.SSLContext:
    """The leader's side: its certificate, and a client certificate signed by the cluster's CA required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def client_tls(cert: str, key: str, ca: str) -> ssl.SSLContext:
    """The relaying side. The leader's certificate must chain to the cluster's CA; its name is not
    checked, because nodes are reached at whatever TASKQ_ADVERTISE_HOST says (often an address), and a
    certificate from the cluster's own CA plus the secret's challenge already say it is a node."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    context.check_hostname = False
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
