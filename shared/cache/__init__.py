"""A generic two-tier cache: per-process memory (L1) over Table Storage (L2), with ``get_or_set``.

It knows nothing of Graph: callers name values with ``CacheKey`` and pass a ``fetch`` coroutine. See
``manager`` for how a call is answered and ``keys``/``table`` for the storage layout.
"""

from shared.cache.keys import CacheKey
from shared.cache.manager import CacheManager, CacheResult, Source
from shared.cache.policy import CachePolicy, Freshness
from shared.cache.stats import CacheStats
from shared.cache.table import TableTier

__all__ = ["CacheKey", "CacheManager", "CachePolicy", "CacheResult", "CacheStats", "Freshness", "Source", "TableTier"]
