"""Cache keys and where their rows live in the cache table.

Callers pass arbitrary text (user ids, `$filter` strings, next links); only hashes reach Table keys, so
no input can produce a forbidden character or an over-long key. Layout of the one cache table::

    PartitionKey            RowKey        row
    <namespace>.<xx>        v~<sha256>    the value (or a negative entry, or an invalidation tombstone)
    <namespace>.<xx>        l~<sha256>    the refresh lease of that value
    ~gen.<n>                g~<sha256>    a group's generation (never expires, never swept)

``xx`` is the first two hex digits of the hash: 256 partitions per namespace spread the load (Table
Storage serves about 2,000 entities/s per partition) while keeping a value and its lease together.
Generations use only ``GENERATION_PARTITIONS`` partitions (``n`` = 0 or 1): invalidating the groups of a
whole queue message is then a few entity-group transactions, not one write per group; their reads are
served from memory (``generation_ttl``), so the narrow partitions see mostly writes.
Namespaces are code constants (they pick a ``Freshness``), so they are validated, not hashed; ``~``
cannot appear in one, which keeps generation partitions apart from value partitions.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

_NAMESPACE = re.compile(r"[a-z][a-z0-9_-]{0,39}")
PARTITION_HEX = 2
VALUE_PREFIX = "v~"
LEASE_PREFIX = "l~"
GENERATION_PREFIX = "g~"
GENERATION_PARTITION = "~gen"
GENERATION_PARTITIONS = 2


def _digest(*parts: str) -> str:
    # Length-prefixed parts: ("ab", "c") and ("a", "bc") never hash alike.
    joined = "".join(f"{len(p)}:{p}" for p in parts)
    return hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """What a cached value is called: ``namespace`` (picks the freshness policy), ``key`` (any text) and
    an optional ``group`` (any text) whose invalidation drops every value in it at once."""

    namespace: str
    key: str
    group: str | None = None
    digest: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAMESPACE.fullmatch(self.namespace):
            raise ValueError(f"cache namespace must match {_NAMESPACE.pattern}, got {self.namespace!r}")
        object.__setattr__(self, "digest", _digest(self.namespace, self.key))

    @property
    def partition_key(self) -> str:
        return f"{self.namespace}.{self.digest[:PARTITION_HEX]}"

    @property
    def value_row_key(self) -> str:
        return VALUE_PREFIX + self.digest

    @property
    def lease_row_key(self) -> str:
        return LEASE_PREFIX + self.digest


@dataclass(frozen=True)
class GroupAddress:
    """Where a group's generation row lives."""

    partition_key: str
    row_key: str


def group_address(group: str) -> GroupAddress:
    digest = _digest("group", group)
    bucket = int(digest[:8], 16) % GENERATION_PARTITIONS
    return GroupAddress(f"{GENERATION_PARTITION}.{bucket}", GENERATION_PREFIX + digest)
