"""Progress of long single calls: a tqdm bar for animate()/animate_sync() and the CLI's demo,
off with progress=False, drawn by a thread of its own and never by the session's event loop."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest

from avatar_nb import Timeline, animate, animate_sync, progress
from avatar_nb.audio import speech_like


@pytest.fixture
def show_at_once(monkeypatch):
    """Bars appear at once (a test clip is shorter than the couple of seconds a call runs first)."""
    monkeypatch.setattr(progress, "SHOW_AFTER_SECONDS", 0.0)


def test_the_bar_counts_seconds_animated_from_the_timeline_in_its_own_thread():
    tl = Timeline(25, sample_rate=16000)
    out = io.StringIO()
    with progress.StreamProgress(tl, 2.0, file=out, delay=0.0) as bar:
        polled = threading.Event()
        real_poll = bar.poll

        def poll() -> None:
            real_poll()
            polled.set()

        bar.poll = poll  # type: ignore[method-assign]
        for k in range(25):  # the first second: sent and animated
            tl.add_audio_chunk("r", k * 0.04, 640)
            tl.add_animation(np.zeros((1, 30), np.float32), req_id="r", arrival=k * 0.04 + 0.08, end=False)
        assert polled.wait(10.0)
        assert bar._thread is not None and bar._thread.name == "avatar_nb-progress"
    text = out.getvalue()
    assert "animating" in text and "s of audio" in text and "sent 1.0 s" in text
    assert "100%" in text and "2.0/2.0 s of audio" in text  # a call that ended normally ends full


def test_a_disabled_bar_draws_nothing_and_starts_no_thread():
    out = io.StringIO()
    with progress.StreamProgress(Timeline(), 5.0, file=out, delay=0.0, enabled=False) as bar:
        assert bar.bar is None and bar._thread is None
    assert out.getvalue() == ""


def test_a_failed_call_leaves_the_bar_where_it_was():
    tl = Timeline(25, sample_rate=16000)
    out = io.StringIO()
    with pytest.raises(RuntimeError), progress.StreamProgress(tl, 4.0, file=out, delay=0.0):
        tl.add_audio_chunk("r", 0.0, 16000)
        tl.add_animation(np.zeros((25, 30), np.float32), req_id="r", arrival=0.1, end=False)
        raise RuntimeError("dropped")
    assert "1.0/4.0 s of audio" in out.getvalue() and "100%" not in out.getvalue()


def test_animate_sync_shows_a_bar_and_progress_false_none(service, show_at_once, capsys):
    tl = animate_sync(speech_like(1.0), 16000, service=service, pacing="fast")
    err = capsys.readouterr().err
    assert tl.complete and "animating: 100%" in err and "1.0/1.0 s of audio" in err
    assert err.count("animating: 100%") == 1  # one bar, not one more from stream_clip
    animate_sync(speech_like(1.0), 16000, service=service, pacing="fast", progress=False)
    assert capsys.readouterr().err == ""
    with progress.streaming_bars():  # what the command line asks for its clips: progress=False still wins
        animate_sync(speech_like(1.0), 16000, service=service, pacing="fast", progress=False)
    assert capsys.readouterr().err == ""


def test_short_calls_print_nothing(service, capsys, monkeypatch):
    """The bar waits SHOW_AFTER_SECONDS before it shows: a call done sooner leaves no trace."""
    monkeypatch.setattr(progress, "SHOW_AFTER_SECONDS", 3600.0)
    animate_sync(speech_like(0.5), 16000, service=service, pacing="fast")
    assert capsys.readouterr().err == ""


async def test_the_session_loop_never_draws_while_the_session_runs(realtime_service, show_at_once, monkeypatch):
    """Every redraw while the session streams comes from the polling thread; the event loop's
    thread draws once, after the session ended."""
    monkeypatch.setattr(progress, "POLLS_PER_SECOND", 20.0)
    loop_thread = threading.current_thread()
    drawn_by: list[str] = []
    real_poll = progress.StreamProgress.poll

    def poll(self: progress.StreamProgress) -> None:
        drawn_by.append(threading.current_thread().name)
        real_poll(self)

    monkeypatch.setattr(progress.StreamProgress, "poll", poll)
    tl = await animate(speech_like(1.0), 16000, service=realtime_service, pacing="capture")
    assert tl.complete
    assert len(drawn_by) >= 3
    assert set(drawn_by[:-1]) == {"avatar_nb-progress"}
    assert drawn_by[-1] == loop_thread.name  # the final redraw, once the session has closed


def test_the_demo_shows_the_clip_streaming(tmp_path, show_at_once, capsys):
    from avatar_nb.cli import main

    assert main(["demo", "--out", str(tmp_path), "--seconds", "1", "--pacing", "fast"]) == 0
    captured = capsys.readouterr()
    assert "animating" in captured.err and "s of audio" in captured.err
    assert "load the timeline" in captured.out
    assert not progress.bars_wanted()  # the command's bars ended with it
