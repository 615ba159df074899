"""What a whole notification POST must prove before any of its resource data is used: its
``validationTokens`` cover every tenant that has items with ``encryptedContent``. Checked once per POST
(Graph mints one token per app and tenant, not per item); items are decrypted one by one afterwards."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.richdata.errors import MalformedContentError
from shared.richdata.tokens import TokenValidator, VerifiedToken


def rich_tenants(items: Any) -> set[str]:
    """The tenants of the items that carry resource data (empty: nothing to verify)."""
    tenants: set[str] = set()
    for item in items if isinstance(items, list) else ():
        if isinstance(item, Mapping) and "encryptedContent" in item:
            tenant = item.get("tenantId")
            if not isinstance(tenant, str) or not tenant:
                raise MalformedContentError("an item with resource data must name its tenantId")
            tenants.add(tenant)
    return tenants


async def verify_post(document: Mapping[str, Any], validator: TokenValidator) -> list[VerifiedToken]:
    """Validate the POST's tokens against the tenants of its rich items; [] when it has none."""
    tenants = rich_tenants(document.get("value"))
    if not tenants:
        return []
    return await validator.validate_all(document.get("validationTokens"), tenants)
