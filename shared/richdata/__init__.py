"""Rich notifications: verifying and decrypting the resource data Graph sends inside change notifications.

One job per module: ``errors`` (why something was refused, one type per reason), ``keyring`` (our current and
previous private keys, by ``encryptionCertificateId``), ``decrypt`` (one ``encryptedContent`` item → the
resource), ``signing_keys`` (the issuer's signing keys from its OpenID configuration, cached, refreshed on an
unknown key id within a bound) and ``tokens`` (the ``validationTokens`` JWTs of a POST). Nothing here does
I/O of its own: the key fetcher is passed in. See docs/rich-notifications.md.
"""
