"""A generic two-tier cache: per-process memory (L1) over Table Storage (L2), with ``get_or_set``.

It knows nothing of Graph: callers name values with ``CacheKey`` and pass a ``fetch`` coroutine. See
``manager`` for how a call is answered and ``keys``/``table`` for the storage layout.
"""

from shared.cache.keys import CacheKey
from shared.cache.listener import CacheListener, SilentListener
from shared.cache.manager import CacheManager
from shared.cache.policy import CachePolicy, Freshness
from shared.cache.result import CacheResult, Source
from shared.cache.stats import CacheStats
from shared.cache.table import TableTier

__all__ = [
    "CacheKey",
    "CacheListener",
    "CacheManager",
    "CachePolicy",
    "CacheResult",
    "CacheStats",
    "Freshness",
    "SilentListener",
    "Source",
    "TableTier",
]
