"""Validation tokens: each check of the docs' list fails on its own, with its own error."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from shared.richdata.errors import (
    MalformedTokenError,
    MissingTokensError,
    TokenExpiredError,
    TokenNotYetValidError,
    TokenSignatureError,
    UncoveredTenantError,
    UnknownSigningKeyError,
    WrongAudienceError,
    WrongIssuerError,
    WrongPublisherError,
)
from shared.richdata.signing_keys import SigningKeys
from shared.richdata.tokens import TokenPolicy, TokenValidator, issuer_for
from tests.unit.richdata.conftest import CONFIGURATION_URL, GRAPH_APP, OUR_APP, TENANT, FakeClock, FakeIssuer

OTHER_TENANT = "99999999-8888-7777-6666-555555555555"


@pytest.fixture(name="validator")
def _validator(issuer: FakeIssuer, clock: FakeClock) -> TokenValidator:
    keys = SigningKeys(issuer.fetch, CONFIGURATION_URL, clock=clock, min_refresh_interval_s=60)
    return TokenValidator(keys, TokenPolicy(audiences=frozenset({OUR_APP}), leeway_s=0))


async def test_a_graph_token_passes(issuer: FakeIssuer, validator: TokenValidator) -> None:
    [verified] = await validator.validate_all([issuer.token()], {TENANT})
    assert (verified.tenant_id, verified.audience) == (TENANT, OUR_APP)
    assert issuer_for(TENANT) == f"https://sts.windows.net/{TENANT}/"


async def test_azp_stands_in_for_appid(issuer: FakeIssuer, validator: TokenValidator) -> None:
    """v2 tokens name the publisher in azp; appid, when present, is what counts."""
    await validator.validate(issuer.token(appid=None, azp=GRAPH_APP), {TENANT})
    with pytest.raises(WrongPublisherError):
        await validator.validate(issuer.token(appid=OUR_APP, azp=GRAPH_APP), {TENANT})


# Claims are built when the test runs, not when it is collected: a long session (the CI test command
# runs for minutes) would otherwise turn "ten minutes from now" into the past.
@pytest.mark.parametrize(
    ("claims", "error"),
    [
        (lambda now: {"exp": now - 10}, TokenExpiredError),
        (lambda now: {"nbf": now + 600}, TokenNotYetValidError),
        (lambda now: {"aud": "another-app"}, WrongAudienceError),
        (lambda now: {"iss": f"https://sts.windows.net/{OTHER_TENANT}/"}, WrongIssuerError),
        (lambda now: {"iss": f"https://login.microsoftonline.com/{TENANT}/v2.0"}, WrongIssuerError),
        (lambda now: {"appid": OUR_APP}, WrongPublisherError),
        (lambda now: {"appid": None}, WrongPublisherError),
        (lambda now: {"exp": None}, MalformedTokenError),
        (lambda now: {"aud": None}, MalformedTokenError),
    ],
)
async def test_each_claim_check_fails_alone(
    issuer: FakeIssuer,
    validator: TokenValidator,
    claims: Callable[[int], dict[str, Any]],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        await validator.validate(issuer.token(**claims(int(time.time()))), {TENANT})


async def test_signature_by_an_unpublished_key_under_a_published_kid(
    issuer: FakeIssuer, validator: TokenValidator
) -> None:
    issuer.add_key("rogue", publish=False)
    with pytest.raises(TokenSignatureError) as caught:
        await validator.validate(issuer.token(kid="k1", signing_kid="rogue"), {TENANT})
    assert caught.value.code == "token_bad_signature"


async def test_an_expired_token_with_a_bad_signature_is_a_signature_failure(
    issuer: FakeIssuer, validator: TokenValidator
) -> None:
    issuer.add_key("rogue", publish=False)
    with pytest.raises(TokenSignatureError):
        await validator.validate(issuer.token(signing_kid="rogue", exp=int(time.time()) - 10), {TENANT})


async def test_unknown_kid(issuer: FakeIssuer, validator: TokenValidator) -> None:
    issuer.add_key("unpublished", publish=False)
    with pytest.raises(UnknownSigningKeyError):
        await validator.validate(issuer.token(kid="unpublished"), {TENANT})


async def test_rotated_signing_key_is_found_after_one_refresh(
    issuer: FakeIssuer, validator: TokenValidator, clock: FakeClock
) -> None:
    await validator.validate(issuer.token(), {TENANT})
    issuer.add_key("k2")
    issuer.published.remove("k1")
    clock.now += 61
    await validator.validate(issuer.token(kid="k2"), {TENANT})
    assert issuer.fetched.count(CONFIGURATION_URL) == 2


@pytest.mark.parametrize(
    "token",
    [
        "not.a.jwt",
        "",
        42,
        "x" * 20_000,
        jwt.encode({"aud": OUR_APP}, "k" * 32, algorithm="HS256"),  # no kid
    ],
)
async def test_malformed_tokens(validator: TokenValidator, token: Any) -> None:
    with pytest.raises(MalformedTokenError):
        await validator.validate(token, {TENANT})


async def test_symmetric_algorithm_is_refused(issuer: FakeIssuer, validator: TokenValidator) -> None:
    """HS256 keyed with anything (e.g. the public key's bytes) never passes: only RS256 is accepted."""
    token = jwt.encode({"aud": OUR_APP}, "k" * 32, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(TokenSignatureError):
        await validator.validate(token, {TENANT})


async def test_missing_tokens(validator: TokenValidator) -> None:
    for tokens in (None, [], "eyJ..."):
        with pytest.raises(MissingTokensError):
            await validator.validate_all(tokens, {TENANT})


async def test_every_token_must_pass(issuer: FakeIssuer, validator: TokenValidator) -> None:
    with pytest.raises(WrongAudienceError):
        await validator.validate_all([issuer.token(), issuer.token(aud="another-app")], {TENANT})


async def test_every_tenant_must_be_covered(issuer: FakeIssuer, validator: TokenValidator) -> None:
    with pytest.raises(UncoveredTenantError):
        await validator.validate_all([issuer.token()], {TENANT, OTHER_TENANT})
    two = [issuer.token(), issuer.token(iss=f"https://sts.windows.net/{OTHER_TENANT}/", tid=OTHER_TENANT)]
    assert {v.tenant_id for v in await validator.validate_all(two, {TENANT, OTHER_TENANT})} == {TENANT, OTHER_TENANT}


async def test_too_many_tokens(issuer: FakeIssuer, validator: TokenValidator) -> None:
    with pytest.raises(MalformedTokenError):
        await validator.validate_all([issuer.token()] * 51, {TENANT})


def test_a_policy_needs_an_audience(issuer: FakeIssuer, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="audience"):
        TokenValidator(SigningKeys(issuer.fetch, clock=clock), TokenPolicy(audiences=frozenset()))
