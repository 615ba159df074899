"""The issuer's token-signing keys, from its OpenID configuration (``jwks_uri``), cached per process.

Entra rotates signing keys (the docs say daily), so a token may name a ``kid`` we have not seen: that triggers
one refresh, shared by every caller waiting for it, and at most one per ``min_refresh_interval_s`` — a flood
of tokens with made-up key ids costs one fetch per interval, not one per token. The cache also expires after
``max_age_s``; if that refresh fails, the keys we hold stay in use (and the next try waits for the interval).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import jwt

from shared.richdata.errors import SigningKeysUnavailableError, UnknownSigningKeyError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

FetchJson = Callable[[str], Awaitable[Any]]  # GET a URL → its parsed JSON; raises on any failure
# The v1 endpoint: its tokens' issuer is https://sts.windows.net/{tenantId}/ (Graph's validation tokens).
ENTRA_OPENID_CONFIGURATION = "https://login.microsoftonline.com/common/.well-known/openid-configuration"
MAX_KEYS = 100


class SigningKeys:
    """``kid`` → public key, fetched lazily, refreshed on age or on an unknown ``kid`` (bounded)."""

    def __init__(
        self,
        fetch_json: FetchJson,
        configuration_url: str = ENTRA_OPENID_CONFIGURATION,
        *,
        max_age_s: float = 3600.0,
        min_refresh_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch_json = fetch_json
        self._configuration_url = configuration_url
        self._max_age_s = max_age_s
        self._min_refresh_interval_s = min_refresh_interval_s
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._tried_at: float | None = None  # last attempt, successful or not
        self._lock = asyncio.Lock()
        self.fetches = 0  # attempts (for tests and the status page)

    async def key(self, kid: str) -> jwt.PyJWK:
        """The key ``kid`` names; ``UnknownSigningKeyError`` when the issuer does not publish it."""
        if self._fetched_at is None:
            await self._refresh(required=True)
        elif self._clock() - self._fetched_at >= self._max_age_s and self._may_refresh():
            await self._refresh(required=False)
        found = self._keys.get(kid)
        if found is None and self._may_refresh():
            await self._refresh(required=False)
            found = self._keys.get(kid)
        if found is None:
            raise UnknownSigningKeyError(f"the issuer publishes no signing key {kid[:64]!r}")
        return found

    def _may_refresh(self) -> bool:
        return self._tried_at is None or self._clock() - self._tried_at >= self._min_refresh_interval_s

    async def _refresh(self, *, required: bool) -> None:
        """One fetch at a time; a caller that waited for another's fetch uses its result."""
        started = self._tried_at
        async with self._lock:
            if self._tried_at != started:
                if required and self._fetched_at is None:
                    raise SigningKeysUnavailableError("the issuer's signing keys could not be fetched")
                return
            self._tried_at = self._clock()
            self.fetches += 1
            try:
                keys = await self._fetch_keys()
            except Exception as error:  # any failure of the fetch or the documents: keep what we hold
                log.warning("signing keys not refreshed from %s: %s", self._configuration_url, error)
                if required or not self._keys:
                    raise SigningKeysUnavailableError(
                        f"the issuer's signing keys could not be fetched from {self._configuration_url}"
                    ) from error
                return
            self._keys, self._fetched_at = keys, self._tried_at

    async def _fetch_keys(self) -> dict[str, jwt.PyJWK]:
        configuration = await self._fetch_json(self._configuration_url)
        jwks_uri = configuration.get("jwks_uri") if isinstance(configuration, Mapping) else None
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise ValueError("the OpenID configuration has no jwks_uri")
        document = await self._fetch_json(jwks_uri)
        raw_keys = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(raw_keys, list):
            raise ValueError("the key set has no 'keys' array")
        keys: dict[str, jwt.PyJWK] = {}
        for raw in raw_keys[:MAX_KEYS]:
            parsed = _signing_key(raw)
            if parsed is not None:
                keys[parsed[0]] = parsed[1]
        if not keys:
            raise ValueError("the key set holds no usable RSA signing key")
        return keys


def _signing_key(raw: Any) -> tuple[str, jwt.PyJWK] | None:
    """An RSA signature key with a ``kid``; anything else in the set is skipped."""
    if not isinstance(raw, Mapping) or raw.get("kty") != "RSA" or raw.get("use", "sig") != "sig":
        return None
    kid = raw.get("kid")
    if not isinstance(kid, str) or not kid:
        return None
    try:
        return kid, jwt.PyJWK(dict(raw), algorithm="RS256")
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        return None


def httpx_fetch_json(client: httpx.AsyncClient) -> FetchJson:
    """A ``FetchJson`` over an ``httpx.AsyncClient`` (the caller owns and closes the client)."""

    async def fetch(url: str) -> Any:
        response = await client.get(url)
        response.raise_for_status()
        return response.json()

    return fetch
