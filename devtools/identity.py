"""A local stand-in for Azure's managed identity, so identity-based storage runs offline, unchanged.

- ``self_signed_certificate`` writes a loopback TLS certificate and key (Azurite's OAuth mode requires HTTPS,
  and so does the Azure SDK before it sends a bearer token);
- ``IdentityEndpoint`` serves the App Service managed-identity protocol (``IDENTITY_ENDPOINT`` +
  ``IDENTITY_HEADER``; ``GET ?resource=...&api-version=2019-08-01`` with ``X-IDENTITY-HEADER``), which
  azure-identity's ``ManagedIdentityCredential`` speaks on App Service and Functions; its tokens are JWTs
  that Azurite's ``--oauth basic`` accepts (audience ``https://storage.azure.com``, an ``sts.windows.net``
  issuer, valid ``nbf``/``exp``/``iat``; Azurite does not check the signature).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_VERSION = "2019-08-01"
TENANT = "00000000-0000-0000-0000-0000000000aa"


def self_signed_certificate(directory: Path, days: int = 2) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key, as PEM files in ``directory`` (cert, key).

    The certificate is its own CA: clients trust it by using the cert file as their CA bundle.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names = x509.SubjectAlternativeName(
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(alt_names, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "loopback-cert.pem", directory / "loopback-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def storage_token(resource: str, client_id: str | None, lifetime: int = 3600) -> tuple[str, int]:
    """A JWT for ``resource`` shaped like Entra's (unsigned in substance), and its expiry (epoch seconds)."""
    now = int(time.time())
    claims = {
        "aud": resource,
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": now,
        "nbf": now - 60,
        "exp": now + lifetime,
        "appid": client_id or "system-assigned",
        "tid": TENANT,
        "ver": "1.0",
    }
    signature = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}.{signature}", now + lifetime


@dataclass
class IdentityEndpoint:
    """The App Service managed-identity endpoint on loopback; records each token request it answered.

    ``environment`` is what the app's process needs (``IDENTITY_ENDPOINT``, ``IDENTITY_HEADER``). A request
    without the right header gets 401, one without ``resource`` or with another api-version 400, as Azure's.
    """

    header: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    requests: list[dict[str, str]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the identity endpoint is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/msi/token"

    @property
    def environment(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.header}

    def start(self) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = endpoint.answer(self.path, self.headers.get("X-IDENTITY-HEADER"))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True, name="identity-endpoint").start()

    def answer(self, path: str, header: str | None) -> tuple[int, dict[str, Any]]:
        """The status and JSON body for one token request."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
        if header != self.header:
            return 401, {"error": "unauthorized", "error_description": "X-IDENTITY-HEADER missing or wrong"}
        if query.get("api-version") != API_VERSION or "resource" not in query:
            return 400, {"error": "invalid_request", "error_description": "resource and api-version required"}
        self.requests.append(query)
        token, expires_on = storage_token(query["resource"], query.get("client_id"))
        return 200, {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": query["resource"],
            "token_type": "Bearer",
            "client_id": query.get("client_id", "system-assigned"),
        }

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> IdentityEndpoint:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
