"""Error classification: every HTTP status, ServerError code, phrase and close code of docs/protocol.md section 6."""

from __future__ import annotations

import pytest

from avatar_nb.errors import (
    AvatarSDKError,
    AvatarSDKErrorCode as C,
    CloseCode,
    SessionTokenError,
    classify_error,
    error_code_for_close_code,
)

PHRASES = [
    ("invalid session token", C.sessionTokenInvalid),
    ("token is expired", C.sessionTokenExpired),
    ("app id mismatch", C.appIDMismatch),
    ("avatar not found", C.avatarNotFound),
    ("unsupported sample rate: 12345", C.unsupportedSampleRate),
    ("no audio input for 30s", C.idleTimeout),
    ("credits exhausted", C.creditsExhausted),
    ("session time limit reached", C.sessionDurationExceeded),
    ("expected clientconfiguresession message", C.protocolError),
    ("unexpected message type 9", C.protocolError),
]


@pytest.mark.parametrize("phrase,code", PHRASES)
@pytest.mark.parametrize("phase", ["websocket_handshake", "websocket_runtime", "websocket_connect"])
def test_phrases_with_code_0(phrase, code, phase):
    assert classify_error(phase=phase, server_code="0", detail=phrase.upper()) is code


@pytest.mark.parametrize("phrase,_", PHRASES)
def test_code_3_wins_over_the_phrase(phrase, _):
    """The official clients read code 3 before the text: the service must not use it for these."""
    assert classify_error(phase="websocket_runtime", server_code="3", detail=phrase) is C.invalidRequest


@pytest.mark.parametrize(
    "code,detail,expected",
    [
        ("3", "livekit_egress.url is empty", C.invalidEgressConfig),
        ("INVALID_ARGUMENT", "bad", C.invalidRequest),
        ("16", "", C.invalidEgressConfig),
        ("14", "", C.egressUnavailable),
        ("4001", "", C.creditsExhausted),
        ("4002", "", C.sessionDurationExceeded),
        ("4003", "", C.concurrencyLimit),
        ("0", "egress client is not configured on server", C.egressUnavailable),
        ("0", "driven server returned non-200 status code", C.upstreamError),
        ("0", "something odd", C.serverError),
    ],
)
def test_server_codes(code, detail, expected):
    assert classify_error(phase="websocket_runtime", server_code=code, detail=detail) is expected


@pytest.mark.parametrize(
    "phase,status,expected",
    [
        ("websocket_connect", 400, C.sessionTokenInvalid),
        ("websocket_connect", 401, C.sessionTokenExpired),
        ("websocket_connect", 402, C.billingRequired),
        ("websocket_connect", 404, C.appIDUnrecognized),
        ("websocket_connect", 429, C.concurrencyLimit),
        ("websocket_connect", 418, C.invalidRequest),
        ("websocket_connect", 502, C.serverError),
        ("session_token", 400, C.invalidRequest),
        ("session_token", 401, C.sessionTokenInvalid),
        ("session_token", 402, C.billingRequired),
        ("session_token", 403, C.sessionTokenInvalid),
        ("session_token", 404, C.appIDUnrecognized),
        ("session_token", 500, C.serverError),
        ("session_token", None, C.unknown),
    ],
)
def test_http_statuses(phase, status, expected):
    assert classify_error(phase=phase, http_status=status) is expected


@pytest.mark.parametrize(
    "phase,status,code,detail,expected",
    [
        ("session_token", 401, "UNAUTHENTICATED", "key revoked", C.sessionTokenInvalid),
        ("session_token", 400, "INVALID_ARGUMENT", "expire_at must be in the future", C.invalidRequest),
        ("session_token", 503, "UNAVAILABLE", "", C.serverError),
        ("websocket_connect", 400, "INVALID_ARGUMENT", "Invalid session token", C.sessionTokenInvalid),
        ("websocket_connect", 503, "UNAVAILABLE", "", C.serverError),
        ("websocket_connect", 401, "16", "", C.sessionTokenExpired),
    ],
)
def test_grpc_labels_in_http_answers_do_not_mean_egress(phase, status, code, detail, expected):
    """The JSON error shape's code is a label; 14/16 mean egress only inside a session."""
    assert classify_error(phase=phase, http_status=status, server_code=code, detail=detail) is expected


def test_phrase_beats_status():
    assert classify_error(phase="websocket_connect", http_status=404, detail="Avatar not found") is C.avatarNotFound
    assert classify_error(phase="websocket_connect", http_status=400, detail="app id mismatch") is C.appIDMismatch


@pytest.mark.parametrize(
    "close,expected,retryable",
    [
        (4001, C.creditsExhausted, False),
        (4002, C.sessionDurationExceeded, True),
        (4003, C.concurrencyLimit, False),
        (4010, C.sessionTokenInvalid, False),
        (4503, C.upstreamError, True),
        (1006, C.connectionClosed, True),
        (4099, C.connectionClosed, False),
        (4599, C.connectionClosed, True),
        (None, C.connectionClosed, True),
    ],
)
def test_close_codes_and_retryable(close, expected, retryable):
    assert error_code_for_close_code(close) is expected
    err = AvatarSDKError(expected, "x", close_code=close)
    assert err.retryable is retryable


def test_retryable_without_close_code():
    assert AvatarSDKError(C.connectionFailed, "x").retryable
    assert AvatarSDKError(C.upstreamError, "x").retryable
    assert not AvatarSDKError(C.avatarNotFound, "x").retryable
    assert not SessionTokenError("x").retryable


def test_close_code_values():
    assert [int(c) for c in CloseCode] == [4001, 4002, 4003, 4010, 4503]


def test_error_text_and_attributes():
    err = AvatarSDKError(C.avatarNotFound, "not here", phase="websocket_connect", http_status=404, server_code="x")
    assert str(err) == "avatarNotFound: not here"
    assert "http_status=404" in repr(err) and "websocket_connect" in repr(err)
    t = SessionTokenError("refused", http_status=401, server_detail="d")
    assert t.phase == "session_token" and isinstance(t, AvatarSDKError) and t.server_detail == "d"


@pytest.mark.parametrize("phase", ["websocket_handshake", "websocket_runtime"])
def test_server_error_codes_classify_the_same_by_number_and_by_name(phase):
    from avatar_nb.errors import AvatarSDKErrorCode, ServerErrorCode, classify_error

    for code in ServerErrorCode:
        by_number = classify_error(phase=phase, server_code=str(code.value), detail="egress said no")
        by_name = classify_error(phase=phase, server_code=code.name, detail="egress said no")
        assert by_number is by_name, code
    assert classify_error(phase=phase, server_code="99", detail="") is AvatarSDKErrorCode.serverError


# ----------------------------------------------------------------------------- misuse errors


def test_invalid_state_error_is_both_runtime_error_and_value_error():
    """avatar_nb has raised RuntimeError for misuse; spatialreal raises ValueError for the
    same misuse. The one class is both, so an ``except`` written for either catches it."""
    from avatar_nb.errors import InvalidStateError

    assert issubclass(InvalidStateError, RuntimeError) and issubclass(InvalidStateError, ValueError)
    for caught in (RuntimeError, ValueError):
        with pytest.raises(caught):
            raise InvalidStateError("session not initialized: call init() before start()")
    assert not issubclass(InvalidStateError, AvatarSDKError)  # a caller bug, not a server answer
