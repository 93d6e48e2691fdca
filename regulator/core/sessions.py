"""Console sessions: what the store keeps of a signed-in browser, and when it ends.

The browser's cookie holds a random session id (``secrets.token_urlsafe(32)``); the
store keeps only :func:`session_key` of it, so a copy of the store (a Redis dump, a
backup of the SQLite file) opens no console. A session names the API token it was
opened with and that token's fingerprint at sign-in: the web layer checks both against
the tokens in force on every request, so a token removed from (or changed in) the
tokens file ends its sessions at once on every replica, without scanning the store.

A session ends ``idle`` after its last use or ``max_age`` after sign-in, whichever
comes first. Its last use is written back at most every :data:`TOUCH_EVERY` (one write
a minute per console, not one per request): the idle timeout is then up to that much
early, never late.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

#: How stale the stored "last use" may get before a request writes it back.
TOUCH_EVERY = timedelta(minutes=1)


def session_key(session_id: str) -> str:
    """What the store keeps of a session id: its SHA-256 (hex), never the id itself."""
    return hashlib.sha256(b"session:" + session_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """One signed-in console (times are aware UTC datetimes)."""

    key: str  # session_key(the cookie's id)
    token_name: str
    token_fingerprint: str  # TokenBook.fingerprint(token_name) at sign-in
    created_at: datetime
    seen_at: datetime
    idle: timedelta
    max_age: timedelta

    @property
    def expires_at(self) -> datetime:
        """When the session ends if it is not used again."""
        return min(self.created_at + self.max_age, self.seen_at + self.idle)

    def alive(self, now: datetime) -> bool:
        return now < self.expires_at

    def needs_touch(self, now: datetime) -> bool:
        """Whether a use at ``now`` should be written back (see :data:`TOUCH_EVERY`)."""
        return now - self.seen_at >= TOUCH_EVERY

    def touched(self, now: datetime) -> ConsoleSession:
        return replace(self, seen_at=max(now, self.seen_at))

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "token_name": self.token_name,
            "token_fingerprint": self.token_fingerprint,
            "created_at": self.created_at.astimezone(UTC).isoformat(),
            "seen_at": self.seen_at.astimezone(UTC).isoformat(),
            "idle_s": int(self.idle.total_seconds()),
            "max_age_s": int(self.max_age.total_seconds()),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConsoleSession:
        return cls(
            key=str(data["key"]),
            token_name=str(data["token_name"]),
            token_fingerprint=str(data["token_fingerprint"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            seen_at=datetime.fromisoformat(data["seen_at"]),
            idle=timedelta(seconds=int(data["idle_s"])),
            max_age=timedelta(seconds=int(data["max_age_s"])),
        )


__all__ = ["TOUCH_EVERY", "ConsoleSession", "session_key"]
