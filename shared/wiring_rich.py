"""The wiring of rich notifications (part of the composition root, split from ``shared/wiring.py``).

With ``RICH_NOTIFICATIONS`` on, the webhook checks each POST's validation tokens (``post_verifier``) and the
processor decrypts each item (``decryptor``); off (the default) both are None and nothing changes. Where each
check runs, and why, is in docs/rich-notifications.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.container import Service
from shared.wiring import registry, settings

if TYPE_CHECKING:
    import httpx

    from shared.events.processor import Decrypt
    from shared.events.webhook import PostVerifier
    from shared.richdata.keyring import KeyRing
    from shared.richdata.tokens import TokenValidator

# Per request to the token service. A cold cache costs two requests inside a webhook POST (the configuration,
# then the keys), so together at most 2 s beside the 2 s persist bound; a timeout answers 503 (redelivered).
KEY_FETCH_TIMEOUT_S = 1.0


def _make_key_ring() -> KeyRing:
    from shared.errors import ConfigurationError
    from shared.richdata.keyring import KeyRing, load_key

    current = settings()
    if current.rich_certificate is None or current.rich_certificate_id is None:
        raise ConfigurationError("RICH_NOTIFICATIONS: needs RICH_NOTIFICATIONS_CERTIFICATE and its id")
    key = load_key(current.rich_certificate_id, current.rich_certificate.reveal().encode())
    previous = []
    if current.rich_previous_certificate is not None and current.rich_previous_certificate_id is not None:
        pem = current.rich_previous_certificate.reveal().encode()
        previous.append(load_key(current.rich_previous_certificate_id, pem))
    return KeyRing(key, previous)


async def _make_http() -> httpx.AsyncClient:
    import httpx

    return httpx.AsyncClient(timeout=KEY_FETCH_TIMEOUT_S)


async def _make_validator() -> TokenValidator:
    from shared.richdata.signing_keys import SigningKeys, httpx_fetch_json
    from shared.richdata.tokens import TokenPolicy, TokenValidator

    current = settings()
    audience = current.rich_audience or current.graph_client_id
    assert audience is not None  # the settings rules require one when RICH_NOTIFICATIONS is on
    keys = SigningKeys(httpx_fetch_json(await registry.get(RICH_HTTP)), current.rich_openid_configuration)
    return TokenValidator(keys, TokenPolicy(audiences=frozenset({audience})))


async def _close_http(client: httpx.AsyncClient) -> None:
    await client.aclose()


KEY_RING: Service[KeyRing] = Service("rich_key_ring", _make_key_ring)
RICH_HTTP: Service[httpx.AsyncClient] = Service("rich_http", _make_http, _close_http)
TOKEN_VALIDATOR: Service[TokenValidator] = Service("rich_token_validator", _make_validator)


async def post_verifier() -> PostVerifier | None:
    """What the webhook calls per POST (None when rich notifications are off)."""
    if not settings().rich_notifications:
        return None
    from shared.richdata.post import verify_post

    validator = await registry.get(TOKEN_VALIDATOR)

    async def verify(items: list[Any], tokens: Any) -> object:
        return await verify_post({"value": items, "validationTokens": tokens}, validator)

    return verify


def decryptor() -> Decrypt | None:
    """What the processor calls per rich item (None when rich notifications are off)."""
    if not settings().rich_notifications:
        return None
    from shared.richdata.decrypt import decrypt_content

    ring = registry.get_sync(KEY_RING)

    def decrypt(content: Mapping[str, Any]) -> dict[str, Any]:
        return decrypt_content(content, ring)

    return decrypt
