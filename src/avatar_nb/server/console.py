"""Console API of the local service: session tokens over HTTP (docs/protocol.md, section 1).

Three routes serve the same handler: ``POST /v1/auth/session-token`` (spatialreal's
route) answers ``{"session_token": ...}``; the seed's ``{console}/session-tokens``, under
the service's ``console_url`` (``/v1/console/session-tokens``) or its ``base_url``
(``/session-tokens``), answers ``{"sessionToken": ...}``. Errors use the JSON error shape; their ``code`` values are
chosen so that clients that look at ``code`` before the text (``INVALID_ARGUMENT``)
classify them as invalid requests, and the API key is never echoed.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from typing import Any

from aiohttp import web

from .state import ServiceState
from .tokens import same_secret

__all__ = ["error_response", "token_handler"]


def error_response(status: int, code: str, title: str, detail: str) -> web.Response:
    """A response in the JSON error shape of docs/protocol.md, section 1."""
    body = {
        "errors": [
            {
                "id": str(uuid.uuid4()),
                "status": status,
                "code": code,
                "title": title,
                "detail": detail,
            }
        ]
    }
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")




_MAX_BODY = 4096  # bytes: a token request is {"expireAt": <unix seconds>}
_MAX_DEPTH = 32  # a token request is one flat object; deeper nesting is refused unparsed


async def _read_body(request: web.Request) -> bytes:
    """The request's body up to one byte more than :data:`_MAX_BODY` (enough to refuse it)."""
    parts: list[bytes] = []
    size = 0
    while size <= _MAX_BODY:
        part = await request.content.read(_MAX_BODY + 1 - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_body(raw: bytes) -> Any:
    """The request's JSON, or None when it is not strict JSON (NaN, Infinity), is nested
    deeper than a token request can be, or does not parse."""
    if not raw:
        return None
    depth = 0
    deepest = 0
    in_string = escaped = False
    for byte in raw:  # brackets outside strings: refuse deep nesting before parsing it
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > _MAX_DEPTH:
                return None
        elif byte in (0x5D, 0x7D):
            depth -= 1
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None


def token_handler(state: ServiceState, key_name: str):
    """The handler of one token route; ``key_name`` is the answer's token field."""

    def refuse(status: int, code: str, title: str, detail: str) -> web.Response:
        state.stats.refusals += 1
        return error_response(status, code, title, detail)

    def invalid(detail: str) -> web.Response:
        return refuse(400, "INVALID_ARGUMENT", "Invalid Argument", detail)

    async def handle(request: web.Request) -> web.Response:
        given = request.headers.get("X-Api-Key", "")
        if not same_secret(given, state.api_key):
            what = "missing" if not given else "wrong"
            return refuse(
                401, "INVALID_API_KEY", "Invalid API Key", f"the X-Api-Key header is {what}"
            )
        if request.content_length is not None and request.content_length > _MAX_BODY:
            return invalid(f"request body is larger than {_MAX_BODY} bytes")
        try:
            async with asyncio.timeout(state.handshake_timeout):
                raw = await _read_body(request)
        except TimeoutError:
            return invalid(f"request body not received within {state.handshake_timeout:g}s")
        if len(raw) > _MAX_BODY:
            return invalid(f"request body is larger than {_MAX_BODY} bytes")
        body = _parse_body(raw)
        if not isinstance(body, dict):
            return invalid('request body must be a JSON object: {"expireAt": <unix seconds>}')
        expire = body.get("expireAt")
        if expire is None:
            return invalid("expireAt is required (unix seconds)")
        integral = isinstance(expire, int) or (
            isinstance(expire, float) and math.isfinite(expire) and expire.is_integer()
        )
        if isinstance(expire, bool) or not integral:
            shown = expire if isinstance(expire, (int, float, str)) else type(expire).__name__
            return invalid(
                f"expireAt must be an integer number of unix seconds, got {str(shown)[:40]!r}"
            )
        now = time.time()
        if expire <= now:
            return invalid("expire_at must be in the future")
        if expire > now + state.max_token_lifetime:
            return invalid(f"expire_at must be at most {state.max_token_lifetime:g} seconds ahead")
        token = state.signer.issue(state.app_id, int(expire))
        state.stats.tokens_issued += 1
        return web.json_response({key_name: token, "expireAt": int(expire)})

    return handle
