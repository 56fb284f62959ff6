"""The HTTP side of a session without sockets: endpoint URLs, redaction, token answers, upgrade refusals."""

from __future__ import annotations

import json

import pytest

from avatar_nb.errors import AvatarSDKErrorCode, SessionTokenError
from avatar_nb.http_api import parse_token_response, redact, token_urls, upgrade_refusal_error, websocket_target

# ----------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    "given,root,console",
    [
        ("https://console.example.com/v1/console", "https://console.example.com", None),
        ("https://console.example.com/v1/console/", "https://console.example.com", None),
        ("https://api.example.com", "https://api.example.com", None),
        ("https://api.example.com/", "https://api.example.com", None),
        ("http://127.0.0.1:8765/v1/console", "http://127.0.0.1:8765", None),
        ("http://127.0.0.1:8765/prefix", "http://127.0.0.1:8765/prefix", None),
        # a console behind a gateway: the fallback is the seed's route under the URL as given
        ("https://proxy.example/console", "https://proxy.example/console", None),
        ("https://proxy.example/console/", "https://proxy.example/console", None),
    ],
)
def test_token_urls(given, root, console):
    """spatialreal's route under the API root first, then the seed's
    ``{console_endpoint_url}/session-tokens`` (trailing ``/`` stripped), not a route
    rebuilt from the root."""
    console = console or given.rstrip("/")
    assert token_urls(given) == (root + "/v1/auth/session-token", console + "/session-tokens")


def test_token_fallback_is_the_older_route_when_the_console_url_ends_in_v1_console():
    _, fallback = token_urls("https://api.example.com/v1/console")
    assert fallback == "https://api.example.com/v1/console/session-tokens"
    # given only the root, the fallback is under the root: the seed would ask there too
    assert token_urls("https://api.example.com")[1] == "https://api.example.com/session-tokens"


@pytest.mark.parametrize(
    "given,scheme",
    [
        ("http://h/v2/driveningress", "ws"),
        ("https://h/v2/driveningress", "wss"),
        ("ws://h/v2/driveningress", "ws"),
        ("wss://h/v2/driveningress/", "wss"),
        ("HTTPS://h/v2/driveningress", "wss"),
    ],
)
def test_websocket_url_schemes(given, scheme):
    url, headers = websocket_target(given, "av 1", app_id="app", session_token="tok")
    assert url == f"{scheme}://h/v2/driveningress/websocket?id=av+1"
    assert headers == {"X-App-ID": "app", "X-Session-Key": "tok"}


def test_websocket_query_auth_keeps_existing_query():
    url, headers = websocket_target(
        "https://h/v2/driveningress?region=eu&id=old", "av", app_id="app", session_token="t/k=", use_query_auth=True
    )
    assert url == "wss://h/v2/driveningress/websocket?region=eu&id=av&appId=app&sessionKey=t%2Fk%3D"
    assert headers == {}


@pytest.mark.parametrize(
    "bad,match",
    [
        ("h/v2/driveningress", "has no scheme"),
        ("ftp://h/x", "has scheme 'ftp'; accepted: http, https, ws, wss"),
        ("http:///path", "has no host"),
    ],
)
def test_websocket_url_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        websocket_target(bad, "av", app_id="a", session_token="t")


def test_redact():
    text = "GET /ws?id=a&sessionKey=SECRET&x=1 HTTP/1.1\n> X-Session-Key: SECRET2\n> X-Api-Key: KEY"
    out = redact(text)
    assert "SECRET" not in out and "KEY" not in out.replace("X-Api-Key", "")
    assert "sessionKey=<redacted>&x=1" in out


# ----------------------------------------------------------------------------- token answers


@pytest.mark.parametrize("key", ["sessionToken", "session_token"])
def test_token_response_accepts_both_keys(key):
    assert parse_token_response(200, json.dumps({key: "tok"})) == "tok"


def _errors(status, code, title, detail):
    return json.dumps({"errors": [{"id": "e1", "status": status, "code": code, "title": title, "detail": detail}]})


@pytest.mark.parametrize(
    "status,body,code",
    [
        (400, _errors(400, "INVALID_ARGUMENT", "Invalid Argument", "expire_at must be in the future"), "invalidRequest"),
        (401, _errors(401, "INVALID_API_KEY", "Invalid API Key", "the X-Api-Key header is wrong"), "sessionTokenInvalid"),
        (402, _errors(402, "BILLING", "Payment Required", "add a card"), "billingRequired"),
        (403, "forbidden", "sessionTokenInvalid"),
        (404, "", "appIDUnrecognized"),
        (429, "", "concurrencyLimit"),
        (500, "boom", "serverError"),
        (503, "", "serverError"),
        (200, _errors(402, "BILLING", "Payment Required", "session denied"), "billingRequired"),
    ],
)
def test_token_refusals(status, body, code):
    with pytest.raises(SessionTokenError) as info:
        parse_token_response(status, body)
    err = info.value
    assert err.code.value == code
    assert err.phase == "session_token"
    if body.startswith("{"):
        first = json.loads(body)["errors"][0]
        assert err.server_code == first["code"] and err.server_detail == first["detail"]
        assert first["detail"] in str(err)


@pytest.mark.parametrize("body", ["", "not json", "[]", '{"sessionToken": ""}', '{"other": 1}'])
def test_token_response_protocol_errors(body):
    with pytest.raises(SessionTokenError) as info:
        parse_token_response(200, body)
    assert info.value.code is AvatarSDKErrorCode.protocolError


@pytest.mark.parametrize(
    "status,body,code",
    [
        (400, "Invalid session token", "sessionTokenInvalid"),
        (400, b"app id mismatch", "appIDMismatch"),
        (400, bytearray(b"something else"), "sessionTokenInvalid"),
        (401, "token is expired", "sessionTokenExpired"),
        (401, "", "sessionTokenExpired"),
        (402, "", "billingRequired"),
        (404, "app id unrecognized", "appIDUnrecognized"),
        (404, "Avatar not found", "avatarNotFound"),
        (404, _errors(404, "NOT_FOUND", "Not Found", "avatar not found"), "avatarNotFound"),
        (429, "concurrency limit reached", "concurrencyLimit"),
        (500, "", "serverError"),
    ],
)
def test_upgrade_refusals(status, body, code):
    err = upgrade_refusal_error(status, body)
    assert err.code.value == code
    assert err.http_status == status and err.phase == "websocket_connect"
    assert f"HTTP {status}" in str(err)


@pytest.mark.parametrize(
    "status,message,code",
    [
        (400, "Invalid session token", "sessionTokenInvalid"),
        (400, "app id mismatch", "appIDMismatch"),
        (404, "Avatar not found", "avatarNotFound"),
        (401, "token is expired", "sessionTokenExpired"),
    ],
)
def test_upgrade_refusals_with_the_hosted_services_json_body(status, message, code):
    """The hosted service answers ``{"message": ...}`` and a newline; the detail is the message."""
    err = upgrade_refusal_error(status, json.dumps({"message": message}, separators=(",", ":")) + "\n")
    assert err.code.value == code and err.server_detail == message
    assert str(err).endswith(f"(HTTP {status}): {message}")
