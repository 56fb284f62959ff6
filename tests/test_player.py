"""AudioPlayer without a browser: a short clip travels whole as before; an hour travels a
window at a time (the window messages' answers against the run's audio, bad messages
ignored, the synced state bounded) and ``time``/``seek`` stay seconds of the whole run."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from ipywidgets.widgets.widget import _remove_buffers

from avatar_nb import widgets
from avatar_nb.audio import wav_bytes
from avatar_nb.timeline_pyramid import synthetic_timeline
from avatar_nb.widgets.player import FULL_AUDIO_SECONDS, WINDOW_SECONDS, AudioPlayer

from .test_plots import synthetic

RATE = 16000


@pytest.fixture(scope="module")
def hour():
    return synthetic_timeline(3600.0, n_expression=4)


@pytest.fixture(scope="module")
def view(hour):
    return widgets.TimelineView(hour)


def synced_bytes(widget) -> int:
    """The size of a widget's synced state: its JSON plus its binary buffers."""
    state, _, buffers = _remove_buffers(widget.get_state())
    return len(json.dumps(state)) + sum(len(b) for b in buffers)


def test_a_short_clip_travels_whole_as_a_data_url():
    tl = synthetic()
    player = widgets.TimelineView(tl).player
    assert player.src == "data:audio/wav;base64," + base64.b64encode(wav_bytes(tl.audio, RATE)).decode("ascii")
    assert player.window_seconds == 0 and player.duration == pytest.approx(tl.audio.shape[0] / RATE)
    # five minutes is still whole; it asks for no windows
    five = AudioPlayer(np.zeros(int(FULL_AUDIO_SECONDS * RATE), np.int16), RATE)
    assert five.window_seconds == 0
    assert five.handle({"type": "window", "req": 1, "t": 0.0, "seconds": 10.0}) == (None, [])
    with pytest.raises(ValueError, match="whole audio"):
        five.window(0.0, 1.0)


def test_an_hour_s_player_carries_one_window_and_stays_under_10_mb(hour, view):
    player = view.player
    assert player.window_seconds == WINDOW_SECONDS and player.duration == pytest.approx(3600.0)
    assert player._samples is hour.audio  # the run's audio, not a copy
    first = wav_bytes(hour.audio[: int(WINDOW_SECONDS * RATE)], RATE)
    assert player.src == "data:audio/wav;base64," + base64.b64encode(first).decode("ascii")
    assert synced_bytes(player) < 10e6  # the whole hour as a data URL was 154 MB


@pytest.mark.parametrize("t, seconds", [(1234.5678, 60.0), (0.0, 10.0), (3599.5, 60.0), (1800.0, 1e9)])
def test_a_window_request_is_answered_with_the_run_s_samples(hour, view, t, seconds):
    reply, buffers = view.player.handle({"type": "window", "req": 7, "t": t, "seconds": seconds})
    i0 = int(t * RATE)
    expected = hour.audio[i0 : i0 + int(min(seconds, WINDOW_SECONDS) * RATE)]
    assert reply == {"type": "window", "req": 7, "start": i0 / RATE, "sample_rate": RATE, "n": expected.shape[0]}
    assert len(buffers) == 1 and isinstance(buffers[0], bytes)
    np.testing.assert_array_equal(np.frombuffer(buffers[0], dtype="<i2"), expected)
    assert len(buffers[0]) <= WINDOW_SECONDS * RATE * 2  # bounded whatever was asked


@pytest.mark.parametrize("content", [
    None, "window", [1, 2], {}, {"type": "tiles", "t": 1.0, "seconds": 1.0},
    {"type": "window", "seconds": 10.0}, {"type": "window", "t": 1.0},
    {"type": "window", "t": "10", "seconds": 10.0}, {"type": "window", "t": [10], "seconds": 10.0},
    {"type": "window", "t": True, "seconds": 10.0}, {"type": "window", "t": 1.0, "seconds": None},
    {"type": "window", "t": float("nan"), "seconds": 10.0}, {"type": "window", "t": 1.0, "seconds": float("inf")},
    {"type": "window", "t": -0.5, "seconds": 10.0}, {"type": "window", "t": 3600.0, "seconds": 10.0},
    {"type": "window", "t": 1e308, "seconds": 10.0}, {"type": "window", "t": 1.0, "seconds": 0},
    {"type": "window", "t": 1.0, "seconds": -5.0},
])
def test_bad_messages_are_ignored(view, content, monkeypatch):
    player = view.player
    assert player.handle(content) == (None, [])
    sent = []
    monkeypatch.setattr(player, "send", lambda *a, **k: sent.append(a))
    player._on_browser_msg(player, content, [b"\x00" * 8])
    assert sent == []


def test_a_request_id_that_is_not_a_number_is_not_echoed(view, monkeypatch):
    sent = []
    monkeypatch.setattr(view.player, "send", lambda content, buffers: sent.append((content, buffers)))
    view.player._on_browser_msg(view.player, {"type": "window", "req": {"x": 1}, "t": 5.0, "seconds": 1.0}, [])
    ((content, buffers),) = sent
    assert content["req"] is None and content["n"] == RATE and len(buffers[0]) == 2 * RATE


def test_time_and_seek_are_seconds_of_the_whole_run(hour, view):
    # the browser reports the run's position (its window's start plus the position in it)
    view.player.time = 1800.0
    assert view.index == int(np.searchsorted(hour.media_time, 1800.0, side="right")) - 1
    assert hour.media_time[view.index] == pytest.approx(1800.0, abs=1 / hour.fps)
    # scrubbing seeks the player to the keyframe's time in the run, past any window
    view.slider.value = 75000
    assert view.player.seek == pytest.approx(float(hour.media_time[75000])) and view.player.seek > 2900
    # and the window asked for there starts there, in the run's seconds
    reply, _ = view.player.handle({"type": "window", "req": 1, "t": view.player.seek, "seconds": 60})
    assert reply["start"] == pytest.approx(view.player.seek, abs=1 / RATE)


def test_s16le_bytes_are_samples_too():
    pcm = (np.arange(10 * 60 * RATE) % 1000).astype("<i2")
    player = AudioPlayer(pcm.tobytes(), RATE)
    assert player.duration == pytest.approx(600.0) and player.window_seconds == WINDOW_SECONDS
    _, (buffer,) = player.handle({"type": "window", "req": 1, "t": 300.0, "seconds": 2.0})
    np.testing.assert_array_equal(np.frombuffer(buffer, "<i2"), pcm[300 * RATE : 302 * RATE])
    short = AudioPlayer(pcm[:RATE].tobytes(), RATE)
    assert short.src == "data:audio/wav;base64," + base64.b64encode(wav_bytes(pcm[:RATE], RATE)).decode("ascii")
