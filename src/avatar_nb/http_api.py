"""The HTTP side of a session: endpoint URLs, the session token, the WebSocket upgrade.

Nothing here touches a socket. :func:`token_urls` and :func:`parse_token_response` are
the two ends of the console's token request, :func:`websocket_target` builds the
ingress URL and headers, :func:`upgrade_refusal_error` classifies a refused upgrade,
:func:`redirect_refusal` decides which redirects may be followed with credentials, and
:func:`redact` removes the secrets these carry from text meant for people
(docs/protocol.md, "Session token" and "Ingress"). The WebSocket messages that follow
the upgrade are :mod:`avatar_nb.protocol`'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from .errors import AvatarSDKError, AvatarSDKErrorCode, SessionTokenError, classify_error

__all__ = [
    "SESSION_TOKEN_PATH",
    "LEGACY_SESSION_TOKEN_PATH",
    "CONSOLE_TOKEN_SUFFIX",
    "CONSOLE_SCHEMES",
    "INGRESS_SCHEMES",
    "check_endpoint_url",
    "check_console_url",
    "check_ingress_url",
    "token_urls",
    "websocket_target",
    "redact",
    "error_details",
    "parse_token_response",
    "upgrade_refusal_error",
    "REDIRECT_STATUSES",
    "MAX_REDIRECTS",
    "origin",
    "public_url",
    "redirect_target",
    "redirect_refusal",
    "redirect_refusal_message",
]

SESSION_TOKEN_PATH = "/v1/auth/session-token"
"""The token route under the API root (spatialreal 0.2.2's; reply key ``session_token``)."""

CONSOLE_TOKEN_SUFFIX = "/session-tokens"
"""The seed's token route under the console URL as given (reply key ``sessionToken``),
asked once when :data:`SESSION_TOKEN_PATH` answers 404."""

LEGACY_SESSION_TOKEN_PATH = "/v1/console" + CONSOLE_TOKEN_SUFFIX
"""Where that route lives under the API root when the console URL is ``<root>/v1/console``
(the local service serves it there)."""

CONSOLE_SUFFIX = "/v1/console"
"""The console path under the API root: ``console_endpoint_url`` is often ``<root>/v1/console``."""

INGRESS_PATH = "/v2/driveningress"
"""Where the driven-ingress endpoint lives under a deployment's ingress origin."""

WEBSOCKET_PATH = "/websocket"
"""The WebSocket route under the ingress endpoint."""

CONSOLE_SCHEMES = ("http", "https")
"""URL schemes ``console_endpoint_url`` may have."""

INGRESS_SCHEMES = ("http", "https", "ws", "wss")
"""URL schemes ``ingress_endpoint_url`` may have (``http``/``https`` become ``ws``/``wss``)."""


def token_urls(console_endpoint_url: str) -> tuple[str, str]:
    """The session-token URLs to ask, in order: spatialreal's route, then the seed's.

    First ``{root}/v1/auth/session-token``, where the API root is the console URL
    without a trailing ``/`` and ``/v1/console`` (as spatialreal 0.2.2 takes it); then,
    when that answers 404, ``{console_endpoint_url}/session-tokens`` with the console
    URL exactly as given but for a trailing ``/`` (the seed's route, also for a console
    behind a gateway such as ``https://gw.example/console``; docs/protocol.md,
    "Session token").
    """
    check_console_url(console_endpoint_url)
    console = console_endpoint_url.rstrip("/")
    root = console.removesuffix(CONSOLE_SUFFIX)
    return root + SESSION_TOKEN_PATH, console + CONSOLE_TOKEN_SUFFIX


def check_endpoint_url(url: str, name: str, schemes: Sequence[str]) -> str:
    """Return the lower-cased scheme of ``url``; ``ValueError`` naming ``name`` when it has
    no scheme, one not in ``schemes``, or no host."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not scheme or "://" not in url:
        raise ValueError(f"{name} {url!r} has no scheme; use one of {', '.join(schemes)}")
    if scheme not in schemes:
        raise ValueError(f"{name} {url!r} has scheme {scheme!r}; accepted: {', '.join(schemes)}")
    if not parts.netloc:
        raise ValueError(f"{name} {url!r} has no host")
    return scheme


def check_console_url(url: str) -> str:
    """The lower-cased scheme of a ``console_endpoint_url``; ``ValueError`` naming it otherwise."""
    return check_endpoint_url(url, "console_endpoint_url", CONSOLE_SCHEMES)


def check_ingress_url(url: str) -> str:
    """The lower-cased scheme of an ``ingress_endpoint_url``; ``ValueError`` naming it otherwise."""
    return check_endpoint_url(url, "ingress_endpoint_url", INGRESS_SCHEMES)


def websocket_target(
    ingress_endpoint_url: str,
    avatar_id: str,
    *,
    app_id: str,
    session_token: str,
    use_query_auth: bool = False,
) -> tuple[str, dict[str, str]]:
    """The WebSocket URL and headers for ``start()`` (docs/protocol.md, "Ingress").

    ``http``/``https`` become ``ws``/``wss``; ``ws``/``wss`` are kept; anything else is a
    ``ValueError``. Existing query parameters are kept; ``id`` is set to the avatar id,
    and with ``use_query_auth`` also ``appId`` and ``sessionKey``, otherwise the
    ``X-App-ID`` and ``X-Session-Key`` headers carry them.
    """
    scheme = check_ingress_url(ingress_endpoint_url)
    ws_scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    parts = urlsplit(ingress_endpoint_url)
    path = parts.path.rstrip("/") + WEBSOCKET_PATH
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "id"]
    query.append(("id", avatar_id))
    headers: dict[str, str] = {}
    if use_query_auth:
        query = [(k, v) for k, v in query if k not in ("appId", "sessionKey")]
        query += [("appId", app_id), ("sessionKey", session_token)]
    else:
        headers = {"X-App-ID": app_id, "X-Session-Key": session_token}
    url = urlunsplit((ws_scheme, parts.netloc, path, urlencode(query), ""))
    return url, headers


_SECRETS = (
    re.compile(r"(sessionKey=)[^&#\s]*"),
    re.compile(r"(?i)(x-session-key:\s*)\S+"),
    re.compile(r"(?i)(x-api-key:\s*)\S+"),
)


def redact(text: str) -> str:
    """``text`` with session keys and API keys (URL query or header lines) replaced."""
    for pattern in _SECRETS:
        text = pattern.sub(r"\1<redacted>", text)
    return text


def _json_or_none(body: str | bytes | None) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, TypeError):
        return None


def _text(body: str | bytes | bytearray | memoryview | None) -> str:
    if body is None:
        return ""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body).decode("utf-8", "replace")
    return body


def error_details(body: str | bytes | None) -> dict[str, str | None]:
    """The first error of the JSON error shape, or the plain text, as a dict.

    Keys: ``status``, ``code`` (``code`` or ``id``), ``title``, ``detail`` (``detail``
    or ``message``).
    """
    body = _text(body)
    data = _json_or_none(body)
    if data is None:
        text = body.strip()
        return {"status": None, "code": None, "title": None, "detail": text[:500] or None}
    if isinstance(data, dict):
        errors = data.get("errors")
        first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else data

        def s(value: Any) -> str | None:
            return None if value is None else str(value)

        return {
            "status": s(first.get("status")),
            "code": s(first.get("code") or first.get("id") or first.get("error")),
            "title": s(first.get("title")),
            "detail": s(first.get("detail") or first.get("message")),
        }
    return {"status": None, "code": None, "title": None, "detail": None}


def _raw_body(text: str | None) -> str | None:
    """The start of an error answer's body, kept on the exception for people to read."""
    return text[:2000] if text else None


def _details_text(details: dict[str, str | None]) -> str:
    """``title - detail`` of an error, or its code, for messages."""
    return " - ".join(p for p in (details["title"], details["detail"]) if p) or details["code"] or ""


def parse_token_response(status: int, body: str) -> str:
    """The session token from the console's answer, or a :class:`SessionTokenError`.

    Accepts ``sessionToken`` and ``session_token``. A non-200 status, a 200 with a
    non-empty ``errors`` list, a body that is not JSON, or an empty token are errors;
    the JSON error shape's code, title and detail are carried on the exception.
    """
    data = _json_or_none(body)
    has_errors = isinstance(data, dict) and bool(data.get("errors"))
    if status != 200 or has_errors:
        details = error_details(body)
        effective = status
        if status == 200 and details["status"] and details["status"].isdigit():
            effective = int(details["status"])
        text = _details_text(details)
        message = f"session token request failed (HTTP {effective})"
        if text:
            message += f": {text}"
        raise SessionTokenError(
            message,
            code=classify_error(
                phase="session_token",
                http_status=effective,
                server_code=details["code"],
                title=details["title"],
                detail=details["detail"],
            ),
            http_status=effective,
            server_code=details["code"],
            server_title=details["title"],
            server_detail=details["detail"],
            raw_body=_raw_body(body),
        )
    if not isinstance(data, dict):
        raise SessionTokenError(
            "session token response is not a JSON object",
            code=AvatarSDKErrorCode.protocolError,
            http_status=status,
            raw_body=_raw_body(body),
        )
    token = data.get("sessionToken") or data.get("session_token")
    if not token or not isinstance(token, str):
        raise SessionTokenError(
            "session token response has an empty or missing sessionToken",
            code=AvatarSDKErrorCode.protocolError,
            http_status=status,
        )
    return token


def upgrade_refusal_error(status: int, body: str | bytes | None) -> AvatarSDKError:
    """The error for a WebSocket upgrade refused with HTTP ``status`` and ``body``."""
    details = error_details(body)
    code = classify_error(
        phase="websocket_connect",
        http_status=status,
        server_code=details["code"],
        title=details["title"],
        detail=details["detail"],
    )
    text = _details_text(details)
    message = f"WebSocket upgrade refused (HTTP {status})" + (f": {text}" if text else "")
    raw = _text(body)
    return AvatarSDKError(
        code,
        message,
        phase="websocket_connect",
        http_status=status,
        server_code=details["code"],
        server_title=details["title"],
        server_detail=details["detail"],
        raw_body=_raw_body(raw),
    )


REDIRECT_STATUSES = (300, 301, 302, 303, 307, 308)
"""HTTP statuses that redirect (with a ``Location``): what aiohttp and websockets follow."""

MAX_REDIRECTS = 5
"""How many same-origin redirects a token request or an upgrade follows before giving up."""

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of ``url``, lower-cased, with the scheme's default port
    filled in (None for another scheme): two URLs are the same origin when these are
    equal. ``ValueError`` for a URL that cannot be parsed."""
    parts = urlsplit(url)  # ValueError for an invalid URL
    scheme = parts.scheme.lower()
    port = parts.port  # ValueError for a port out of range
    return scheme, (parts.hostname or "").lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def public_url(url: str) -> str:
    """``url`` as it may be shown to people: scheme, host, port and path only (no user
    info, query or fragment, where a key or token could sit)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<an invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redirect_target(url: str, location: str) -> str:
    """The absolute URL a redirect from ``url`` with header ``Location: location`` names
    (``location`` itself when it cannot be joined: :func:`redirect_refusal` refuses it)."""
    try:
        return urljoin(url, location.strip())
    except ValueError:
        return location.strip()


def redirect_refusal(url: str, target: str) -> str | None:
    """Why a request to ``url`` that carries credentials (``X-Api-Key``, ``X-Session-Key``,
    ``X-App-ID`` or a ``sessionKey`` query) must not follow a redirect to ``target``;
    ``None`` when it may.

    Only a redirect to the same origin (scheme, host and port: a path change) is
    followed; anything else, including ``http`` to ``https`` and ``https`` to ``http``,
    is refused (docs/protocol.md, "Redirects").
    """
    try:
        old, new = origin(url), origin(target)
    except ValueError:
        return "its Location is not a valid URL"
    if not new[1] or new[2] is None:
        return "its Location is not a valid URL"
    if old == new:
        return None
    if old[0] in ("https", "wss") and new[0] not in ("https", "wss"):
        return "it would downgrade a secure connection"
    return "it leaves the origin the credentials are for"


def redirect_refusal_message(status: int, url: str, target: str, reason: str) -> str:
    """The text of the error for a refused redirect: both URLs without secrets."""
    return (
        f"refused to follow a redirect (HTTP {status}) from {public_url(url)} to {public_url(target)}: "
        f"{reason}; credentials are only sent to the configured origin"
    )
