"""Errors: stable codes, the close-code contract, and how server answers map onto them.

The stable string codes are those of the official clients (docs/protocol.md, "Errors"), so
code that branches on ``err.code`` works the same with avatar_nb. Classification is a
pure function of what the server said (HTTP status, ``ServerError.code``, error text,
WebSocket close code) and lives here so that the client and the tests share it.

Messages built here never contain credentials: callers pass server text and status
codes, never the API key or the session token.
"""

from __future__ import annotations

from enum import Enum, IntEnum

__all__ = [
    "AvatarSDKError",
    "AvatarSDKErrorCode",
    "CloseCode",
    "InvalidStateError",
    "ServerErrorCode",
    "SessionTokenError",
    "classify_error",
    "error_code_for_close_code",
]


class AvatarSDKErrorCode(str, Enum):
    """Stable, log-friendly error codes (the official clients' names)."""

    sessionTokenExpired = "sessionTokenExpired"
    sessionTokenInvalid = "sessionTokenInvalid"
    appIDUnrecognized = "appIDUnrecognized"
    appIDMismatch = "appIDMismatch"
    avatarNotFound = "avatarNotFound"
    billingRequired = "billingRequired"
    creditsExhausted = "creditsExhausted"
    sessionDurationExceeded = "sessionDurationExceeded"
    concurrencyLimit = "concurrencyLimit"
    unsupportedSampleRate = "unsupportedSampleRate"
    invalidEgressConfig = "invalidEgressConfig"
    egressUnavailable = "egressUnavailable"
    idleTimeout = "idleTimeout"
    upstreamError = "upstreamError"
    invalidRequest = "invalidRequest"
    connectionFailed = "connectionFailed"
    connectionClosed = "connectionClosed"
    protocolError = "protocolError"
    serverError = "serverError"
    unknown = "unknown"


class CloseCode(IntEnum):
    """WebSocket close codes the service ends a session with.

    40xx: the request is at fault, reconnecting changes nothing (4002 excepted: a
    session that reached its time limit may reconnect). 45xx: a transient server
    problem, reconnect with backoff.
    """

    CREDITS_EXHAUSTED = 4001
    SESSION_TIMEOUT = 4002
    CONCURRENCY_LIMIT = 4003
    AUTH_FAILED = 4010
    UPSTREAM_UNAVAILABLE = 4503


class ServerErrorCode(IntEnum):
    """``ServerError.code`` values the service sends (see docs/protocol.md, "Errors").

    ``OK`` (0) carries a descriptive message that clients classify by its phrases;
    the gRPC-style codes come first in the official clients' classification (3 is
    invalidRequest before any text is read), so a phrase-classified error uses 0.
    """

    OK = 0
    INVALID_ARGUMENT = 3
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16
    CREDITS_EXHAUSTED = 4001
    SESSION_DURATION_EXCEEDED = 4002


_CLOSE_CODE_TO_ERROR = {
    CloseCode.CREDITS_EXHAUSTED: AvatarSDKErrorCode.creditsExhausted,
    CloseCode.SESSION_TIMEOUT: AvatarSDKErrorCode.sessionDurationExceeded,
    CloseCode.CONCURRENCY_LIMIT: AvatarSDKErrorCode.concurrencyLimit,
    CloseCode.AUTH_FAILED: AvatarSDKErrorCode.sessionTokenInvalid,
    CloseCode.UPSTREAM_UNAVAILABLE: AvatarSDKErrorCode.upstreamError,
}

_RETRYABLE_CODES = frozenset(
    {
        AvatarSDKErrorCode.connectionFailed,
        AvatarSDKErrorCode.connectionClosed,
        AvatarSDKErrorCode.upstreamError,
    }
)


class AvatarSDKError(Exception):
    """An error with a stable :class:`AvatarSDKErrorCode` and what the server said.

    Attributes: ``code``, ``message``, ``phase`` (``session_token``,
    ``websocket_connect``, ``websocket_handshake``, ``websocket_send``,
    ``websocket_runtime``, ``config``), ``http_status``, ``server_code``,
    ``server_title``, ``server_detail``, ``connection_id``, ``req_id``, ``raw_body``,
    ``close_code``, ``close_reason``.
    """

    def __init__(
        self,
        code: AvatarSDKErrorCode,
        message: str,
        *,
        phase: str = "unknown",
        http_status: int | None = None,
        server_code: str | None = None,
        server_title: str | None = None,
        server_detail: str | None = None,
        connection_id: str | None = None,
        req_id: str | None = None,
        raw_body: str | None = None,
        close_code: int | None = None,
        close_reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = AvatarSDKErrorCode(code)
        self.message = message
        self.phase = phase
        self.http_status = http_status
        self.server_code = server_code
        self.server_title = server_title
        self.server_detail = server_detail
        self.connection_id = connection_id
        self.req_id = req_id
        self.raw_body = raw_body
        self.close_code = close_code
        self.close_reason = close_reason

    @property
    def retryable(self) -> bool:
        """Whether reconnecting can plausibly succeed, per the close-code contract.

        With a close code: 4002 and 45xx are retryable, other 40xx are not, anything
        else is. Without one: transport failures (connectionFailed, connectionClosed)
        and upstream errors are retryable, everything the request caused is not.
        """
        if self.close_code is None:
            return self.code in _RETRYABLE_CODES
        if self.close_code == CloseCode.SESSION_TIMEOUT:
            return True
        if 4000 <= self.close_code < 4500:
            return False
        return True

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"

    def __repr__(self) -> str:
        extras = [
            f"{name}={getattr(self, name)!r}"
            for name in ("phase", "http_status", "server_code", "close_code", "req_id")
            if getattr(self, name) not in (None, "unknown")
        ]
        inner = ", ".join([f"code={self.code.value!r}", f"message={self.message!r}", *extras])
        return f"{type(self).__name__}({inner})"


class SessionTokenError(AvatarSDKError):
    """The console refused or failed to issue a session token (``init()``)."""

    def __init__(
        self,
        message: str,
        *,
        code: AvatarSDKErrorCode = AvatarSDKErrorCode.invalidRequest,
        phase: str = "session_token",
        http_status: int | None = None,
        server_code: str | None = None,
        server_title: str | None = None,
        server_detail: str | None = None,
        raw_body: str | None = None,
    ) -> None:
        super().__init__(
            code,
            message,
            phase=phase,
            http_status=http_status,
            server_code=server_code,
            server_title=server_title,
            server_detail=server_detail,
            raw_body=raw_body,
        )


class InvalidStateError(RuntimeError, ValueError):
    """An operation that the session or protocol state does not allow (a caller bug).

    Both a ``RuntimeError`` (as avatar_nb has always raised it) and a ``ValueError``
    (what spatialreal raises for the same misuse: start before init, a second start,
    send before start or after close, pause before any audio), so code written for
    either catches it.
    """


def error_code_for_close_code(close_code: int | None) -> AvatarSDKErrorCode:
    """The stable code for a WebSocket close code (connectionClosed when unknown)."""
    if close_code is None:
        return AvatarSDKErrorCode.connectionClosed
    try:
        return _CLOSE_CODE_TO_ERROR[CloseCode(close_code)]
    except ValueError:
        return AvatarSDKErrorCode.connectionClosed


# Phrases the service uses so that clients can classify its errors (docs/protocol.md, "Errors"),
# in the order they are tested.
_PHRASES: tuple[tuple[tuple[str, ...], AvatarSDKErrorCode], ...] = (
    (("credits exhausted",), AvatarSDKErrorCode.creditsExhausted),
    (("session time limit reached", "maximum session duration"), AvatarSDKErrorCode.sessionDurationExceeded),
    (("concurrency limit",), AvatarSDKErrorCode.concurrencyLimit),
    (("session denied",), AvatarSDKErrorCode.billingRequired),
    (("invalid session token", "empty token"), AvatarSDKErrorCode.sessionTokenInvalid),
    (("token is expired", "session token expired"), AvatarSDKErrorCode.sessionTokenExpired),
    (("app id mismatch",), AvatarSDKErrorCode.appIDMismatch),
    (("appidunrecognized", "app id unrecognized"), AvatarSDKErrorCode.appIDUnrecognized),
    (("avatar not found",), AvatarSDKErrorCode.avatarNotFound),
    (("unsupported sample rate",), AvatarSDKErrorCode.unsupportedSampleRate),
    (("no audio input for", "livekit silence timeout"), AvatarSDKErrorCode.idleTimeout),
    (("livekit_egress", "agora_egress", "missing livekit credentials"), AvatarSDKErrorCode.invalidEgressConfig),
    (
        ("egress client is not configured on server", "failed to create egress connection"),
        AvatarSDKErrorCode.egressUnavailable,
    ),
    (
        ("driven server returned non-200 status code", "driven server request failed"),
        AvatarSDKErrorCode.upstreamError,
    ),
    (
        (
            "expected clientconfiguresession message",
            "clientconfiguresession message is nil",
            "unexpected message type",
            "failed to unmarshal",
        ),
        AvatarSDKErrorCode.protocolError,
    ),
)


def _server_error_code(code: str | None) -> ServerErrorCode | None:
    """The :class:`ServerErrorCode` that ``code`` spells, as a number (``"3"``) or as a
    gRPC name (``"INVALID_ARGUMENT"``, the JSON error shape's label); None otherwise."""
    if code is None:
        return None
    try:
        return ServerErrorCode(int(code)) if code.isdigit() else ServerErrorCode[code]
    except (KeyError, ValueError):
        return None


def classify_error(
    *,
    phase: str,
    http_status: int | None = None,
    server_code: str | int | None = None,
    title: str | None = None,
    detail: str | None = None,
    close_code: int | None = None,
) -> AvatarSDKErrorCode:
    """Map what the server said onto a stable code.

    The order follows the official clients: numeric ``ServerError`` codes first
    (INVALID_ARGUMENT is invalidRequest before any text is read, which is why the service
    sends phrase-classified errors with code OK), then the phrases of docs/protocol.md
    ("Errors"), then the close code, then the HTTP status. Unlike avatarkit 0.1.7, the
    gRPC-style codes (:class:`ServerErrorCode`) count only in the WebSocket phases, where
    ``ServerError`` carries them; in the ``session_token`` and ``websocket_connect``
    phases the HTTP status decides.
    """
    code = None if server_code is None else str(server_code)
    text = " | ".join(v.strip().lower() for v in (code, title, detail) if v and v.strip())
    egress_words = ("livekit", "agora", "egress")

    # The gRPC-style codes are ServerError.code values of the WebSocket session, where
    # 16 and 14 come from the egress. In an HTTP answer (token request, upgrade refusal)
    # the JSON error shape's code is only a label: "UNAUTHENTICATED" with a 401 from the
    # console is a bad API key, not an egress problem, so phrases and status decide there.
    in_session = phase in ("websocket_handshake", "websocket_runtime")
    known = _server_error_code(code)
    if in_session and known is ServerErrorCode.INVALID_ARGUMENT:
        if any(w in text for w in egress_words):
            return AvatarSDKErrorCode.invalidEgressConfig
        return AvatarSDKErrorCode.invalidRequest
    if in_session and known is ServerErrorCode.UNAUTHENTICATED:
        return AvatarSDKErrorCode.invalidEgressConfig
    if in_session and known is ServerErrorCode.UNAVAILABLE:
        return AvatarSDKErrorCode.egressUnavailable
    numeric = int(code) if code is not None and code.isdigit() else known
    if numeric is not None and 4000 <= numeric < 5000:
        mapped = error_code_for_close_code(int(numeric))
        if mapped is not AvatarSDKErrorCode.connectionClosed:
            return mapped

    for phrases, mapped in _PHRASES:
        if any(p in text for p in phrases):
            return mapped

    if close_code is not None:
        return error_code_for_close_code(close_code)

    status = http_status
    if status == 402:
        return AvatarSDKErrorCode.billingRequired
    if phase == "session_token":
        if status in (401, 403):
            return AvatarSDKErrorCode.sessionTokenInvalid
        if status == 404:
            return AvatarSDKErrorCode.appIDUnrecognized
        if status == 429:
            return AvatarSDKErrorCode.concurrencyLimit
    else:
        if status == 401:
            return AvatarSDKErrorCode.sessionTokenExpired
        if status == 404:
            return AvatarSDKErrorCode.appIDUnrecognized
        if status == 400 and phase == "websocket_connect":
            return AvatarSDKErrorCode.sessionTokenInvalid
        if status == 429:
            return AvatarSDKErrorCode.concurrencyLimit
    if status is not None and 400 <= status < 500:
        return AvatarSDKErrorCode.invalidRequest
    if status is not None and status >= 500:
        return AvatarSDKErrorCode.serverError
    if phase in ("websocket_handshake", "websocket_runtime"):
        return AvatarSDKErrorCode.serverError
    return AvatarSDKErrorCode.unknown
