"""Why a rich notification was refused: one error type per reason, each with a stable ``code``.

The codes are what metrics and logs count (never the data, a key or a token). Verdicts about the input
(``RichDataError``) are final: retrying the same item cannot help. ``SigningKeysUnavailableError`` is not a
verdict: the issuer's keys could not be fetched, so the caller should retry later rather than drop anything.
"""

from __future__ import annotations

from shared.errors import AppError, UnavailableError


class RichDataError(AppError):
    """Base of every refusal of rich notification input."""

    code = "rich_data_refused"


# Decryption of one encryptedContent item ------------------------------------------------------------------
class MalformedContentError(RichDataError):
    """``encryptedContent`` is missing a field, or a field is not the base64 it must be."""

    code = "malformed_content"


class UnknownCertificateError(RichDataError):
    """The item names an ``encryptionCertificateId`` that is not in the key ring."""

    code = "unknown_certificate"


class CertificateMismatchError(RichDataError):
    """The item's ``encryptionCertificateThumbprint`` is not the thumbprint of the certificate with that id."""

    code = "certificate_mismatch"


class KeyUnwrapError(RichDataError):
    """``dataKey`` does not decrypt (RSA-OAEP) with the private key, or is no AES key."""

    code = "key_unwrap_failed"


class DataSignatureError(RichDataError):
    """HMAC-SHA256 of ``data`` is not ``dataSignature``: the data was changed (nothing was decrypted)."""

    code = "bad_data_signature"


class PaddingError(RichDataError):
    """The decrypted data does not end in valid PKCS7 padding."""

    code = "bad_padding"


class ResourceDecodeError(RichDataError):
    """The decrypted data is not a UTF-8 JSON object."""

    code = "bad_resource_json"


# Validation tokens of one POST ---------------------------------------------------------------------------
class TokenError(RichDataError):
    """Base of every refusal of a ``validationTokens`` JWT (or of the set of them)."""

    code = "token_invalid"


class MissingTokensError(TokenError):
    """Items carry resource data but the POST has no (or an empty) ``validationTokens`` array."""

    code = "tokens_missing"


class MalformedTokenError(TokenError):
    """Not a JWT we can read: bad encoding, no ``kid``, a required claim missing, too long, too many."""

    code = "token_malformed"


class UnknownSigningKeyError(TokenError):
    """The token's ``kid`` is not among the issuer's signing keys, even after a refresh."""

    code = "token_unknown_key"


class TokenSignatureError(TokenError):
    """The signature does not verify with the key its ``kid`` names (or uses an algorithm we refuse)."""

    code = "token_bad_signature"


class TokenExpiredError(TokenError):
    """``exp`` has passed."""

    code = "token_expired"


class TokenNotYetValidError(TokenError):
    """``nbf`` or ``iat`` lies in the future."""

    code = "token_not_yet_valid"


class WrongAudienceError(TokenError):
    """``aud`` is not our app id: the token was issued for another app."""

    code = "token_wrong_audience"


class WrongIssuerError(TokenError):
    """``iss`` is not ``https://sts.windows.net/{tenantId}/`` for a tenant of the POST's items."""

    code = "token_wrong_issuer"


class WrongPublisherError(TokenError):
    """``appid`` (or ``azp``) is not Microsoft Graph's change-tracking app: someone else minted it."""

    code = "token_wrong_publisher"


class UncoveredTenantError(TokenError):
    """An item's tenant has no valid token in the POST."""

    code = "tokens_do_not_cover_tenant"


# Not a verdict -------------------------------------------------------------------------------------------
class SigningKeysUnavailableError(UnavailableError):
    """The OpenID configuration or its key set could not be fetched (and nothing usable is cached)."""

    code = "signing_keys_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, service="openid-configuration")
