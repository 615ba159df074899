"""Resource data encrypted exactly as Graph does it for a subscription's certificate (the reverse of
``shared/richdata/decrypt.py``, written from Graph's documentation, not from that module):

a fresh 32-byte key per item; ``data`` = AES-256-CBC of the resource JSON, PKCS7-padded, IV = the key's first
16 bytes; ``dataSignature`` = HMAC-SHA256 of those encrypted bytes; ``dataKey`` = the key under the
certificate's RSA public key with OAEP (SHA-1, MGF1 SHA-1); the thumbprint is the certificate's SHA-1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from devtools.graphsim.wire import JsonObj

KEY_BYTES = 32


def load_certificate(encoded: str) -> x509.Certificate:
    """A subscription's ``encryptionCertificate`` (base64 DER, or PEM text); ValueError if it is neither or
    its key is not RSA of 2048..4096 bits (Graph's rule)."""
    text = encoded.strip()
    try:
        if text.startswith("-----BEGIN"):
            certificate = x509.load_pem_x509_certificate(text.encode())
        else:
            certificate = x509.load_der_x509_certificate(base64.b64decode(text, validate=True))
    except (ValueError, TypeError) as error:
        raise ValueError("encryptionCertificate is not a base64-encoded X.509 certificate") from error
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or not 2048 <= key.key_size <= 4096:
        raise ValueError("encryptionCertificate must hold an RSA key of 2048 to 4096 bits")
    return certificate


def encrypt_resource(resource: JsonObj, certificate: x509.Certificate, certificate_id: str) -> JsonObj:
    """The ``encryptedContent`` of one notification item."""
    key = os.urandom(KEY_BYTES)
    padder = padding.PKCS7(128).padder()
    plaintext = padder.update(json.dumps(resource).encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    data = encryptor.update(plaintext) + encryptor.finalize()
    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)  # load_certificate checked it
    oaep = asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
    return {
        "data": base64.b64encode(data).decode(),
        "dataSignature": base64.b64encode(hmac.new(key, data, hashlib.sha256).digest()).decode(),
        "dataKey": base64.b64encode(public_key.encrypt(key, oaep)).decode(),
        "encryptionCertificateId": certificate_id,
        "encryptionCertificateThumbprint": certificate.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
    }
