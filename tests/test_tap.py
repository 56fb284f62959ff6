"""The recording proxy: avatarkit, spatialreal and avatar_nb through it against the local
service; every message forwarded byte for byte and in the capture, in order, with no
secret; refusals and close codes passed on; a killed proxy's capture reads to its last
message; the capture format's checks; console requests in console.jsonl, with their
status, duration and error, and no credential anywhere in the out folder."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import avatarkit
import pytest
import spatialreal
import websockets

import avatar_nb as an
from avatar_nb import _pcm
from avatar_nb.audio import speech_like
from avatar_nb.config import LiveKitEgressConfig
from avatar_nb.server import LocalService
from avatar_nb.server.ingress import IngressSession
from avatar_nb.tap import TapProxy, read_capture, read_console
from avatar_nb.tap.fileformat import CaptureWriter

CHUNK = 1280  # 40 ms at 16 kHz
PCM = _pcm.to_s16le(speech_like(1.0, 16000, seed=3))


@pytest.fixture(autouse=True)
def _no_network(loopback_only):
    yield
    assert loopback_only == [], f"something tried to reach {loopback_only}"


class ServerWire:
    """What the local service received and sent, per connection, as bytes."""

    def __init__(self, monkeypatch) -> None:
        self.received: dict[str, list[bytes]] = {}
        self.sent: dict[str, list[bytes]] = {}
        on_message, send = IngressSession._on_message, IngressSession._send
        wire = self

        async def _on_message(self, data):
            wire.received.setdefault(self.connection_id, []).append(bytes(data))
            await on_message(self, data)

        async def _send(self, data):
            wire.sent.setdefault(self.connection_id, []).append(bytes(data))
            await send(self, data)

        monkeypatch.setattr(IngressSession, "_on_message", _on_message)
        monkeypatch.setattr(IngressSession, "_send", _send)


@pytest.fixture
def wire(monkeypatch):
    return ServerWire(monkeypatch)


@pytest.fixture
def upstream(monkeypatch):
    """A fast local service that remembers every session token it issued."""
    with LocalService(realtime=False) as svc:
        tokens: list[str] = []
        issue = svc.state.signer.issue

        def remember(*args, **kwargs):
            token = issue(*args, **kwargs)
            tokens.append(token)
            return token

        monkeypatch.setattr(svc.state.signer, "issue", remember)
        svc.tokens = tokens
        yield svc


def _expiry() -> datetime:
    return datetime.now(timezone.utc) + timedelta(minutes=5)


def _through(svc: LocalService, tap: TapProxy, **overrides) -> dict:
    return svc.session_kwargs(console_endpoint_url=tap.console_url, ingress_endpoint_url=tap.ingress_url, **overrides)


async def _official(module, kwargs: dict) -> list[tuple[bytes, bool]]:
    frames: list[tuple[bytes, bool]] = []
    done = asyncio.Event()

    def frame(data: bytes, last: bool) -> None:
        frames.append((data, last))
        if last:
            done.set()

    session = module.new_avatar_session(**kwargs, expire_at=_expiry(), transport_frames=frame)
    await session.init()
    await session.start()
    for i in range(0, len(PCM), CHUNK):
        await session.send_audio(PCM[i : i + CHUNK], end=i + CHUNK >= len(PCM))
    await asyncio.wait_for(done.wait(), 20)
    await session.close()
    return frames


async def _avatar_nb(kwargs: dict) -> list[tuple[bytes, bool]]:
    frames: list[tuple[bytes, bool]] = []
    session = an.new_avatar_session(**kwargs, transport_frames=lambda d, e: frames.append((d, e)))
    async with session:
        await session.stream(PCM, chunk_ms=40, pacing="fast")
        await session.wait_for_end(timeout=20)
    return frames


async def _closed(tap: TapProxy, n: int) -> None:
    """Wait (bounded) until the proxy has finished ``n`` captures."""
    for _ in range(200):
        done = [p for p in tap.captures if read_capture(p).complete]
        if len(done) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(tap.captures)} captures, not all finished")


def _secrets_absent(paths, secrets) -> None:
    for path in paths:
        data = Path(path).read_bytes()
        for secret in secrets:
            assert secret and secret.encode() not in data, f"{Path(path).name} holds a secret"


@pytest.mark.parametrize("client", ["avatarkit", "spatialreal", "avatar_nb"])
@pytest.mark.parametrize("use_query_auth", [False, True])
async def test_clients_through_the_proxy_byte_for_byte(tmp_path, upstream, wire, client, use_query_auth):
    async with TapProxy(upstream.console_url, upstream.ingress_url, tmp_path) as tap:
        kwargs = _through(upstream, tap, use_query_auth=use_query_auth)
        if client == "avatar_nb":
            frames = await _avatar_nb(kwargs)
        else:
            frames = await _official({"avatarkit": avatarkit, "spatialreal": spatialreal}[client], kwargs)
        await _closed(tap, 1)
    assert len(tap.captures) == 1
    capture = read_capture(tap.captures[0])
    assert capture.complete and capture.status == 101
    (connection_id,) = wire.received
    # every message, in order, byte for byte, both ways; binary kept binary
    assert [m.data for m in capture.client_messages()] == wire.received[connection_id]
    assert [m.data for m in capture.server_messages()] == wire.sent[connection_id]
    assert not any(m.text or m.redacted for m in capture.messages)
    for direction in ("client", "server"):  # each direction in the order it crossed the proxy
        times = [m.t for m in capture.messages if m.direction == direction]
        assert times == sorted(times)
    # what the client was handed is what the service sent
    animation = [d for d in wire.sent[connection_id][1:]]
    assert [d for d, _ in frames] == animation
    assert capture.closes and capture.closes[0]["by"] == "client" and capture.closes[0]["code"] == 1000
    assert capture.app_id == upstream.app_id and capture.avatar_id == upstream.avatar_id
    # no credential in the file: not the API key, not the session token
    assert upstream.tokens
    _secrets_absent(tap.captures, [upstream.api_key, *upstream.tokens])
    assert "sessionKey=%3Credacted%3E" in capture.upgrade["query"] or not use_query_auth


async def test_egress_secrets_are_not_written(tmp_path, upstream, wire):
    egress = upstream.egress
    lk = LiveKitEgressConfig(url=egress.livekit_url, api_token=egress.livekit_api_token,
                             room_name=egress.livekit_rooms[0])
    async with TapProxy(upstream.console_url, upstream.ingress_url, tmp_path) as tap:
        async with an.new_avatar_session(**_through(upstream, tap), livekit_egress=lk) as session:
            await session.stream(PCM, chunk_ms=40, pacing="fast")
            await session.wait_for_end(timeout=20)
        await _closed(tap, 1)
    capture = read_capture(tap.captures[0])
    first = capture.messages[0]
    assert first.redacted and first.direction == "client"
    (connection_id,) = wire.received
    assert wire.received[connection_id][0] != first.data  # the service got the credentials
    assert egress.livekit_api_token.encode() in wire.received[connection_id][0]
    assert [m.data for m in capture.client_messages()[1:]] == wire.received[connection_id][1:]
    _secrets_absent(tap.captures, [egress.livekit_api_token, upstream.api_key, *upstream.tokens])


async def test_refused_upgrade_is_passed_on_and_recorded(tmp_path, upstream):
    async with TapProxy(upstream.console_url, upstream.ingress_url, tmp_path) as tap:
        session = avatarkit.new_avatar_session(**_through(upstream, tap, avatar_id="nobody"), expire_at=_expiry())
        await session.init()
        with pytest.raises(Exception) as info:
            await session.start()
        assert info.value.code.value == "avatarNotFound"
        await _closed(tap, 1)
    capture = read_capture(tap.captures[0])
    assert capture.status == 404 and "Avatar not found" in capture.upgrade["body"]
    assert capture.messages == []
    timeline = an.load_capture(capture.path)  # a refused session: its Timeline holds the refusal
    assert timeline.n_keyframes == 0 and "404" in timeline.errors[0]


async def test_server_close_code_is_propagated(tmp_path, upstream):
    """The service's close code (4002 here: the session time limit) reaches the client."""
    with LocalService(realtime=False, session_time_limit=0.5) as svc:
        async with TapProxy(svc.console_url, svc.ingress_url, tmp_path) as tap:
            session = an.new_avatar_session(**_through(svc, tap))
            await session.init()
            await session.start()
            for _ in range(100):
                if session.closed:
                    break
                await asyncio.sleep(0.05)
            assert session.closed
            await session.close()
            await _closed(tap, 1)
    capture = read_capture(tap.captures[0])
    assert capture.closes[0]["by"] == "server" and capture.closes[0]["code"] == 4002
    timeline = an.load_capture(capture.path)
    assert any("4002" in e or "session time limit" in e for e in timeline.errors)


async def test_text_frames_and_close_codes_pass_unchanged(tmp_path):
    """A text message stays text, a binary stays binary, a client's close code reaches the service."""
    from aiohttp import WSMsgType, web

    seen: list[tuple[str, object]] = []

    async def echo(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            seen.append((msg.type.name, msg.data))
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data.upper())
            else:
                await ws.send_bytes(msg.data[::-1])
        seen.append(("close", ws.close_code))
        return ws

    app = web.Application()
    app.router.add_get("/v2/driveningress/websocket", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with TapProxy(f"http://127.0.0.1:{port}/v1/console", f"http://127.0.0.1:{port}/v2/driveningress",
                            tmp_path) as tap:
            url = tap.ingress_url.replace("http", "ws") + "/websocket?id=x"
            async with websockets.connect(url) as ws:
                await ws.send("hello")
                assert await ws.recv() == "HELLO"
                await ws.send(b"\x01\x02\x03")
                assert await ws.recv() == b"\x03\x02\x01"
                await ws.close(4321, "bye")
            await _closed(tap, 1)
    finally:
        await runner.cleanup()
    assert seen[:2] == [("TEXT", "hello"), ("BINARY", b"\x01\x02\x03")]
    assert seen[-1] == ("close", 4321)
    capture = read_capture(tap.captures[0])
    assert [(m.direction, m.data) for m in capture.messages] == [
        ("client", "hello"), ("server", "HELLO"), ("client", b"\x01\x02\x03"), ("server", b"\x03\x02\x01")
    ]
    assert capture.closes[0] == {**capture.closes[0], "by": "client", "code": 4321, "reason": "bye"}


async def test_upstream_down_is_a_502_and_a_capture(tmp_path):
    async with TapProxy("http://127.0.0.1:9/v1/console", "http://127.0.0.1:9/v2/driveningress", tmp_path,
                        io_timeout=2.0) as tap:
        session = an.new_avatar_session(api_key="k", app_id="a", avatar_id="v", console_endpoint_url=tap.console_url,
                                        ingress_endpoint_url=tap.ingress_url)
        with pytest.raises(an.SessionTokenError):
            await session.init()
        url = tap.ingress_url.replace("http", "ws") + "/websocket?id=v"
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            await websockets.connect(url)
        assert info.value.response.status_code == 502
    assert read_capture(tap.captures[0]).status == 502
    console = read_console(tmp_path)  # the token request, answered by the proxy itself
    assert len(console) >= 1 and set(console["status"]) == {502}
    assert all("upstream console unavailable" in e for e in console["error"])
    assert console["upstream"].str.startswith("http://127.0.0.1:9/").all()
    assert (console["seconds"] >= 0).all() and (console["response_bytes"] > 0).all()


# ----------------------------------------------------------------------------- console requests


def _nowhere_in(folder: Path, secrets) -> None:
    """No secret in the bytes of any file under ``folder`` (captures, console.jsonl, anything)."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret and secret.encode() not in data, f"{path.name} holds a secret"


async def test_token_requests_are_recorded_without_the_token(tmp_path, upstream):
    async with TapProxy(upstream.console_url, upstream.ingress_url, tmp_path) as tap:
        await _avatar_nb(_through(upstream, tap))
        # the seed's route, with a credential in the query as well
        async with aiohttp.ClientSession() as http:
            async with http.post(tap.console_url + "/session-tokens?apiKey=" + upstream.api_key + "&x=1",
                                 json={"expireAt": int(time.time()) + 300},
                                 headers={"X-Api-Key": upstream.api_key}) as answer:
                assert answer.status == 200 and (await answer.json())["sessionToken"] == upstream.tokens[-1]
        await _closed(tap, 1)
    assert len(upstream.tokens) == 2
    console = read_console(tmp_path)
    assert list(console["path"]) == ["/v1/auth/session-token", "/v1/console/session-tokens"]
    assert list(console["status"]) == [200, 200] and list(console["method"]) == ["POST", "POST"]
    assert console["seconds"].dtype == "float64" and (console["seconds"] > 0).all()
    assert (console["request_bytes"] > 0).all() and (console["response_bytes"] > 0).all()
    assert console["error"].isna().all()
    first, second = console["body"]
    assert first["session_token"] == "<redacted>" and isinstance(first["expireAt"], int)
    assert second["sessionToken"] == "<redacted>"
    assert console["query"][1] == "apiKey=%3Credacted%3E&x=1"
    assert ["X-Api-Key", "<redacted>"] in console["request_headers"][0]
    # the console request came before the session's upgrade, on the same clock
    assert console["t"][0] < read_capture(tap.captures[0]).header["t_upgrade"]
    _nowhere_in(tmp_path, [upstream.api_key, *upstream.tokens])


async def test_a_refused_token_request_is_recorded_with_its_status_and_message(tmp_path, upstream):
    wrong = "sk-wrong-" + "7" * 24
    async with TapProxy(upstream.console_url, upstream.ingress_url, tmp_path) as tap:
        kwargs = {**_through(upstream, tap), "api_key": wrong}
        session = an.new_avatar_session(**kwargs)
        with pytest.raises(an.SessionTokenError):
            await session.init()
        await session.close()
    assert tap.captures == [] and upstream.tokens == []
    console = read_console(tmp_path)
    assert len(console) == 1
    row = console.iloc[0]
    assert row["status"] == 401 and row["path"] == "/v1/auth/session-token"
    assert row["error"] == "the X-Api-Key header is wrong" and row["seconds"] > 0
    assert row["body"]["errors"][0]["code"] == "INVALID_API_KEY"
    _nowhere_in(tmp_path, [wrong, upstream.api_key])


async def test_console_answers_are_bounded_and_echoed_credentials_redacted(tmp_path):
    """An answer over 4 KB is not kept (its size is), an encoded one neither; a JSON answer
    echoing the request's key has it replaced whatever the field's name; an answer over
    max_message is a 502 with the reason."""
    import gzip

    from aiohttp import web

    key, token = "sk-echoed-" + "5" * 20, "tok-" + "9" * 40

    async def big(request):
        return web.json_response({"sessionToken": token, "padding": "x" * 8000})

    async def echo(request):
        return web.json_response({"note": f"your key {request.headers['X-Api-Key']} is fine", "n": 1})

    async def zipped(request):
        body = gzip.compress(b'{"session_token": "' + token.encode() + b'"}')
        return web.Response(body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})

    async def huge(request):
        return web.Response(body=b"y" * 300_000, content_type="application/json")

    app = web.Application()
    for name, handler in (("big", big), ("echo", echo), ("zipped", zipped), ("huge", huge)):
        app.router.add_get(f"/v1/console/{name}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with TapProxy(f"http://127.0.0.1:{port}/v1/console", f"http://127.0.0.1:{port}/v2/driveningress",
                            tmp_path, max_message=100_000) as tap:
            async with aiohttp.ClientSession(auto_decompress=False) as http:
                for name in ("big", "echo", "zipped", "huge"):
                    async with http.get(f"{tap.console_url}/{name}", headers={"X-Api-Key": key}) as answer:
                        await answer.read()
                        assert answer.status == (502 if name == "huge" else 200)
    finally:
        await runner.cleanup()
    console = read_console(tmp_path).set_index(read_console(tmp_path)["path"].str.rsplit("/", n=1).str[-1])
    assert console.loc["big", "body"] is None and console.loc["big", "response_bytes"] > 8000
    assert "more than 4096" in console.loc["big", "body_note"]
    assert console.loc["echo", "body"] == {"note": "<redacted>", "n": 1}
    assert console.loc["zipped", "body"] is None and "gzip" in console.loc["zipped", "body_note"]
    assert console.loc["huge", "status"] == 502 and "larger than max_message" in console.loc["huge", "error"]
    _nowhere_in(tmp_path, [key, token])


def test_captures_without_a_console_log_still_read(tmp_path):
    """A folder from before console requests were recorded: the captures read as they did,
    and its console table is empty, with its columns."""
    path = _write(tmp_path / "old.anbcap", 0)
    assert read_capture(path).complete and an.load_capture(tmp_path)[0].meta["avatar_id"] == "v"
    assert len(an.sweep(captures=tmp_path).runs) == 1
    console = read_console(tmp_path)
    assert console.empty and {"status", "seconds", "error", "body"} <= set(console.columns)


def test_console_log_cut_off_or_corrupt_names_the_line(tmp_path):
    log = tmp_path / "console.jsonl"
    log.write_bytes(b'{"method":"POST","status":200,"seconds":0.5}\n{"method":"GE')
    with pytest.raises(ValueError, match=r"console\.jsonl: line 2 .*cut off"):
        read_console(tmp_path)
    assert list(read_console(log, partial=True)["status"]) == [200]
    log.write_bytes(b'{"status":200}\nnot json\n')
    with pytest.raises(ValueError, match=r"console\.jsonl: line 2 .*corrupt"):
        read_console(log)


# ----------------------------------------------------------------------------- a killed proxy

_PROXY_SCRIPT = """
import sys
from avatar_nb.tap.proxy import run_tap
def ready(proxy):
    print(proxy.port, flush=True)
run_tap("127.0.0.1:0", sys.argv[1], sys.argv[2], sys.argv[3], ready=ready)
"""


async def test_killed_proxy_capture_reads_to_its_last_message(tmp_path):
    with LocalService(realtime=True, latency_ms=20.0) as svc:
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, read in a thread
            [sys.executable, "-c", _PROXY_SCRIPT, svc.console_url, svc.ingress_url, str(tmp_path)],
            stdout=subprocess.PIPE, text=True, env={**os.environ},
        )
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            port = int(line)
            base = f"http://127.0.0.1:{port}"
            received: list[bytes] = []
            session = an.new_avatar_session(
                **svc.session_kwargs(console_endpoint_url=base + "/v1/console",
                                     ingress_endpoint_url=base + "/v2/driveningress"),
                transport_frames=lambda d, e: received.append(d),
            )
            await session.init()
            await session.start()
            sent = 0
            for i in range(0, len(PCM), CHUNK):
                await session.send_audio(PCM[i : i + CHUNK])
                sent += 1
                await asyncio.sleep(0.04)
                if len(received) >= 5:
                    break
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            await session.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    (path,) = tmp_path.glob("*.anbcap")
    capture = read_capture(path)
    assert not capture.complete
    # everything the client got, and every chunk it sent before the kill, is there
    assert [m.data for m in capture.server_messages()[1:]][: len(received)] == received
    assert len(capture.client_messages()) >= 1 + sent - 1
    timeline = an.load_capture(path)
    assert timeline.n_keyframes >= len(received)
    assert set(timeline.requests["status"]) <= {"failed", "open", "complete"}


# ----------------------------------------------------------------------------- the file format


def _write(path: Path, n: int = 3, *, end: bool = True) -> Path:
    writer = CaptureWriter(path)
    writer.header({"app_id": "a", "avatar_id": "v", "upgrade": {"status": 101}})
    for i in range(n):
        writer.message(i % 2, time.monotonic(), bytes([i]) * (10 + i))
    if end:
        writer.end()
    else:
        writer.close()
    return path


def test_capture_round_trip(tmp_path):
    capture = read_capture(_write(tmp_path / "c.anbcap"))
    assert capture.complete and [len(m.data) for m in capture.messages] == [10, 11, 12]
    assert [m.direction for m in capture.messages] == ["client", "server", "client"]


def test_truncated_capture_names_file_and_message(tmp_path):
    path = _write(tmp_path / "c.anbcap", end=False)
    data = path.read_bytes()
    cut = tmp_path / "cut.anbcap"
    cut.write_bytes(data[: len(data) - 5])  # inside the third message
    with pytest.raises(ValueError, match=r"cut\.anbcap: record 3 \(message index 2\).*truncated"):
        read_capture(cut)
    with pytest.raises(ValueError, match=r"cut\.anbcap.*message index 2"):
        an.load_capture(cut)
    partial = read_capture(cut, partial=True)
    assert partial.truncated and len(partial.messages) == 2 and not partial.complete


def test_corrupt_capture_names_file_and_message(tmp_path):
    path = _write(tmp_path / "c.anbcap")
    data = bytearray(path.read_bytes())
    data[-50] ^= 0xFF  # a byte inside the last records
    bad = tmp_path / "bad.anbcap"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"bad\.anbcap: record \d \(message index \d\): checksum mismatch"):
        read_capture(bad)


def test_other_version_is_refused(tmp_path):
    path = _write(tmp_path / "c.anbcap")
    data = bytearray(path.read_bytes())
    data[6] = 9
    other = tmp_path / "v9.anbcap"
    other.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"v9\.anbcap: capture format version 9.*version 1"):
        an.load_capture(other)
    (tmp_path / "junk.anbcap").write_bytes(b"not a capture")
    with pytest.raises(ValueError, match="junk.anbcap: not an avatar_nb capture"):
        read_capture(tmp_path / "junk.anbcap")


def test_cli_tap_refuses_bad_arguments(capsys):
    from avatar_nb.cli import main

    code = main(["tap", "--listen", "nowhere", "--upstream-console", "http://127.0.0.1:1/v1/console",
                 "--upstream-ingress", "http://127.0.0.1:1/v2/driveningress", "--out", "x"])
    assert code == 2 and "HOST:PORT" in capsys.readouterr().err
    code = main(["tap", "--listen", "127.0.0.1:0", "--upstream-console", "ftp://x",
                 "--upstream-ingress", "http://127.0.0.1:1/v2/driveningress", "--out", "x"])
    assert code == 2 and "console" in capsys.readouterr().err


def test_a_capture_without_messages_is_an_empty_timeline(tmp_path):
    path = _write(tmp_path / "empty.anbcap", 0, end=False)
    timeline = an.load_capture(path)
    assert timeline.n_keyframes == 0 and timeline.errors == [] and timeline.meta["avatar_id"] == "v"


# ----------------------------------------------------------------------------- Ctrl-C on avatar-nb tap

_PATIENCE = 120.0  # a bound for a broken stop to fail the test, not a timing expectation


def _start_tap(console: str, ingress: str, out: Path) -> tuple[subprocess.Popen, str]:
    """``avatar-nb tap`` in a process group of its own (SIGINT to it is a terminal's Ctrl-C);
    returns it and its base URL once its banner says it listens (bounded poll loop)."""
    import re
    import selectors

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AVATAR_NB_")},
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parent.parent / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "avatar_nb", "tap", "--listen", "127.0.0.1:0",
         "--upstream-console", console, "--upstream-ingress", ingress, "--out", str(out),
         # a stop that waited on a peer would wait this long: past _PATIENCE, the test fails
         "--io-timeout", "3600", "--idle-timeout", "3600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True,
    )
    seen = b""
    deadline = time.monotonic() + _PATIENCE
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while b"press Ctrl-C to stop" not in seen:
            assert time.monotonic() < deadline, seen
            if selector.select(timeout=1.0):
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, f"the tap ended: {seen!r} {proc.stderr.read()!r}"
                seen += chunk
    return proc, re.search(rb"listening on (http://127\.0\.0\.1:\d+)", seen).group(1).decode()


async def _ctrl_c(proc: subprocess.Popen, sig: int = signal.SIGINT) -> str:
    """Ctrl-C (or ``sig``: SIGTERM is a ``kill`` or a container's stop) to the tap; its
    stderr once it exited (bounded)."""
    os.killpg(proc.pid, sig)
    _, err = await asyncio.to_thread(proc.communicate, timeout=_PATIENCE)
    return err.decode()


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _one_stop_line(proc: subprocess.Popen, err: str) -> str:
    # Ctrl-C is how the tap ends, as for serve: exit 0, one line saying what it left
    assert proc.returncode == 0, (proc.returncode, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("avatar-nb tap: stopped; "), err
    return lines[0]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
async def test_cli_tap_ctrl_c_while_recording_finishes_the_capture_and_says_so(tmp_path, sig):
    """Ctrl-C on ``avatar-nb tap`` while a session is open (or SIGTERM, as ``kill`` or a
    container's stop sends it): the tap stops without waiting on a peer, the session's
    capture is finished whole (END record) with every message of the session, and the stop
    is one line on stderr naming it, no traceback."""
    out = tmp_path / "captures"
    with LocalService(realtime=False) as svc:
        proc, base = _start_tap(svc.console_url, svc.ingress_url, out)
        try:
            received: list[bytes] = []
            session = an.new_avatar_session(
                **svc.session_kwargs(console_endpoint_url=base + "/v1/console",
                                     ingress_endpoint_url=base + "/v2/driveningress"),
                transport_frames=lambda d, e: received.append(d),
            )
            async with session:
                await session.stream(PCM, chunk_ms=40, pacing="fast")
                await session.wait_for_end(timeout=_PATIENCE)
                # the session is open and idle: the tap is recording it when Ctrl-C comes
                err = await _ctrl_c(proc, sig)
            tl = session.timeline
        finally:
            _kill(proc)
    line = _one_stop_line(proc, err)
    (path,) = out.glob("*.anbcap")
    assert line == (
        f"avatar-nb tap: stopped; 1 capture in {out} (1 was recording and ended with the stop, "
        f"finished whole: {path.name})"
    )
    capture = read_capture(path)  # whole: no cut-off record, no checksum mismatch
    assert capture.complete and not capture.truncated and capture.status == 101
    assert [n["note"] for n in capture.notes] == ["the proxy stopped"]
    # every message the client received, and every chunk it sent (after its configure)
    assert [m.data for m in capture.server_messages()[1:]] == received
    assert len(capture.client_messages()) == 1 + len(tl.chunk_sent_at)
    replayed = an.load_capture(path)
    assert replayed.n_keyframes == tl.n_keyframes == 25
    assert list(replayed.requests["status"]) == ["complete"]


async def test_cli_tap_ctrl_c_during_an_upgrade_leaves_a_readable_capture(tmp_path):
    """Ctrl-C while the service has not answered a session's upgrade yet: its capture still
    starts with its header (the upgrade, unanswered) and ends whole, so the folder reads."""
    out = tmp_path / "captures"
    asked = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def silent_service(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # takes the upgrade request and never answers it
        await reader.readuntil(b"\r\n\r\n")
        asked.set()

    server = await asyncio.start_server(silent_service, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proc, base = _start_tap(f"http://127.0.0.1:{port}/v1/console", f"http://127.0.0.1:{port}/v2/driveningress", out)
    client = asyncio.ensure_future(
        websockets.connect(base.replace("http", "ws") + "/v2/driveningress/websocket?id=someone", open_timeout=None)
    )
    try:
        await asyncio.wait_for(asked.wait(), _PATIENCE)  # the tap waits for the service's answer
        err = await _ctrl_c(proc)
    finally:
        _kill(proc)
        client.cancel()
        with contextlib.suppress(BaseException):
            await client
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    line = _one_stop_line(proc, err)
    (path,) = out.glob("*.anbcap")
    assert line.endswith(f"(1 was recording and ended with the stop, finished whole: {path.name})")
    capture = read_capture(path)
    assert capture.complete and capture.status is None and capture.avatar_id == "someone"
    assert [n["note"] for n in capture.notes] == ["the proxy stopped during the upgrade"]
    timeline = an.load_capture(out)[0]
    assert timeline.n_keyframes == 0 and timeline.meta["avatar_id"] == "someone"
