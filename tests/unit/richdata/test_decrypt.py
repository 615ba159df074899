"""Decryption of one encryptedContent item: a vector made with the openssl CLI (an implementation independent
of ours), items the simulator encrypts, and every way an item can fail, each with its own error."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from devtools.encryption_certificate import generate_pem
from devtools.graphsim.rich_crypto import encrypt_resource
from shared.richdata import decrypt as decrypt_module
from shared.richdata.decrypt import decrypt_content
from shared.richdata.errors import (
    CertificateMismatchError,
    DataSignatureError,
    KeyUnwrapError,
    MalformedContentError,
    PaddingError,
    ResourceDecodeError,
    UnknownCertificateError,
)
from shared.richdata.keyring import DecryptionKey, KeyRing, load_key

VECTOR = json.loads((Path(__file__).parent / "openssl_vector.json").read_text())
RESOURCE = {"subject": "hello", "bodyPreview": "first lines", "importance": "high"}


@pytest.fixture(name="key", scope="module")
def _key() -> DecryptionKey:
    return load_key("cert-2026", generate_pem())


@pytest.fixture(name="ring", scope="module")
def _ring(key: DecryptionKey) -> KeyRing:
    return KeyRing(key)


def _encrypt(key: DecryptionKey, resource: dict[str, Any] | bytes = RESOURCE) -> dict[str, Any]:
    if isinstance(resource, bytes):  # raw plaintext: encrypt_resource takes JSON, so go one level down
        return _encrypt_raw(key, resource)
    return encrypt_resource(resource, key.certificate, key.certificate_id)


def _encrypt_raw(key: DecryptionKey, plaintext: bytes, pad: bool = True, cut: int = 0) -> dict[str, Any]:
    """Graph's scheme on arbitrary bytes (for payloads no JSON encoder would produce)."""
    symmetric = os.urandom(32)
    if pad:
        padder = padding.PKCS7(128).padder()
        plaintext = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(symmetric), modes.CBC(symmetric[:16])).encryptor()
    data = encryptor.update(plaintext) + encryptor.finalize()
    data = data[: len(data) - cut]  # signed after the cut: only the block check can catch it
    oaep = asym.OAEP(mgf=asym.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303 (Graph's)
    return {
        "data": base64.b64encode(data).decode(),
        "dataSignature": base64.b64encode(hmac.new(symmetric, data, hashlib.sha256).digest()).decode(),
        "dataKey": base64.b64encode(key.private_key.public_key().encrypt(symmetric, oaep)).decode(),
        "encryptionCertificateId": key.certificate_id,
    }


def test_openssl_vector_decrypts_to_its_resource() -> None:
    """The item openssl produced (AES-256-CBC, IV = key[:16], HMAC-SHA256, RSA-OAEP SHA-1) decrypts."""
    ring = KeyRing(load_key("openssl-vector", VECTOR["pem"].encode()))
    assert decrypt_content(VECTOR["encryptedContent"], ring) == VECTOR["resource"]
    assert VECTOR["resource"]["bodyPreview"].endswith("\u00e9t\u00e9 figures")


def test_simulator_items_decrypt(key: DecryptionKey, ring: KeyRing) -> None:
    content = _encrypt(key)
    assert content["encryptionCertificateThumbprint"] == key.thumbprint
    assert decrypt_content(content, ring) == RESOURCE


def test_rotation_old_and_new_keys_both_decrypt(key: DecryptionKey) -> None:
    """During the overlap the ring decrypts items naming the old certificate and items naming the new one."""
    new = load_key("cert-2027", generate_pem())
    ring = KeyRing(new, previous=[key])
    assert ring.current is new
    assert ring.certificate_ids == ["cert-2027", "cert-2026"]
    assert decrypt_content(_encrypt(key), ring) == RESOURCE
    assert decrypt_content(_encrypt(new), ring) == RESOURCE
    with pytest.raises(UnknownCertificateError):
        decrypt_content(_encrypt(key), KeyRing(new))  # once the old key is dropped, its items fail


def test_unknown_certificate_id(key: DecryptionKey, ring: KeyRing) -> None:
    content = {**_encrypt(key), "encryptionCertificateId": "someone-elses"}
    with pytest.raises(UnknownCertificateError) as caught:
        decrypt_content(content, ring)
    assert caught.value.code == "unknown_certificate"


def test_thumbprint_of_another_certificate(key: DecryptionKey, ring: KeyRing) -> None:
    content = {**_encrypt(key), "encryptionCertificateThumbprint": "00" * 20}
    with pytest.raises(CertificateMismatchError):
        decrypt_content(content, ring)


def test_data_key_for_another_private_key(key: DecryptionKey, ring: KeyRing) -> None:
    """Encrypted for another certificate but naming ours: the RSA unwrap fails."""
    other = load_key(key.certificate_id, generate_pem())
    content = _encrypt(other)
    del content["encryptionCertificateThumbprint"]
    with pytest.raises(KeyUnwrapError) as caught:
        decrypt_content(content, ring)
    assert caught.value.code == "key_unwrap_failed"


def test_tampered_data_is_refused_before_decryption(
    key: DecryptionKey, ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One flipped bit: the HMAC check fails and the AES step never runs (no padding oracle)."""
    content = _encrypt(key)
    data = bytearray(base64.b64decode(content["data"]))
    data[-1] ^= 1
    content["data"] = base64.b64encode(bytes(data)).decode()
    calls: list[bytes] = []
    monkeypatch.setattr(decrypt_module, "decrypt_data", lambda k, d: calls.append(d) or b"{}")
    with pytest.raises(DataSignatureError) as caught:
        decrypt_content(content, ring)
    assert caught.value.code == "bad_data_signature"
    assert calls == []


def test_wrong_data_signature(key: DecryptionKey, ring: KeyRing) -> None:
    content = {**_encrypt(key), "dataSignature": base64.b64encode(bytes(32)).decode()}
    with pytest.raises(DataSignatureError):
        decrypt_content(content, ring)


def test_bad_padding(key: DecryptionKey, ring: KeyRing) -> None:
    """Signed correctly but not PKCS7-padded (whole blocks ending in a zero byte)."""
    with pytest.raises(PaddingError) as caught:
        decrypt_content(_encrypt_raw(key, b'{"subject": "x"}' + bytes(16), pad=False), ring)
    assert caught.value.code == "bad_padding"


def test_partial_block(key: DecryptionKey, ring: KeyRing) -> None:
    with pytest.raises(PaddingError):
        decrypt_content(_encrypt_raw(key, b'{"subject": "x"}', cut=3), ring)


@pytest.mark.parametrize("plaintext", [b"\xff\xfe not utf-8", b"not json", b"[1, 2]"])
def test_plaintext_that_is_no_json_object(key: DecryptionKey, ring: KeyRing, plaintext: bytes) -> None:
    with pytest.raises(ResourceDecodeError):
        decrypt_content(_encrypt_raw(key, plaintext), ring)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"data": None}, "data"),
        ({"dataKey": "!!not base64!!"}, "dataKey"),
        ({"dataSignature": ""}, "dataSignature"),
        ({"encryptionCertificateId": ""}, "encryptionCertificateId"),
        ({"encryptionCertificateId": "x" * 129}, "encryptionCertificateId"),
        ({"encryptionCertificateThumbprint": 5}, "encryptionCertificateThumbprint"),
    ],
)
def test_malformed_fields(key: DecryptionKey, ring: KeyRing, change: dict[str, Any], field: str) -> None:
    content = {**_encrypt(key), **change}
    with pytest.raises(MalformedContentError, match=field):
        decrypt_content(content, ring)


def test_not_an_object(ring: KeyRing) -> None:
    with pytest.raises(MalformedContentError):
        decrypt_content("encrypted", ring)
