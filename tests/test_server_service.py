"""The LocalService object: thread and loop modes, credentials, settings, serve_forever."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

import pytest

from avatar_nb.errors import InvalidStateError
from avatar_nb.server import LocalService, describe

from .helpers import handshake, open_raw, post_token


def test_thread_mode_and_properties():
    svc = LocalService(
        realtime=False, api_key="sk-test-123", app_id="app-x", avatar_ids=["a1", "a2"]
    )
    assert "not started" in repr(svc)
    with svc:
        assert svc.console_url == f"http://127.0.0.1:{svc.port}/v1/console"
        assert svc.ingress_url == f"http://127.0.0.1:{svc.port}/v2/driveningress"
        assert (svc.api_key, svc.app_id, svc.avatar_id, svc.avatar_ids) == (
            "sk-test-123",
            "app-x",
            "a1",
            ("a1", "a2"),
        )
        kwargs = svc.session_kwargs(sample_rate=8000)
        assert kwargs["console_endpoint_url"] == svc.console_url and kwargs["sample_rate"] == 8000
        assert "sk-test-123" not in repr(svc) and "sk-test-123" not in repr(svc.state)
    assert not svc.running


def test_generated_credentials_differ_per_instance():
    a, b = LocalService(), LocalService()
    assert a.api_key != b.api_key and a.app_id != b.app_id and a.avatar_id != b.avatar_id


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(fps=0), "fps"),
        (dict(latency_ms=-1), "latency_ms"),
        (dict(port=70000), "port"),
        (dict(n_expression=-2), "n_expression"),
        (dict(idle_timeout=0), "idle_timeout"),
        (dict(jitter_ms=float("inf")), "jitter_ms"),
        (dict(session_time_limit=-5), "session_time_limit"),
        (dict(max_sessions=0), "max_sessions"),
        (dict(send_timeout=0), "send_timeout"),
        (dict(handshake_timeout=float("nan")), "handshake_timeout"),
        (dict(max_backlog=-1), "max_backlog"),
        (dict(pause_limit=0), "pause_limit"),
        (dict(egress="livekit"), "egress"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LocalService(**kwargs)


def test_port_in_use_is_reported():
    with LocalService() as first, pytest.raises(OSError):
        LocalService(port=first.port).start()


def test_start_stop_contract():
    svc = LocalService(realtime=False)
    with pytest.raises(InvalidStateError, match="not running"):
        svc.base_url
    assert svc.start() is svc
    try:
        with pytest.raises(InvalidStateError, match="already running"):
            svc.start()
    finally:
        svc.stop()
    svc.stop()  # idempotent
    assert not svc.running


def test_thread_mode_serves_an_async_client():
    """The default mode: the service on its own loop in a thread, the client on another loop."""
    with LocalService(realtime=False) as svc:

        async def client() -> str:
            ws = await open_raw(svc)
            confirm = await handshake(ws)
            await ws.close()
            return confirm.connection_id

        assert asyncio.run(client()).startswith("conn-")
        assert svc.stats["sessions_total"] == 1


def test_describe_prints_urls_and_credentials():
    with LocalService(realtime=False, api_key="sk-shown-here") as svc:
        text = describe(svc)
        shown = (svc.console_url, svc.ingress_url, "sk-shown-here", svc.app_id, svc.avatar_id)
    for value in shown:
        assert value in text


async def test_serve_forever_prints_credentials_and_stops_on_ctrl_c():
    code = (
        "from avatar_nb.server import serve_forever; serve_forever('127.0.0.1', 0, realtime=False)"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        printed = {}
        while "avatar_id" not in printed:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, (await proc.stderr.read()).decode()
            key, sep, value = line.partition("=")
            if sep:
                printed[key.strip()] = value.strip()
        status, body = await post_token(
            printed["console_endpoint_url"] + "/session-tokens",
            api_key=printed["api_key"],
            body={"expireAt": int(time.time()) + 60},
        )
        assert status == 200 and json.loads(body)["sessionToken"]
        assert printed["ingress_endpoint_url"].endswith("/v2/driveningress")
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert b"Traceback" not in await proc.stderr.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_secrets_stay_out_of_logs_and_errors(caplog, speech_pcm):
    """Query-style auth puts the session key in the URL: no log line of the service shows it."""
    import logging

    from .helpers import collect_until_end, refusal, stream

    caplog.set_level(logging.DEBUG)
    async with LocalService(realtime=False, api_key="sk-never-logged") as svc:
        token = svc.issue_token()
        ws = await open_raw(svc, token=token, query_auth=True)
        await handshake(ws)
        await stream(ws, speech_pcm[:6400], "s")
        await collect_until_end(ws, "s")
        await ws.send("not binary")
        await ws.recv()
        await ws.close()
        forged = token[:-4] + "AAAA"
        status, body = await refusal(svc, token=forged, query_auth=True)
        assert status == 400 and forged not in body
        status, body = await post_token(
            svc.console_url + "/session-tokens", api_key="sk-guess", body={"expireAt": 1}
        )
        assert status == 401 and "sk-guess" not in body and "sk-never-logged" not in body
    # the raw test client (websockets) logs its own request line; the service's loggers
    # (aiohttp.*, avatar_nb.*, asyncio) must not show what it received
    service_lines = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets")]
    assert any(r.name.startswith("websockets") for r in caplog.records)  # DEBUG was really on
    text = "\n".join(service_lines) + repr(svc) + repr(svc.state)
    for secret in (token, forged, "sk-never-logged", "sk-guess"):
        assert secret not in text
