"""A fake token service for the unit tests: RSA keys, a JWKS behind an OpenID configuration served by an
in-memory fetcher (which counts its calls and can fail), and a token minter with explicit claims."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

CONFIGURATION_URL = "https://login.test/common/.well-known/openid-configuration"
KEYS_URL = "https://login.test/common/discovery/keys"
TENANT = "11111111-2222-3333-4444-555555555555"
OUR_APP = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
GRAPH_APP = "0bf30f3b-4a52-48df-9a82-234910c4a086"


def _b64(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


@dataclass
class FakeIssuer:
    """Keys by kid; ``published`` says which are in the JWKS. ``fail`` makes the next fetches raise."""

    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    fail: bool = False

    def add_key(self, kid: str, publish: bool = True) -> None:
        self.keys[kid] = _KEYS.setdefault(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        if publish:
            self.published.append(kid)

    async def fetch(self, url: str) -> Any:
        self.fetched.append(url)
        if self.fail:
            raise ConnectionError("token service unreachable")
        if url == CONFIGURATION_URL:
            return {"issuer": "https://sts.windows.net/{tenantid}/", "jwks_uri": KEYS_URL}
        if url == KEYS_URL:
            jwks = []
            for kid in self.published:
                numbers = self.keys[kid].public_key().public_numbers()
                jwks.append({"kty": "RSA", "use": "sig", "kid": kid, "n": _b64(numbers.n), "e": _b64(numbers.e)})
            return {"keys": jwks}
        raise AssertionError(f"unexpected URL {url}")

    def token(self, kid: str = "k1", signing_kid: str | None = None, **overrides: Any) -> str:
        """A token as Graph issues it; ``overrides`` replace claims (None removes one)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": OUR_APP,
            "iss": f"https://sts.windows.net/{TENANT}/",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "appid": GRAPH_APP,
            "tid": TENANT,
            "ver": "1.0",
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.keys[signing_kid or kid], algorithm="RS256", headers={"kid": kid})


_KEYS: dict[str, rsa.RSAPrivateKey] = {}  # RSA key generation is slow: one key per kid per session


@pytest.fixture(name="issuer")
def _issuer() -> FakeIssuer:
    issuer = FakeIssuer()
    issuer.add_key("k1")
    return issuer


class FakeClock:
    """Monotonic seconds that tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()
