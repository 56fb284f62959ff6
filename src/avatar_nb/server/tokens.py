"""Session tokens of the local service: HMAC-SHA256 signed, carrying app id and expiry.

Format: ``<base64url(json payload)>.<base64url(signature)>``; the payload is
``{"app": app_id, "exp": unix_seconds, "jti": random}``. Only a service holding the same
secret can issue a token that verifies, so a token from another service instance (or
an edited one) is rejected as invalid, not as expired or mismatched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

__all__ = ["InvalidToken", "TokenClaims", "TokenSigner", "same_secret"]


def same_secret(given: str, expected: str) -> bool:
    """Whether ``given`` is the secret ``expected``, compared in constant time; an empty
    ``expected`` (no secret configured) matches nothing."""
    return bool(expected) and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class InvalidToken(ValueError):
    """The token is malformed or its signature does not verify."""


@dataclass(frozen=True)
class TokenClaims:
    app_id: str
    expires_at: int

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and verifies tokens with one secret (generated when not given)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def __repr__(self) -> str:
        return "TokenSigner(<secret hidden>)"

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def issue(self, app_id: str, expires_at: int) -> str:
        payload = json.dumps(
            {"app": app_id, "exp": int(expires_at), "jti": secrets.token_hex(8)},
            separators=(",", ":"),
        ).encode("utf-8")
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def verify(self, token: str) -> TokenClaims:
        """The token's claims; :class:`InvalidToken` when malformed or forged (expiry not checked)."""
        try:
            head, _, sig = token.partition(".")
            payload = _unb64(head)
            signature = _unb64(sig)
        except (ValueError, UnicodeError):
            raise InvalidToken("malformed token") from None
        if not head or not sig or not hmac.compare_digest(signature, self._sign(payload)):
            raise InvalidToken("signature does not verify")
        try:
            claims = json.loads(payload)
            return TokenClaims(str(claims["app"]), int(claims["exp"]))
        except (ValueError, KeyError, TypeError):
            raise InvalidToken("malformed claims") from None
