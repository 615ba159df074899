"""One ``encryptedContent`` item → the resource it carries, exactly as Graph encrypts it.

Graph's scheme (docs: "Decrypting resource data from change notifications"): a fresh symmetric key per item,
wrapped with the certificate's RSA public key (RSA/ECB/OAEPWithSHA1AndMGF1Padding) in ``dataKey``; ``data``
is the resource JSON under AES-CBC with PKCS7 padding, the IV being the key's first 16 bytes; ``dataSignature``
is HMAC-SHA256 of the ``data`` bytes with the same key. The signature is compared (in constant time) *before*
anything is decrypted, so tampered data never reaches the padding check (no padding oracle).
"""

from __future__ import annotations

import binascii
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from shared.richdata.errors import (
    CertificateMismatchError,
    DataSignatureError,
    KeyUnwrapError,
    MalformedContentError,
    PaddingError,
    ResourceDecodeError,
)
from shared.richdata.keyring import MAX_CERTIFICATE_ID_CHARS, KeyRing

AES_KEY_SIZES = (16, 24, 32)  # Graph sends 32 (AES-256); any AES size decrypts the same way
IV_BYTES = 16
MAX_DATA_BYTES = 4 * 1024 * 1024  # far above a message with a $select; bounds the work per item
_OAEP_SHA1 = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303


@dataclass(frozen=True)
class EncryptedContent:
    """The decoded fields of ``encryptedContent`` (still encrypted)."""

    data: bytes
    data_key: bytes
    data_signature: bytes
    certificate_id: str
    thumbprint: str | None = None

    @classmethod
    def parse(cls, raw: Any) -> EncryptedContent:
        """Check the shape and decode the base64 fields; ``MalformedContentError`` says which is wrong."""
        if not isinstance(raw, Mapping):
            raise MalformedContentError("'encryptedContent' must be an object")
        certificate_id = raw.get("encryptionCertificateId")
        if not isinstance(certificate_id, str) or not 0 < len(certificate_id) <= MAX_CERTIFICATE_ID_CHARS:
            raise MalformedContentError("'encryptionCertificateId' must be a string of 1 to 128 characters")
        thumbprint = raw.get("encryptionCertificateThumbprint")
        if thumbprint is not None and not isinstance(thumbprint, str):
            raise MalformedContentError("'encryptionCertificateThumbprint' must be a string")
        return cls(
            data=_base64(raw, "data", MAX_DATA_BYTES),
            data_key=_base64(raw, "dataKey", 1024),
            data_signature=_base64(raw, "dataSignature", 64),
            certificate_id=certificate_id,
            thumbprint=thumbprint,
        )


def _base64(raw: Mapping[str, Any], name: str, max_bytes: int) -> bytes:
    value = raw.get(name)
    if not isinstance(value, str) or not value or len(value) > (max_bytes * 4) // 3 + 4:
        raise MalformedContentError(f"'{name}' must be a non-empty base64 string of at most {max_bytes} bytes")
    try:
        return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise MalformedContentError(f"'{name}' is not valid base64") from error


def decrypt_content(raw: Any, ring: KeyRing) -> dict[str, Any]:
    """Verify and decrypt one item's ``encryptedContent``; the resource as a JSON object, or a typed error."""
    content = EncryptedContent.parse(raw)
    key = ring.key_for(content.certificate_id)
    if content.thumbprint is not None and not hmac.compare_digest(content.thumbprint.upper(), key.thumbprint):
        raise CertificateMismatchError(
            f"the item's certificate thumbprint is not that of certificate {content.certificate_id!r}"
        )
    symmetric_key = unwrap_key(key.private_key, content.data_key, content.certificate_id)
    verify_signature(symmetric_key, content.data, content.data_signature)
    return _parse_resource(decrypt_data(symmetric_key, content.data))


def unwrap_key(private_key: rsa.RSAPrivateKey, data_key: bytes, certificate_id: str) -> bytes:
    """RSA-OAEP (SHA-1, MGF1 SHA-1) of ``dataKey``: the item's AES key."""
    try:
        symmetric_key = private_key.decrypt(data_key, _OAEP_SHA1)
    except ValueError as error:
        raise KeyUnwrapError(f"'dataKey' does not decrypt with the key of certificate {certificate_id!r}") from error
    if len(symmetric_key) not in AES_KEY_SIZES:
        raise KeyUnwrapError(f"'dataKey' holds {len(symmetric_key)} bytes, not an AES key")
    return symmetric_key


def verify_signature(symmetric_key: bytes, data: bytes, signature: bytes) -> None:
    """HMAC-SHA256 of the encrypted bytes, compared in constant time."""
    expected = hmac.new(symmetric_key, data, sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise DataSignatureError("'dataSignature' does not match the data: it was changed after Graph signed it")


def decrypt_data(symmetric_key: bytes, data: bytes) -> bytes:
    """AES-CBC, IV = the key's first 16 bytes, then PKCS7 unpadding."""
    if len(data) % IV_BYTES:
        raise PaddingError(f"the data is {len(data)} bytes, not whole AES blocks")
    decryptor = Cipher(algorithms.AES(symmetric_key), modes.CBC(symmetric_key[:IV_BYTES])).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(algorithms.AES.block_size).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as error:
        raise PaddingError("the decrypted data does not end in valid PKCS7 padding") from error


def _parse_resource(plaintext: bytes) -> dict[str, Any]:
    try:
        resource = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ResourceDecodeError("the decrypted data is not UTF-8 JSON") from error
    if not isinstance(resource, dict):
        raise ResourceDecodeError("the decrypted data is not a JSON object")
    return resource
