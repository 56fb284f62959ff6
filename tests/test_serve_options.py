"""``avatar-nb serve`` exposes LocalService's settings: one line of help each, every value
checked by LocalService itself (a bad one is one line naming the flag and what is
accepted, exit code 2), and a setting given on the command line reaches the service a
subprocess runs (its banner, and the latency a client measures against it)."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

from avatar_nb import _pcm, new_avatar_session
from avatar_nb import cli as cli_module
from avatar_nb.audio import speech_like
from avatar_nb.server import LocalService

from .test_cli import cli
from .test_serve_defaults import pool_pattern

SETTING_FLAGS = [flag for flag, *_ in cli_module._SERVE_SETTINGS]


def test_help_has_one_line_per_setting():
    out = cli("serve", "--help")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for flag in [*SETTING_FLAGS, "--playout", "--egress", "--service-speed", "--fps", "--expression-dims"]:
        own = [line for line in lines if line.strip().startswith(flag + " ") or line.strip() == flag]
        assert len(own) == 1, (flag, own)
    for flag, key, metavar, default, _ in cli_module._SERVE_SETTINGS:
        line = next(line for line in lines if line.strip().startswith(f"{flag} {metavar} "))
        assert line.rstrip().endswith(f"(default {default})"), line  # the help is on the flag's line


def test_the_defaults_shown_are_local_services():
    params = inspect.signature(LocalService.__init__).parameters
    for flag, key, _, shown, _ in cli_module._SERVE_SETTINGS:
        default = params[key].default
        assert shown == ("none" if default is None else f"{default:g}"), (flag, shown, default)
    assert params["egress"].default is True and params["playout"].default is False


@pytest.mark.parametrize(
    "args,message",
    [
        (["--fps", "0"], "--fps must be a number > 0, got 0"),
        (["--expression-dims", "2.5"], "--expression-dims must be an int >= 0, got 2.5"),
        (["--latency-ms", "-5"], "--latency-ms must be a number >= 0, got -5"),
        (["--latency-ms", "soon"], "--latency-ms must be a number >= 0, got 'soon'"),
        (["--jitter-ms", "nan"], "--jitter-ms must be a number >= 0, got nan"),
        (["--av-offset-ms", "2000"], "--av-offset-ms must be a number of milliseconds in -1000..1000, got 2000"),
        (["--net-delay-ms", "-1"], "--net-delay-ms must be a number >= 0, got -1"),
        (["--bandwidth-bps", "0"], "--bandwidth-bps must be a number > 0 or none, got 0"),
        (["--idle-timeout", "0"], "--idle-timeout must be a number > 0 or none, got 0"),
        (["--session-time-limit", "-3"], "--session-time-limit must be a number > 0 or none, got -3"),
        (["--max-sessions", "2.5"], "--max-sessions must be an int >= 1 or none, got 2.5"),
        (["--credits-seconds", "-1"], "--credits-seconds must be a number >= 0 or none, got -1"),
        (["--pause-limit", "none"], "--pause-limit must be a number > 0, got none"),
        (["--egress", "maybe"], "--egress must be on or off, got 'maybe'"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_flag_and_exit_2(args, message):
    out = cli("serve", "--port", "0", *args, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr == f"avatar-nb: error: {message}\n"
    assert out.stdout == ""  # refused before anything listens


def test_settings_reach_the_service_and_egress_secrets_are_printed_once():
    proc, info, lines = pool_pattern.start_serve(
        "--playout", "--pause-limit", "12", "--max-sessions", "3", "--idle-timeout", "none",
        "--net-delay-ms", "15", "--bandwidth-bps", "2e6", "--credits-seconds", "900",
        "--session-time-limit", "120", "--av-offset-ms", "-40", "--jitter-ms", "5",
    )
    try:
        text = "\n".join(lines)
        assert info["idle_timeout"] == "none" and info["playout"] == "on"
        assert "pause_limit 12 s" in text
        assert "jitter 5 ms, av_offset -40 ms, net_delay 15 ms, bandwidth 2e+06 bit/s" in text
        assert "session_time_limit 120 s, max_sessions 3, credits_seconds 900 s" in text
        secrets = re.findall(r"(?:api_token|api_secret|token)=(\S+)", text)
        assert len(secrets) == 3
        for secret in secrets:
            assert text.count(secret) == 1  # the one printout; nothing else repeats it
    finally:
        pool_pattern.stop_serve(proc)


def test_egress_off():
    proc, _, lines = pool_pattern.start_serve("--egress", "off")
    try:
        assert "  egress = off (egress sessions get code 14)" in lines
    finally:
        pool_pattern.stop_serve(proc)


async def _median_latency(*serve_args: str) -> float:
    proc, info, _ = pool_pattern.start_serve(*serve_args)
    try:
        session = new_avatar_session(**{k: info[k] for k in pool_pattern.KEYS})
        async with session:
            pcm = _pcm.to_s16le(speech_like(2.0, 16000, seed=3))
            req = await session.stream(pcm, pacing="capture")
            await session.wait_for_end(req, timeout=60)
        return float(np.median(session.timeline.latency))
    finally:
        pool_pattern.stop_serve(proc)


async def test_latency_ms_is_the_latency_a_client_measures():
    """Generous bounds, as ratios: the client measures the service's latency plus the
    loopback and its own scheduling, on a machine others share."""
    at_80 = await _median_latency("--latency-ms", "80")
    at_240 = await _median_latency("--latency-ms", "240")
    print(f"median latency: {at_80 * 1000:.1f} ms at --latency-ms 80, {at_240 * 1000:.1f} ms at 240")
    assert 0.75 <= at_80 / 0.080 <= 3.0, at_80
    assert 0.75 <= at_240 / 0.240 <= 2.0, at_240
    assert at_240 > at_80
