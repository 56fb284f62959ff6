"""Console API of the local service: session tokens over HTTP (PROTOCOL.md section 1).

Two routes serve the same handler: ``POST /v1/console/session-tokens`` answers
``{"sessionToken": ...}``, ``POST /v1/auth/session-token`` (the newer route)
``{"session_token": ...}``. Errors use the JSON error shape; their ``code`` values are
chosen so that clients that look at ``code`` before the text (``INVALID_ARGUMENT``)
classify them as invalid requests, and the API key is never echoed.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid

from aiohttp import web

from .state import ServiceState

__all__ = ["error_response", "token_handler"]


def error_response(status: int, code: str, title: str, detail: str) -> web.Response:
    """A response in the JSON error shape of PROTOCOL.md section 1."""
    body = {"errors": [{"id": str(uuid.uuid4()), "status": status, "code": code, "title": title, "detail": detail}]}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _invalid(detail: str) -> web.Response:
    return error_response(400, "INVALID_ARGUMENT", "Invalid Argument", detail)


def token_handler(state: ServiceState, key_name: str):
    """The handler of one token route; ``key_name`` is the answer's token field."""

    async def handle(request: web.Request) -> web.Response:
        given = request.headers.get("X-Api-Key", "")
        if not given or not hmac.compare_digest(given.encode("utf-8"), state.api_key.encode("utf-8")):
            state.stats.refusals += 1
            what = "missing" if not given else "wrong"
            return error_response(401, "INVALID_API_KEY", "Invalid API Key", f"the X-Api-Key header is {what}")
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            state.stats.refusals += 1
            return _invalid('request body must be a JSON object: {"expireAt": <unix seconds>}')
        expire = body.get("expireAt")
        if expire is None:
            state.stats.refusals += 1
            return _invalid("expireAt is required (unix seconds)")
        if isinstance(expire, bool) or not isinstance(expire, (int, float)) or expire != int(expire):
            state.stats.refusals += 1
            return _invalid(f"expireAt must be an integer number of unix seconds, got {json.dumps(expire)[:40]}")
        now = time.time()
        if expire <= now:
            state.stats.refusals += 1
            return _invalid("expire_at must be in the future")
        if expire > now + state.max_token_lifetime:
            state.stats.refusals += 1
            return _invalid(f"expire_at must be at most {state.max_token_lifetime:g} seconds ahead")
        token = state.signer.issue(state.app_id, int(expire))
        state.stats.tokens_issued += 1
        return web.json_response({key_name: token, "expireAt": int(expire)})

    return handle
