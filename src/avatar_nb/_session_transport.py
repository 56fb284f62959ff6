"""The websockets and aiohttp helpers of :class:`~avatar_nb.session.AvatarSession`:
the session key kept out of the websockets library's log, the token request, errors
scrubbed of secrets, a bounded close, and a close frame turned into an AvatarSDKError."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from websockets.exceptions import ConnectionClosed

from .errors import AvatarSDKError, error_code_for_close_code
from .http_api import redact


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
    async with http.post(url, json=payload, headers=headers) as response:
        return response.status, await response.text()


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
