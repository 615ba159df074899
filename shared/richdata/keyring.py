"""Our private keys for rich notifications, by ``encryptionCertificateId``: the current one (given to Graph for
new and renewed subscriptions) and previous ones (rotation: Graph keeps encrypting with the old certificate
until each subscription is renewed, so the old key must keep decrypting the items that still name it)."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.errors import ConfigurationError
from shared.richdata.errors import UnknownCertificateError

MAX_CERTIFICATE_ID_CHARS = 128  # Graph's limit on encryptionCertificateId
MIN_KEY_BITS, MAX_KEY_BITS = 2048, 4096  # what Graph accepts for the certificate's RSA key


@dataclass(frozen=True)
class DecryptionKey:
    """One certificate (its public part goes to Graph) and the private key that decrypts what Graph sends."""

    certificate_id: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    certificate: x509.Certificate

    def __post_init__(self) -> None:
        if not 0 < len(self.certificate_id) <= MAX_CERTIFICATE_ID_CHARS:
            raise ConfigurationError(f"a certificate id must be 1 to {MAX_CERTIFICATE_ID_CHARS} characters")
        if not MIN_KEY_BITS <= self.private_key.key_size <= MAX_KEY_BITS:
            raise ConfigurationError(
                f"certificate {self.certificate_id!r}: the RSA key must be {MIN_KEY_BITS} to {MAX_KEY_BITS} bits"
            )
        if self.certificate.public_key() != self.private_key.public_key():
            raise ConfigurationError(f"certificate {self.certificate_id!r} does not belong to its private key")

    @property
    def encryption_certificate(self) -> str:
        """The subscription's ``encryptionCertificate``: the certificate (public key only) as base64 DER."""
        return base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")

    @property
    def thumbprint(self) -> str:
        """SHA-1 of the DER certificate in upper-case hex, as Graph's ``encryptionCertificateThumbprint``."""
        return self.certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 (Graph's identifier)


def load_key(certificate_id: str, pem: bytes, password: bytes | None = None) -> DecryptionKey:
    """A key from one PEM holding the RSA private key and its certificate (what Key Vault exports)."""
    try:
        private_key = serialization.load_pem_private_key(pem, password=password)
        certificate = x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError) as error:
        raise ConfigurationError(
            f"certificate {certificate_id!r}: expected a PEM with an RSA private key and its certificate"
        ) from error
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ConfigurationError(f"certificate {certificate_id!r}: the private key is not RSA")
    return DecryptionKey(certificate_id, private_key, certificate)


class KeyRing:
    """The current key and the previous ones; lookups by the id each notification item names."""

    def __init__(self, current: DecryptionKey, previous: Iterable[DecryptionKey] = ()) -> None:
        self.current = current
        self._keys: dict[str, DecryptionKey] = {}
        for key in (current, *previous):
            if key.certificate_id in self._keys:
                raise ConfigurationError(f"certificate id {key.certificate_id!r} is in the key ring twice")
            self._keys[key.certificate_id] = key

    @property
    def certificate_ids(self) -> list[str]:
        """Every id that still decrypts, current first."""
        return list(self._keys)

    def key_for(self, certificate_id: str) -> DecryptionKey:
        """The key an item names, or ``UnknownCertificateError`` (never a guess at another key)."""
        key = self._keys.get(certificate_id)
        if key is None:
            raise UnknownCertificateError(f"no private key for encryptionCertificateId {certificate_id[:128]!r}")
        return key
