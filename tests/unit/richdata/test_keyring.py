"""The key ring: loading, checks on what goes in, lookups by certificate id."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509

from devtools.encryption_certificate import generate_pem
from shared.errors import ConfigurationError
from shared.richdata.errors import UnknownCertificateError
from shared.richdata.keyring import KeyRing, load_key


def test_encryption_certificate_is_the_public_der() -> None:
    key = load_key("c1", generate_pem())
    certificate = x509.load_der_x509_certificate(base64.b64decode(key.encryption_certificate))
    assert certificate.public_key() == key.private_key.public_key()
    assert "PRIVATE" not in base64.b64decode(key.encryption_certificate).decode("latin-1")
    assert len(key.thumbprint) == 40
    assert "private_key" not in repr(key)


def test_refuses_what_graph_would_not_take_or_we_could_not_use() -> None:
    pem = generate_pem()
    with pytest.raises(ConfigurationError, match="PEM"):
        load_key("c1", b"not a pem")
    with pytest.raises(ConfigurationError, match="1 to 128"):
        load_key("x" * 129, pem)
    with pytest.raises(ConfigurationError, match="2048 to 4096"):
        load_key("small", generate_pem(key_bits=1024))
    key, other = load_key("c1", pem), load_key("c2", generate_pem())
    with pytest.raises(ConfigurationError, match="does not belong"):
        type(key)("mixed", key.private_key, other.certificate)
    with pytest.raises(ConfigurationError, match="twice"):
        KeyRing(key, previous=[load_key("c1", generate_pem())])


def test_lookup_by_id() -> None:
    current, previous = load_key("new", generate_pem()), load_key("old", generate_pem())
    ring = KeyRing(current, [previous])
    assert ring.key_for("old") is previous
    assert ring.key_for("new") is current
    with pytest.raises(UnknownCertificateError):
        ring.key_for("older")
