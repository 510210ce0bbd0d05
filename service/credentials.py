"""API key material: the scopes, the key format, and how a secret is stored and checked.

Pure functions, shared by the API (which checks presented keys) and the CLI (which creates them), so
the format and the hash exist once. A key reads `tq_<key_id>_<secret>`: the key id (12 hex digits) finds
the row without revealing anything, the secret (32 random bytes, URL-safe base64) proves possession.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

SUBMIT = "submit"
READ = "read"
ADMIN = "admin"
SCOPES: tuple[str, ...] = (SUBMIT, READ, ADMIN)  # the order keys are listed and documented in
ALL_SCOPES = frozenset(SCOPES)

PREFIX = "tq_"
_KEY = re.compile(r"^tq_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
KEY_ID = re.compile(r"^[0-9a-f]{12}$")
NAME_MAX = 100


class NewKey:
    """A key just made: the only moment its secret exists outside the client."""

    __slots__ = ("digest", "key_id", "salt", "secret")

    def __init__(self, key_id: str, secret: str, salt: bytes, digest: bytes) -> None:
        self.key_id, self.secret, self.salt, self.digest = key_id, secret, salt, digest

    @property
    def key(self) -> str:
        return f"{PREFIX}{self.key_id}_{self.secret}"

    def __repr__(self) -> str:  # the secret must not reach a log by accident
        return f"NewKey(key_id={self.key_id!r})"


def new_key() -> NewKey:
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    return NewKey(secrets.token_hex(6), secret, salt, digest(salt, secret))


def digest(salt: bytes, secret: str) -> bytes:
    """Salted SHA-256. A slow KDF (bcrypt, scrypt, argon2) protects guessable passwords; these secrets
    are 256 random bits, which no offline search can enumerate, so one fast hash is enough and keeps a
    check at about a microsecond. The salt keeps equal digests from ever revealing equal secrets."""
    return hashlib.sha256(salt + secret.encode()).digest()


def parse_key(token: str) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed key; None for anything else."""
    match = _KEY.match(token)
    return (match[1], match[2]) if match else None


def matches(secret: str, salt: bytes, stored: bytes) -> bool:
    return hmac.compare_digest(digest(salt, secret), stored)


def scope_problem(scopes: Iterable[object]) -> str | None:
    """Why a list of scopes cannot be a key's, or None when it can."""
    listed = list(scopes)
    if not listed:
        return f"must name at least one of: {', '.join(SCOPES)}"
    unknown = [s for s in listed if s not in ALL_SCOPES]
    if unknown:
        return f"unknown scope {unknown[0]!r}; expected some of: {', '.join(SCOPES)}"
    return None


def name_problem(name: str) -> str | None:
    if not 1 <= len(name) <= NAME_MAX:
        return f"must be 1-{NAME_MAX} characters"
    if "\x00" in name:
        return "must not contain the NUL character"
    return None


def ordered(scopes: Iterable[str]) -> list[str]:
    """Scopes without repeats, in the documented order: a key's scopes read the same however given."""
    given = set(scopes)
    return [s for s in SCOPES if s in given]
