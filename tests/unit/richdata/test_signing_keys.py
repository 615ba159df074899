"""The signing-key cache: fetched lazily, refreshed on age and on an unknown kid, at most once per interval,
one fetch for concurrent callers, stale keys kept when a refresh fails."""

from __future__ import annotations

import asyncio

import pytest

from shared.richdata.errors import SigningKeysUnavailableError, UnknownSigningKeyError
from shared.richdata.signing_keys import SigningKeys
from tests.unit.richdata.conftest import CONFIGURATION_URL, KEYS_URL, FakeClock, FakeIssuer


def _keys(issuer: FakeIssuer, clock: FakeClock, **kwargs: float) -> SigningKeys:
    return SigningKeys(issuer.fetch, CONFIGURATION_URL, clock=clock, **kwargs)


async def test_first_use_fetches_configuration_then_keys(issuer: FakeIssuer, clock: FakeClock) -> None:
    keys = _keys(issuer, clock)
    assert (await keys.key("k1")).key_id == "k1"
    await keys.key("k1")
    assert issuer.fetched == [CONFIGURATION_URL, KEYS_URL]


async def test_unknown_kid_refreshes_once_then_is_refused_within_the_interval(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    keys = _keys(issuer, clock, min_refresh_interval_s=60)
    await keys.key("k1")
    clock.now += 61
    issuer.add_key("k2")  # the issuer rotated
    assert (await keys.key("k2")).key_id == "k2"
    assert keys.fetches == 2
    for _ in range(20):  # made-up kids: refused without fetching again inside the interval
        with pytest.raises(UnknownSigningKeyError):
            await keys.key("made-up")
    assert keys.fetches == 2
    clock.now += 61
    with pytest.raises(UnknownSigningKeyError):
        await keys.key("made-up")
    assert keys.fetches == 3


async def test_a_new_kid_right_after_a_fetch_waits_for_the_interval(issuer: FakeIssuer, clock: FakeClock) -> None:
    keys = _keys(issuer, clock, min_refresh_interval_s=60)
    await keys.key("k1")
    issuer.add_key("k2")
    with pytest.raises(UnknownSigningKeyError):
        await keys.key("k2")
    clock.now += 60
    assert (await keys.key("k2")).key_id == "k2"


async def test_concurrent_unknown_kids_share_one_fetch(issuer: FakeIssuer, clock: FakeClock) -> None:
    keys = _keys(issuer, clock, min_refresh_interval_s=60)
    await keys.key("k1")
    clock.now += 61
    issuer.add_key("k2")
    found = await asyncio.gather(*(keys.key("k2") for _ in range(10)))
    assert {k.key_id for k in found} == {"k2"}
    assert keys.fetches == 2


async def test_keys_expire_after_max_age(issuer: FakeIssuer, clock: FakeClock) -> None:
    keys = _keys(issuer, clock, max_age_s=3600)
    await keys.key("k1")
    issuer.add_key("k2")
    issuer.published.remove("k1")  # k1 retired by the issuer
    clock.now += 3601
    with pytest.raises(UnknownSigningKeyError):
        await keys.key("k1")
    assert keys.fetches == 2


async def test_failed_refresh_keeps_the_keys_held(issuer: FakeIssuer, clock: FakeClock) -> None:
    keys = _keys(issuer, clock, max_age_s=3600, min_refresh_interval_s=60)
    await keys.key("k1")
    issuer.fail = True
    clock.now += 3601
    assert (await keys.key("k1")).key_id == "k1"  # stale but usable
    assert (await keys.key("k1")).key_id == "k1"  # and no second try inside the interval
    assert keys.fetches == 2


async def test_nothing_fetched_yet_and_fetch_fails_is_unavailable_not_a_verdict(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    issuer.fail = True
    with pytest.raises(SigningKeysUnavailableError) as caught:
        await _keys(issuer, clock).key("k1")
    assert caught.value.code == "signing_keys_unavailable"


@pytest.mark.parametrize(
    "documents",
    [
        {CONFIGURATION_URL: {"no": "jwks_uri"}},
        {CONFIGURATION_URL: {"jwks_uri": KEYS_URL}, KEYS_URL: {"keys": "none"}},
        {CONFIGURATION_URL: {"jwks_uri": KEYS_URL}, KEYS_URL: {"keys": [{"kty": "EC", "kid": "e"}, {"kty": "RSA"}]}},
    ],
)
async def test_unusable_documents(clock: FakeClock, documents: dict[str, object]) -> None:
    async def fetch(url: str) -> object:
        return documents[url]

    with pytest.raises(SigningKeysUnavailableError):
        await SigningKeys(fetch, CONFIGURATION_URL, clock=clock).key("k1")
