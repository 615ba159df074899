"""Rich notifications in the simulator: which subscriptions may include resource data, what each item
carries (``encryptedContent`` of the message's ``$select`` fields), the ``validationTokens`` of each POST,
and the faults that break one part of that on purpose.

Faults are counted: ``add_fault("tampered_data", 2)`` spoils the next two items (item faults) or the next two
POSTs' tokens (token faults). ``rotate_signing_key`` lives on the issuer (``rich_tokens``).
"""

from __future__ import annotations

import base64
import functools
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from cryptography import x509

from devtools.graphsim import seed
from devtools.graphsim.rich_crypto import encrypt_resource, load_certificate
from devtools.graphsim.rich_tokens import TokenIssuer, TokenSpec
from devtools.graphsim.tenant import MESSAGE_PROPERTIES
from devtools.graphsim.wire import GraphError, JsonObj

if TYPE_CHECKING:
    from devtools.graphsim.subscriptions import Subscription

OTHER_APP = "00000000-0000-0000-0000-00000000beef"
OTHER_ISSUER = "https://sts.windows.net/00000000-0000-0000-0000-000000000bad/"
ITEM_FAULTS = ("tampered_data", "bad_data_signature", "unknown_certificate_id")
TOKEN_FAULTS = ("wrong_signature", "wrong_audience", "expired_token", "wrong_issuer", "wrong_publisher", "no_tokens")
FAULTS = ITEM_FAULTS + TOKEN_FAULTS
MAX_CERTIFICATE_ID = 128
_NOT_SELECTABLE = frozenset({"body", "uniquebody"})  # Graph refuses them in a rich subscription's $select


def _invalid(message: str) -> GraphError:
    return GraphError(400, "InvalidRequest", message)


def split_select(resource: str) -> tuple[str, tuple[str, ...]]:
    """``users/{id}/messages?$select=subject,bodyPreview`` → the path and the canonical field names."""
    path, _, query = resource.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unsupported = set(options) - {"$select"}
    if unsupported:
        raise _invalid(f"graphsim supports only $select in a rich subscription's resource (got {sorted(unsupported)}).")
    fields = [f.strip() for f in options.get("$select", "").split(",") if f.strip()]
    unknown = [f for f in fields if f.lower() not in MESSAGE_PROPERTIES or f.lower() in _NOT_SELECTABLE]
    if unknown:
        raise _invalid(f"$select names properties a rich notification cannot carry: {', '.join(unknown)}.")
    return path, tuple(dict.fromkeys(MESSAGE_PROPERTIES[f.lower()] for f in fields))


def check_certificate(body: JsonObj, kind: str, select: tuple[str, ...]) -> tuple[str, str]:
    """The request's ``encryptionCertificate`` and ``encryptionCertificateId``, checked as Graph checks them
    (after the resource: messages only, and with a ``$select``)."""
    if kind != "messages":
        raise _invalid("includeResourceData is only supported for messages in graphsim (as Graph: not for users).")
    if not select:
        raise _invalid("A subscription with includeResourceData on messages needs $select in its resource.")
    certificate, certificate_id = body.get("encryptionCertificate"), body.get("encryptionCertificateId")
    if not isinstance(certificate, str) or not certificate:
        raise _invalid("'encryptionCertificate' is required when includeResourceData is true.")
    if not isinstance(certificate_id, str) or not 0 < len(certificate_id) <= MAX_CERTIFICATE_ID:
        raise _invalid(f"'encryptionCertificateId' is required (at most {MAX_CERTIFICATE_ID} characters).")
    try:
        _certificate(certificate)
    except ValueError as error:
        raise _invalid(str(error)) from None
    return certificate, certificate_id


@functools.lru_cache(maxsize=64)
def _certificate(encoded: str) -> x509.Certificate:
    return load_certificate(encoded)


class RichNotifications:
    """The token issuer and the fault counters of one simulator."""

    def __init__(self) -> None:
        self.issuer = TokenIssuer()
        self._faults: dict[str, int] = {}

    def reset(self) -> None:
        """No faults; the starting signing key."""
        self._faults.clear()
        self.issuer.reset()

    def add_fault(self, name: str, count: int = 1) -> None:
        """Spoil the next ``count`` items (item faults) or POSTs (token faults)."""
        if name not in FAULTS:
            raise ValueError(f"fault must be one of {', '.join(FAULTS)}")
        if not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        self._faults[name] = self._faults.get(name, 0) + count

    def clear_faults(self) -> None:
        """Forget every pending fault."""
        self._faults.clear()

    def state(self) -> dict[str, Any]:
        """Pending faults, the signing key ids and how often the verifier fetched the documents."""
        return {
            "faults": dict(self._faults),
            "signing_kid": self.issuer.current.kid,
            "published_kids": [key.kid for key in self.issuer.published],
            "fetches": dict(self.issuer.fetches),
        }

    def _take(self, name: str) -> bool:
        left = self._faults.get(name, 0)
        if left:
            self._faults[name] = left - 1
            if left == 1:
                del self._faults[name]
        return bool(left)

    def encrypted_content(self, subscription: Subscription, message: JsonObj) -> JsonObj:
        """The item's ``encryptedContent``: the ``$select`` fields of the message under the certificate."""
        assert subscription.encryption_certificate
        assert subscription.encryption_certificate_id
        resource = {name: message[name] for name in subscription.select if name in message}
        certificate_id = subscription.encryption_certificate_id
        if self._take("unknown_certificate_id"):
            certificate_id = "unknown-" + certificate_id[: MAX_CERTIFICATE_ID - 8]
        content = encrypt_resource(resource, _certificate(subscription.encryption_certificate), certificate_id)
        if self._take("tampered_data"):
            data = bytearray(base64.b64decode(content["data"]))
            data[-1] ^= 0x01
            content["data"] = base64.b64encode(bytes(data)).decode()
        if self._take("bad_data_signature"):
            content["dataSignature"] = base64.b64encode(bytes(32)).decode()
        return content

    def body_extras(self, url: str, batch: list[JsonObj]) -> JsonObj:
        """``validationTokens`` for a POST: one per (app, tenant) pair of its items with resource data. None
        for batches without such items, nor for Event Hubs (Graph sends no tokens there)."""
        tenants = sorted({str(i.get("tenantId")) for i in batch if "encryptedContent" in i})
        if not tenants or url.lower().startswith("eventhub:"):
            return {}
        if self._take("no_tokens"):
            return {}
        spec = TokenSpec(
            foreign_key=self._take("wrong_signature"),
            audience=OTHER_APP if self._take("wrong_audience") else None,
            expired=self._take("expired_token"),
            issuer="https://sts.windows.net/00000000-0000-0000-0000-000000000bad/"
            if self._take("wrong_issuer")
            else None,
            publisher=seed.APPLICATION_ID if self._take("wrong_publisher") else None,
        )
        return {"validationTokens": [self.issuer.issue(seed.APPLICATION_ID, tenant, spec) for tenant in tenants]}
