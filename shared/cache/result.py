"""What ``get_or_set`` answers (``CacheResult`` and its ``Source``) and how entries become answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from shared.cache.codec import content_hash, decode_json, encode_json
from shared.cache.entry import Entry
from shared.errors import NotFoundError

T = TypeVar("T")
# "bypass": fetched upstream while Table Storage was unavailable (kept in L1 only, not shared).
Source = Literal["hit-l1", "hit-l2", "miss", "bypass", "stale", "mirror"]  # mirror: the directory mirror


@dataclass(frozen=True)
class CacheResult(Generic[T]):
    """A value and where it came from. ``age`` is seconds since it was fetched upstream (0 for a miss)."""

    value: T
    source: Source
    age: float
    content_hash: str

    @property
    def etag(self) -> str:
        """A strong HTTP ETag: equal values have equal hashes on every instance."""
        return f'"{self.content_hash}"'


def is_stale(answer: CacheResult[Any] | Entry | None) -> bool:
    return isinstance(answer, CacheResult) and answer.source == "stale"


def result_of(entry: Entry, source: Source, now: float) -> CacheResult[Any]:
    return CacheResult(decode_json(entry.payload), source, entry.age(now), entry.content_hash)


def negative_entry(exc: NotFoundError, fetched_at: float, expires_at: float, generation: str) -> Entry:
    """A cached ``NotFoundError``: its details, so each reader can raise an equal one."""
    details = {
        "message": exc.message,
        "code": exc.code,
        "status": exc.status,
        "service": exc.service,
        "upstream_code": exc.upstream_code,
    }
    payload = encode_json(details)
    return Entry(payload, content_hash(payload), fetched_at, expires_at, generation, negative=True)


def not_found(entry: Entry) -> NotFoundError:
    """A fresh exception per caller (re-raising one shared instance would pile up tracebacks)."""
    details = decode_json(entry.payload)
    return NotFoundError(
        details["message"],
        code=details["code"],
        status=details["status"],
        service=details["service"],
        upstream_code=details["upstream_code"],
    )
