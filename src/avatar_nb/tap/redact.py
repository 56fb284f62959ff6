"""What a capture must never hold: API keys, session tokens, egress secrets.

Headers and query parameters whose names say they carry a credential are replaced by
:data:`REDACTED`; a ClientConfigureSession with egress credentials is written with
those fields replaced (the proxy forwards the original bytes; the capture marks the
message as redacted); a console answer's JSON is written with the values of credential
keys replaced (``sessionToken``, ``session_token``, ``apiKey`` ...), by the same rule
as headers, and any string holding a credential the request carried likewise."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

__all__ = ["REDACTED", "redact_configure", "redact_headers", "redact_json", "redact_query", "secret_name"]

REDACTED = "<redacted>"

_SECRET_HEADERS = frozenset(
    {"x-api-key", "x-session-key", "authorization", "proxy-authorization", "cookie", "set-cookie"}
)
_SECRET_WORDS = ("key", "token", "secret", "password", "auth", "credential", "signature")


def secret_name(name: str) -> bool:
    """Whether a header or query parameter of this name may carry a credential."""
    lower = name.lower()
    return lower in _SECRET_HEADERS or any(word in lower for word in _SECRET_WORDS)


def redact_headers(headers: Iterable[tuple[str, str]]) -> list[list[str]]:
    """``[[name, value], ...]`` with credential values replaced (order and repeats kept)."""
    return [[str(k), REDACTED if secret_name(str(k)) else str(v)] for k, v in headers]


def redact_query(query: str) -> str:
    """A raw query string with credential values replaced (``sessionKey`` and the like)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if secret_name(k) else v) for k, v in pairs])


def redact_json(value: Any, secrets: Iterable[str] = (), *, max_depth: int = 32) -> Any:
    """A parsed JSON value with credentials replaced: the value of every object key that
    :func:`secret_name` flags, every string that contains one of ``secrets`` (the
    credentials the request carried, so an answer echoing one never holds it), and
    anything nested deeper than ``max_depth`` (not looked into, so not kept)."""
    known = [s for s in secrets if s]

    def walk(item: Any, depth: int) -> Any:
        if depth > max_depth:
            return REDACTED
        if isinstance(item, dict):
            return {str(k): REDACTED if secret_name(str(k)) else walk(v, depth + 1) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v, depth + 1) for v in item]
        if isinstance(item, str) and any(s in item for s in known):
            return REDACTED
        return item

    return walk(value, 0)


def redact_configure(data: bytes) -> bytes | None:
    """A ClientConfigureSession without its egress credentials, re-serialized; None when
    ``data`` is not a configure message with credentials (nothing to redact)."""
    from google.protobuf.message import DecodeError

    from ..proto import message_pb2 as pb

    try:
        msg = pb.Message.FromString(bytes(data))
    except DecodeError:
        return None
    if msg.WhichOneof("data") != "client_configure_session":
        return None
    cfg = msg.client_configure_session
    changed = False
    if cfg.HasField("livekit_egress"):
        lk = cfg.livekit_egress
        for name in ("api_key", "api_secret", "api_token"):
            if getattr(lk, name):
                setattr(lk, name, REDACTED)
                changed = True
    if cfg.HasField("agora_egress") and cfg.agora_egress.token:
        cfg.agora_egress.token = REDACTED
        changed = True
    return msg.SerializeToString() if changed else None
