"""The simulator's stand-in for Entra's token service: an RSA signing key published as a JWKS behind an
OpenID configuration, and Graph's ``validationTokens`` signed with it (v1 claims, as Graph's tokens carry).

Tokens use wall-clock time, not the simulator clock: the receiver checks ``exp`` against its own clock, as
with Entra. ``rotate`` replaces the signing key (a new ``kid``), optionally still publishing the old one.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

GRAPH_CHANGE_TRACKING_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
TOKEN_LIFETIME_S = 3600


@dataclass(frozen=True)
class SigningKey:
    """A private key and the ``kid`` its public half is published under."""

    kid: str
    private_key: rsa.RSAPrivateKey = field(repr=False)

    def jwk(self) -> dict[str, Any]:
        """The public key as Entra publishes it (kty, use, kid, n, e)."""
        numbers = self.private_key.public_key().public_numbers()
        return {"kty": "RSA", "use": "sig", "kid": self.kid, "n": _b64uint(numbers.n), "e": _b64uint(numbers.e)}


def _b64uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_signing_key() -> SigningKey:
    """A fresh 2048-bit key with a random ``kid``."""
    return SigningKey(uuid.uuid4().hex, rsa.generate_private_key(public_exponent=65537, key_size=2048))


@dataclass(frozen=True)
class TokenSpec:
    """How one token deviates from a good one (the faults)."""

    audience: str | None = None  # None: the subscribing app
    expired: bool = False
    foreign_key: bool = False  # signed with a key that is not published, under the published kid
    issuer: str | None = None
    publisher: str | None = None


class TokenIssuer:
    """Signs validation tokens and serves the documents a verifier fetches (counting the fetches)."""

    def __init__(self) -> None:
        self._initial = new_signing_key()
        self.current = self._initial
        self.published: list[SigningKey] = [self._initial]
        self._foreign = new_signing_key()
        self.fetches = {"configuration": 0, "keys": 0}

    def reset(self) -> None:
        """Back to the key the simulator started with; counters zeroed."""
        self.current = self._initial
        self.published = [self._initial]
        self.fetches = {"configuration": 0, "keys": 0}

    def rotate(self, keep_previous: bool = False) -> SigningKey:
        """Sign with a new key from now on; the old one stays published only if ``keep_previous``."""
        self.current = new_signing_key()
        self.published = [self.current, *self.published[:1]] if keep_previous else [self.current]
        return self.current

    def issue(self, app_id: str, tenant_id: str, spec: TokenSpec = TokenSpec()) -> str:
        """A validation token for the items of one (app, tenant) pair."""
        now = int(time.time())
        issued = now - 2 * TOKEN_LIFETIME_S if spec.expired else now
        issuer = spec.issuer or f"https://sts.windows.net/{tenant_id}/"
        claims = {
            "aud": spec.audience or app_id,
            "iss": issuer,
            "iat": issued,
            "nbf": issued,
            "exp": issued + TOKEN_LIFETIME_S,
            "appid": spec.publisher or GRAPH_CHANGE_TRACKING_APP_ID,
            "appidacr": "2",
            "idp": issuer,
            "tid": tenant_id,
            "ver": "1.0",
        }
        key = self._foreign.private_key if spec.foreign_key else self.current.private_key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.current.kid, "x5t": self.current.kid})

    def openid_configuration(self, root_url: str) -> dict[str, Any]:
        """The v1 common configuration's fields a verifier reads."""
        self.fetches["configuration"] += 1
        return {
            "issuer": "https://sts.windows.net/{tenantid}/",
            "jwks_uri": f"{root_url}/common/discovery/keys",
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def jwks(self) -> dict[str, Any]:
        """The published signing keys."""
        self.fetches["keys"] += 1
        return {"keys": [key.jwk() for key in self.published]}
