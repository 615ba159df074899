"""The ``validationTokens`` of a rich notification POST: proof that Microsoft Graph sent it.

Graph adds one JWT per distinct (app, tenant) pair among the POST's items. Each is checked (docs: "Validating
the authenticity of notifications"): its signature against the issuer's published keys (``signing_keys``),
its lifetime, its issuer ``https://sts.windows.net/{tenantId}/`` for a tenant of the items, its audience (our
app id) and its publisher: the ``appid`` claim (``azp`` in v2 tokens) must be Graph's change-tracking app.
Every token must pass, and every tenant of the items must be covered by one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import jwt

from shared.richdata.errors import (
    MalformedTokenError,
    MissingTokensError,
    TokenExpiredError,
    TokenNotYetValidError,
    TokenSignatureError,
    UncoveredTenantError,
    WrongAudienceError,
    WrongIssuerError,
    WrongPublisherError,
)
from shared.richdata.signing_keys import SigningKeys

GRAPH_CHANGE_TRACKING_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
ISSUER_PREFIX, ISSUER_SUFFIX = "https://sts.windows.net/", "/"
MAX_TOKENS = 50  # one per (app, tenant) pair of a POST; far more is not Graph
MAX_TOKEN_CHARS = 16 * 1024


def issuer_for(tenant_id: str) -> str:
    """The issuer Graph's validation tokens carry for a tenant (v1 tokens)."""
    return f"{ISSUER_PREFIX}{tenant_id}{ISSUER_SUFFIX}"


@dataclass(frozen=True)
class TokenPolicy:
    """What a valid token must say. ``audiences``: our app id(s); ``leeway_s``: clock skew allowed."""

    audiences: frozenset[str]
    publisher_app_id: str = GRAPH_CHANGE_TRACKING_APP_ID
    leeway_s: float = 60.0
    algorithms: tuple[str, ...] = ("RS256",)


@dataclass(frozen=True)
class VerifiedToken:
    """What a token that passed proves: Graph sent items of ``tenant_id`` for ``audience``."""

    tenant_id: str
    audience: str
    expires_at: int


class TokenValidator:
    """Validates the tokens of one POST against the tenants of its rich items."""

    def __init__(self, keys: SigningKeys, policy: TokenPolicy) -> None:
        if not policy.audiences:
            raise ValueError("a token policy needs at least one audience (our app id)")
        self._keys = keys
        self._policy = policy

    async def validate_all(self, tokens: Any, tenant_ids: Collection[str]) -> list[VerifiedToken]:
        """Every token valid and every tenant covered, or the first failure as a typed error."""
        if not isinstance(tokens, list) or not tokens:
            raise MissingTokensError("the POST carries resource data but no validationTokens")
        if len(tokens) > MAX_TOKENS:
            raise MalformedTokenError(f"{len(tokens)} validation tokens; at most {MAX_TOKENS} are accepted")
        verified = [await self.validate(token, tenant_ids) for token in tokens]
        uncovered = set(tenant_ids) - {token.tenant_id for token in verified}
        if uncovered:
            raise UncoveredTenantError(f"no validation token for {len(uncovered)} tenant(s) of the POST's items")
        return verified

    async def validate(self, token: Any, tenant_ids: Iterable[str]) -> VerifiedToken:
        """One token: signature, lifetime, audience, issuer, publisher."""
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
            raise MalformedTokenError(f"a validation token must be a string of 1 to {MAX_TOKEN_CHARS} characters")
        kid = _key_id(token)
        key = await self._keys.key(kid)
        claims = self._decode(token, key)
        issuer = claims.get("iss")
        tenants = {issuer_for(tenant): tenant for tenant in tenant_ids}
        if not isinstance(issuer, str) or issuer not in tenants:
            raise WrongIssuerError("the token's issuer is not the token service of a tenant of the POST's items")
        publisher = claims["appid"] if "appid" in claims else claims.get("azp")
        if publisher != self._policy.publisher_app_id:
            raise WrongPublisherError("the token was not issued to Microsoft Graph's change-tracking app")
        return VerifiedToken(tenants[issuer], str(claims["aud"]), int(claims["exp"]))

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(self._policy.algorithms),
                audience=sorted(self._policy.audiences),
                leeway=self._policy.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidSignatureError as error:
            raise TokenSignatureError("the token's signature does not verify") from error
        except jwt.InvalidAlgorithmError as error:
            raise TokenSignatureError("the token is signed with an algorithm we do not accept") from error
        except jwt.ExpiredSignatureError as error:
            raise TokenExpiredError("the token has expired") from error
        except jwt.ImmatureSignatureError as error:
            raise TokenNotYetValidError("the token is not valid yet") from error
        except jwt.InvalidAudienceError as error:
            raise WrongAudienceError("the token was issued for another app (audience)") from error
        except jwt.InvalidTokenError as error:  # decode errors, missing claims, malformed claims
            raise MalformedTokenError(f"the token is not a valid JWT: {type(error).__name__}") from error
        return claims


def _key_id(token: str) -> str:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as error:
        raise MalformedTokenError("the token's header is not readable") from error
    kid = header.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= 256:
        raise MalformedTokenError("the token's header names no key id (kid)")
    return kid
