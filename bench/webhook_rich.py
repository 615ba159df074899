"""The rich-notification inputs of ``bench.webhook --only rich``: POST bodies whose items carry encrypted
resource data and whose POSTs carry validation tokens, as Graph sends them, and the token service the app
fetches the signing keys from.

Bodies are built before the timed run (encryption costs the client, not the app). The tokens are signed by
the simulator's own issuer code (``devtools.graphsim.rich_tokens``), run here in the benchmark's process and
served on a loopback port, so the app verifies real RS256 signatures against keys it fetched over HTTP.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509

from bench.webhook import Notifications, Subscription
from devtools.encryption_certificate import generate_pem
from devtools.graphsim.rich_crypto import encrypt_resource
from devtools.graphsim.rich_routes import OPENID_CONFIGURATION_PATH
from devtools.graphsim.rich_tokens import TokenIssuer
from devtools.graphsim.seed import APPLICATION_ID, TENANT_ID

CERTIFICATE_ID = "bench-rich"
KEYS_PATH = "/common/discovery/keys"


class RichNotifications(Notifications):
    """``messages.created`` items with ``encryptedContent`` (the fields a ``+data`` subscription selects) for one
    certificate; each POST signed by one validation token for the tenant of its items."""

    def __init__(self, subscription: Subscription, certificate: x509.Certificate, issuer: TokenIssuer) -> None:
        super().__init__(subscription)
        self._certificate = certificate
        self._issuer = issuer

    def item(self) -> dict[str, Any]:
        item = super().item()
        message_id = item["resourceData"]["id"]
        resource = {
            "id": message_id,
            "subject": f"Benchmark message {message_id[-10:]}",
            "from": {"emailAddress": {"name": "Bench Sender", "address": "bench@contoso.com"}},
            "receivedDateTime": "2026-12-02T08:00:00Z",
            "isRead": False,
            "hasAttachments": False,
            "importance": "normal",
            "bodyPreview": "Quarterly numbers attached; please review before Friday. " * 2,
            "lastModifiedDateTime": "2026-12-02T08:00:00Z",
        }
        item["encryptedContent"] = encrypt_resource(resource, self._certificate, CERTIFICATE_ID)
        return item

    def body(self, count: int) -> bytes:
        token = self._issuer.issue(APPLICATION_ID, TENANT_ID)
        return json.dumps({"value": [self.item() for _ in range(count)], "validationTokens": [token]}).encode()


@contextlib.contextmanager
def token_service(issuer: TokenIssuer) -> Iterator[str]:
    """Serve the issuer's OpenID configuration and keys on a loopback port; yields the configuration URL."""

    root = ""  # set once the server has its port

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == OPENID_CONFIGURATION_PATH:
                body = issuer.openid_configuration(root)
            elif self.path == KEYS_PATH:
                body = issuer.jwks()
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    root = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root + OPENID_CONFIGURATION_PATH
    finally:
        server.shutdown()
        server.server_close()


def rich_settings(pem: bytes, openid_configuration: str) -> dict[str, str]:
    """The app settings of the rich case: verification and decryption on, our certificate, this token service."""
    return {
        "RICH_NOTIFICATIONS": "true",
        "RICH_NOTIFICATIONS_CERTIFICATE": pem.decode("ascii"),
        "RICH_NOTIFICATIONS_CERTIFICATE_ID": CERTIFICATE_ID,
        "RICH_NOTIFICATIONS_AUDIENCE": APPLICATION_ID,
        "RICH_NOTIFICATIONS_OPENID_CONFIGURATION": openid_configuration,
    }


def new_certificate() -> tuple[bytes, x509.Certificate]:
    """A fresh RSA-2048 certificate: the PEM for the app, the certificate for the encrypting client."""
    pem = generate_pem()
    return pem, x509.load_pem_x509_certificate(pem)
