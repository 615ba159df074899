"""A self-signed RSA certificate for rich notifications (dev and tests): Graph encrypts each item's key with
its public part; our private key decrypts it. Graph does not check the issuer, so self-signed is enough."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def generate_pem(common_name: str = "graph-rich-notifications", key_bits: int = 2048, days: int = 365) -> bytes:
    """One PEM holding the private key (PKCS8, unencrypted) followed by its certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private + certificate.public_bytes(serialization.Encoding.PEM)


def certificate_id(pem: bytes) -> str:
    """A stable ``encryptionCertificateId`` for a PEM's certificate: ``local-`` and 16 hex digits of its SHA-256."""
    certificate = x509.load_pem_x509_certificate(pem)
    return "local-" + certificate.fingerprint(hashes.SHA256()).hex()[:16]
