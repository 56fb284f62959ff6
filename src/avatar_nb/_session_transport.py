"""The websockets and aiohttp helpers of :class:`~avatar_nb.session.AvatarSession`:
the session key kept out of the websockets library's log, the token request, errors
scrubbed of secrets, a bounded close, and a close frame turned into an AvatarSDKError."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from websockets.asyncio.client import connect as _ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from .errors import AvatarSDKError, AvatarSDKErrorCode, SessionTokenError, error_code_for_close_code
from .http_api import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    redact,
    redirect_refusal,
    redirect_refusal_message,
    redirect_target,
)


class _RedactingLogger(logging.LoggerAdapter):
    """The websockets library logs the request line and headers at DEBUG level: this
    adapter keeps the session key (query parameter or header) out of those records."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, "%s", redact(text), **kwargs)


_WS_LOGGER = _RedactingLogger(logging.getLogger("websockets.client"), {})
_MAX_MESSAGE = 64 * 1024 * 1024
_HANDSHAKE_CLOSE_TIMEOUT = 1.0  # seconds; a server that refused the handshake closes at once
_READ_LOOP_GRACE = 1.0  # after the connection is gone, the read loop ends within a loop turn or two


async def _post(http: Any, url: str, payload: dict[str, Any], headers: dict[str, str]) -> tuple[int, str]:
    """POST the token request to ``url``; the answer's status and text.

    aiohttp would follow any redirect with every header, ``X-Api-Key`` included, so
    redirects are followed here: one to the same origin (scheme, host and port) as HTTP
    says (303, and 301/302 after a POST, become a GET without a body; 307/308 repeat the
    POST), at most :data:`MAX_REDIRECTS` of them; one to any other origin is a
    :class:`SessionTokenError` naming the target, and nothing is sent there.
    """
    method = "POST"
    for _ in range(MAX_REDIRECTS + 1):
        body = {"json": payload} if method == "POST" else {}
        async with http.request(method, url, headers=headers, allow_redirects=False, **body) as response:
            location = response.headers.get("Location")
            if response.status not in REDIRECT_STATUSES or not location:
                return response.status, await response.text()
            status = response.status
        target = redirect_target(url, location)
        reason = redirect_refusal(url, target)
        if reason is not None:
            raise SessionTokenError(
                redirect_refusal_message(status, url, target, reason),
                code=AvatarSDKErrorCode.connectionFailed,
                http_status=status,
            )
        if status == 303 or (status in (301, 302) and method == "POST"):
            method = "GET"
        url = target
    raise SessionTokenError(
        f"session token request redirected more than {MAX_REDIRECTS} times",
        code=AvatarSDKErrorCode.connectionFailed,
        http_status=status,
    )


class RedirectRefused(WebSocketException):
    """A WebSocket upgrade answered with a redirect that :func:`redirect_refusal` refuses."""

    def __init__(self, status: int, url: str, target: str, reason: str) -> None:
        super().__init__(redirect_refusal_message(status, url, target, reason))
        self.status = status
        self.target = target


class _Connect(_ws_connect):
    """websockets' ``connect`` that follows a redirect only within the origin.

    websockets itself follows cross-origin redirects, keeping every header but
    ``Authorization``, ``Cookie`` and ``Proxy-Authorization``: ``X-Session-Key`` and
    ``X-App-ID`` would reach the other host. Here any redirect that
    :func:`~avatar_nb.http_api.redirect_refusal` refuses ends the connect with
    :class:`RedirectRefused`, before anything is sent to the target.
    """

    def process_redirect(self, exc: Exception) -> Exception | str:
        if (
            isinstance(exc, InvalidStatus)
            and exc.response.status_code in REDIRECT_STATUSES
            and "Location" in exc.response.headers
        ):
            target = redirect_target(self.uri, exc.response.headers["Location"])
            reason = redirect_refusal(self.uri, target)
            if reason is not None:
                return RedirectRefused(exc.response.status_code, self.uri, target, reason)
        return super().process_redirect(exc)


def _describe(exc: BaseException) -> str:
    """An exception's type and text, with keys and tokens redacted."""
    text = redact(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _scrub(error: AvatarSDKError, secret: str | None) -> AvatarSDKError:
    """``error`` with ``secret`` (an API key or session token a server may echo) blanked
    in its text and attributes, and without a cause or context."""
    if secret:
        for name in ("message", "server_title", "server_detail", "server_code", "raw_body", "close_reason"):
            value = getattr(error, name, None)
            if isinstance(value, str) and secret in value:
                setattr(error, name, value.replace(secret, "<redacted>"))
        error.args = tuple(a.replace(secret, "<redacted>") if isinstance(a, str) else a for a in error.args)
    error.__cause__ = None
    error.__context__ = None
    error.__suppress_context__ = True
    return error


async def _shutdown(ws: Any, timeout: float) -> None:
    """Close ``ws`` within ``timeout`` seconds, then abort it; returns once it is gone."""
    if timeout > 0:
        try:
            await asyncio.wait_for(ws.close(), timeout)
            return
        except Exception:
            pass
    ws.transport.abort()
    try:
        await asyncio.wait_for(ws.wait_closed(), _READ_LOOP_GRACE)
    except Exception:
        pass


def _closed_error(exc: ConnectionClosed, *, phase: str, req_id: str | None = None) -> AvatarSDKError:
    frame = exc.rcvd or exc.sent
    code = frame.code if frame is not None else None
    reason = frame.reason if frame is not None else None
    text = "the connection closed"
    if code is not None:
        text += f" (code {code}{': ' + reason if reason else ''})"
    elif exc.rcvd is None:
        text += " without a close frame"
    return AvatarSDKError(
        error_code_for_close_code(code if exc.rcvd is not None else None),
        text,
        phase=phase,
        req_id=req_id,
        close_code=code if exc.rcvd is not None else None,
        close_reason=reason or None,
    )
