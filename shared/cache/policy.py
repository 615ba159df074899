"""Every tunable of the cache in one frozen object, with defaults that are safe for Graph data.

The lead wires these to settings; nothing here reads the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class Freshness:
    """How long one namespace's values stay usable, all in seconds from the moment they were fetched.

    - ``soft_ttl``: fresh; served as a hit.
    - ``hard_ttl``: between soft and hard the value is served marked ``stale`` while one background
      refresh runs; past hard a caller waits for a fetch.
    - ``max_staleness``: how old a value may be when it is served because the fetch failed with a
      ``TransientError``; also when the row becomes garbage for the sweeper.
    - ``negative_ttl``: how long a ``NotFoundError`` is remembered and re-raised without fetching.
    """

    soft_ttl: float = 60.0
    hard_ttl: float = 300.0
    max_staleness: float = 3600.0
    negative_ttl: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.soft_ttl <= self.hard_ttl <= self.max_staleness:
            raise ValueError(f"need 0 < soft_ttl <= hard_ttl <= max_staleness, got {self}")
        if self.negative_ttl <= 0:
            raise ValueError(f"negative_ttl must be positive, got {self.negative_ttl}")


@dataclass(frozen=True)
class CachePolicy:
    """Process-wide cache settings.

    - ``l1_max_entries`` / ``l1_max_bytes``: bound of the in-process tier (LRU eviction beyond either).
    - ``l1_ttl``: how long this process trusts its own copy without asking Table Storage; it is also the
      bound on how late another instance's *key* invalidation is seen here.
    - ``generation_ttl``: how long a group's generation is trusted locally; the bound on how late another
      instance's *group* invalidation is seen here (this instance's own invalidations apply at once).
    - ``freshness`` / ``namespaces``: the default ``Freshness`` and per-namespace overrides.
    - ``lease_duration``: a refresh lease older than this is presumed abandoned and may be taken over.
    - ``lease_wait`` / ``lease_poll_interval``: how long a miss that finds the lease taken polls Table
      Storage for the holder's value before serving stale or fetching anyway.
    - ``storage_timeout``: bound of each Table call, so a sick Table cannot hold a request for long.
    - ``storage_cooldown``: after a Table failure the cache skips Table Storage for this long (behaves as
      L1 + upstream), so an outage costs one timeout per cooldown, not one per request.
    - ``compress_min_bytes``: JSON smaller than this is stored as is (zlib would not pay off).
    """

    l1_max_entries: int = 2048
    l1_max_bytes: int = 64 * 1024 * 1024
    l1_ttl: float = 1.0
    generation_ttl: float = 1.0
    freshness: Freshness = field(default_factory=Freshness)
    namespaces: Mapping[str, Freshness] = field(default_factory=lambda: MappingProxyType({}))
    lease_duration: float = 15.0
    lease_wait: float = 2.0
    lease_poll_interval: float = 0.05
    storage_timeout: float = 2.0
    storage_cooldown: float = 5.0
    compress_min_bytes: int = 1024

    def __post_init__(self) -> None:
        positive = {
            "l1_max_entries": self.l1_max_entries,
            "l1_max_bytes": self.l1_max_bytes,
            "lease_duration": self.lease_duration,
            "lease_poll_interval": self.lease_poll_interval,
            "storage_timeout": self.storage_timeout,
        }
        not_negative = {
            "l1_ttl": self.l1_ttl,
            "generation_ttl": self.generation_ttl,
            "lease_wait": self.lease_wait,
            "storage_cooldown": self.storage_cooldown,
            "compress_min_bytes": self.compress_min_bytes,
        }
        bad = [f"{k}={v} (must be > 0)" for k, v in positive.items() if v <= 0]
        bad += [f"{k}={v} (must be >= 0)" for k, v in not_negative.items() if v < 0]
        if bad:
            raise ValueError("invalid CachePolicy: " + ", ".join(bad))
        object.__setattr__(self, "namespaces", MappingProxyType(dict(self.namespaces)))

    def freshness_for(self, namespace: str) -> Freshness:
        """The namespace's override, else the default."""
        return self.namespaces.get(namespace, self.freshness)
