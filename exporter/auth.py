"""Basic auth at run time: `Authorization: Basic …` checked against the web config's bcrypt hashes, one
bcrypt at a time, successes cached (as exporter-toolkit does). The hashes come from `webconfig`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading

import bcrypt


class BasicAuth:
    """Checks `Authorization: Basic …` against bcrypt hashes in constant time; caches verified pairs."""

    def __init__(self, users: dict[str, bytes]) -> None:
        self._users = users
        self._dummy: bytes | None = None
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def _dummy_hash(self) -> bytes:
        """Checked for unknown users, at the highest cost configured, so a wrong name takes as long as a
        wrong password and timing does not tell which user names exist. Made on first need, not at start."""
        if self._dummy is None:
            rounds = max(int(hashed.split(b"$")[2]) for hashed in self._users.values())
            self._dummy = bcrypt.hashpw(b"no such user", bcrypt.gensalt(rounds=rounds))
        return self._dummy

    @staticmethod
    def credentials(header: str | None) -> tuple[str, str] | None:
        """User and password of an `Authorization: Basic …` header (the scheme in any case, RFC 7617)."""
        scheme, _, encoded = (header or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user, password

    def _lookup(self, user: str, password: str) -> tuple[bool, bytes, bytes]:
        """Whether `user` is known (compared in constant time), its hash, and the pair's cache key."""
        known = next((name for name in self._users if hmac.compare_digest(name.encode(), user.encode())), None)
        hashed = self._users[known] if known is not None else b""
        # Keyed by the hash too, so changing a user's hash in a reload invalidates the cache entry.
        key = hashlib.sha256(b"\0".join([user.encode(), password.encode(), hashed])).digest()
        return known is not None, hashed, key

    def _verified_before(self, known: bool, key: bytes) -> bool:
        with self._lock:
            return known and key in self._verified

    def cached(self, user: str, password: str) -> bool:
        """Whether this pair was verified before: a cheap check that never waits for bcrypt."""
        known, _, key = self._lookup(user, password)
        return self._verified_before(known, key)

    def verify(self, user: str, password: str) -> bool:
        """The bcrypt check, one at a time (as exporter-toolkit does), so a flood of wrong passwords takes one
        CPU, not all; a success is cached, so an authorised client pays bcrypt once."""
        known, hashed, key = self._lookup(user, password)
        if self._verified_before(known, key):
            return True
        with self._bcrypt_lock:
            try:
                matches = bcrypt.checkpw(password.encode(), hashed if known else self._dummy_hash())
            except ValueError:  # bcrypt 5 refuses passwords over 72 bytes; no configured one can be that long
                matches = False
        ok = matches and known
        if ok:
            with self._lock:
                self._verified.add(key)
        return ok
