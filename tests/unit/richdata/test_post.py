"""A POST's tokens are checked against the tenants of its items with resource data, once per POST."""

from __future__ import annotations

import pytest

from shared.richdata.errors import MalformedContentError, MissingTokensError, UncoveredTenantError
from shared.richdata.post import rich_tenants, verify_post
from shared.richdata.signing_keys import SigningKeys
from shared.richdata.tokens import TokenPolicy, TokenValidator
from tests.unit.richdata.conftest import CONFIGURATION_URL, OUR_APP, TENANT, FakeClock, FakeIssuer

RICH = {"tenantId": TENANT, "encryptedContent": {}}
BASIC = {"tenantId": "basic-tenant", "changeType": "created"}


def _validator(issuer: FakeIssuer, clock: FakeClock) -> TokenValidator:
    return TokenValidator(SigningKeys(issuer.fetch, CONFIGURATION_URL, clock=clock), TokenPolicy(frozenset({OUR_APP})))


def test_only_items_with_resource_data_count() -> None:
    assert rich_tenants([RICH, BASIC, "junk"]) == {TENANT}
    assert rich_tenants("not a list") == set()
    with pytest.raises(MalformedContentError):
        rich_tenants([{"encryptedContent": {}}])


async def test_a_post_without_resource_data_needs_no_tokens(issuer: FakeIssuer, clock: FakeClock) -> None:
    assert await verify_post({"value": [BASIC]}, _validator(issuer, clock)) == []
    assert issuer.fetched == []  # no key fetch for basic notifications


async def test_a_post_with_resource_data(issuer: FakeIssuer, clock: FakeClock) -> None:
    validator = _validator(issuer, clock)
    with pytest.raises(MissingTokensError):
        await verify_post({"value": [RICH]}, validator)
    [verified] = await verify_post({"value": [RICH, BASIC], "validationTokens": [issuer.token()]}, validator)
    assert verified.tenant_id == TENANT
    other = {**RICH, "tenantId": "another-tenant"}
    with pytest.raises(UncoveredTenantError):
        await verify_post({"value": [RICH, other], "validationTokens": [issuer.token()]}, validator)
