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


# ----------------------------------------------------------------------------- a batch's bars


def test_a_batch_draws_a_line_per_running_clip_from_its_timeline_and_closes_it(monkeypatch):
    monkeypatch.setattr(progress, "POLLS_PER_SECOND", 1e-6)  # the thread waits: this test polls
    out = io.StringIO()
    a, b = Timeline(25, sample_rate=16000), Timeline(25, sample_rate=16000)
    with progress.BatchProgress(2, file=out, delay=0.0, label_width=4) as bars:
        with bars.track(a, 2.0, "a"), bars.track(b, 1.0, "bb"):
            for tl in (a, b):
                tl.add_audio_chunk("r", 0.0, 16000)
                tl.add_animation(np.zeros((25, 30), np.float32), req_id="r", arrival=0.1, end=False)
            bars.poll()  # what the thread does, made here at a known moment
            assert bars.most_lines == 2
            lines = {e.name: e.bar for e in bars._running}
            assert (lines["a"].n, lines["a"].total, lines["a"].pos) == (1.0, 2.0, -1)  # tqdm's fixed position 1
            assert (lines["bb"].n, lines["bb"].total, lines["bb"].pos) == (1.0, 1.0, -2)
            assert lines["a"].postfix == "sent 1.0 s"
            assert "a:      0%" in out.getvalue() and "bb:     0%" in out.getvalue()  # names padded alike
        bars.run_done(1.0)
        bars.run_done(2.0)
    assert sorted(bars.finished) == [("a", 1.0, 2.0), ("bb", 1.0, 1.0)]
    assert "2.0/2.0 s of audio" in out.getvalue()  # a clip that streamed to its end ends full
    assert "2/2" in out.getvalue() and f"{3.0 / 3600:.4f} h audio" in out.getvalue()
    assert bars._running == [] and bars.bar.disable  # every bar closed


def test_a_failed_clip_of_a_batch_closes_its_line_where_it_was():
    out = io.StringIO()
    tl = Timeline(25, sample_rate=16000)
    with progress.BatchProgress(1, file=out, delay=0.0) as bars:
        with pytest.raises(RuntimeError), bars.track(tl, 4.0, "x"):
            tl.add_animation(np.zeros((25, 30), np.float32), req_id="r", arrival=0.1, end=False)
            raise RuntimeError("dropped")
    assert bars.finished == [("x", 1.0, 4.0)] and "4.0/4.0" not in out.getvalue()


def test_a_disabled_batch_draws_nothing_and_gives_its_clips_no_bar():
    out = io.StringIO()
    with progress.BatchProgress(3, file=out, enabled=False) as bars, bars.clip("a"):
        assert progress.batch_clip() is None
    assert bars.bar is None and bars._thread is None and out.getvalue() == ""


@pytest.fixture
def boards(monkeypatch):
    """Every BatchProgress a command makes (run_batch looks the class up when it runs)."""
    made: list[progress.BatchProgress] = []

    class Kept(progress.BatchProgress):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(progress, "BatchProgress", Kept)
    return made


def _folder(tmp_path, lengths: dict[str, float]):
    from avatar_nb import write_wav

    folder = tmp_path / "clips"
    folder.mkdir()
    for i, (name, seconds) in enumerate(lengths.items()):
        write_wav(folder / f"{name}.wav", speech_like(seconds, 16000, seed=i), 16000)
    return folder


LENGTHS = {"one": 1.0, "two": 0.6, "three": 0.8}


def test_a_run_of_many_clips_shows_each_running_clip_to_its_full_length(tmp_path, boards, show_at_once,
                                                                        capsys, monkeypatch):
    """With --concurrency 2 at most two clip lines are open at once, every clip's line counts
    its seconds animated up to its length and closes; every redraw while the sessions run
    comes from the polling thread, the last once they have ended."""
    from avatar_nb.cli import main

    monkeypatch.setattr(progress, "POLLS_PER_SECOND", 20.0)
    drawn_by: list[str] = []
    real_poll = progress.BatchProgress.poll

    def poll(self: progress.BatchProgress) -> None:
        drawn_by.append(threading.current_thread().name)
        real_poll(self)

    monkeypatch.setattr(progress.BatchProgress, "poll", poll)
    folder = _folder(tmp_path, LENGTHS)
    assert main(["run", str(folder), "--out", str(tmp_path / "o"), "--concurrency", "2", "--no-plot"]) == 0
    [bars] = boards
    assert sorted(bars.finished) == sorted((name, pytest.approx(s), pytest.approx(s)) for name, s in LENGTHS.items())
    assert 1 <= bars.most_lines <= 2
    assert bars._running == [] and bars.bar.disable and bars._thread is not None and not bars._thread.is_alive()
    assert set(drawn_by[:-1]) <= {"avatar_nb-progress"} and drawn_by[-1] == threading.current_thread().name
    err = capsys.readouterr().err
    for name, seconds in LENGTHS.items():
        assert f"{name}:" in err and f"{seconds:.1f}/{seconds:.1f} s of audio" in err
    assert "3/3" in err and "clip" in err
    assert "animating" not in err  # the clips are lines of the batch's bars, not bars of their own
    assert progress.batch_clip() is None


@pytest.mark.parametrize("flag", ["--quiet", "--json"])
def test_a_quiet_or_json_run_draws_no_bar(tmp_path, boards, show_at_once, capsys, flag):
    from avatar_nb.cli import main

    folder = _folder(tmp_path, LENGTHS)
    assert main(["run", str(folder), "--out", str(tmp_path / "o"), "--concurrency", "2", "--fast", "--no-plot",
                 flag]) == 0
    captured = capsys.readouterr()
    assert "%|" not in captured.err and "s of audio" not in captured.err and "clip" not in captured.err
    assert "%|" not in captured.out
    [bars] = boards
    assert bars.bar is None and bars._thread is None and bars.finished == []


def test_a_run_of_one_file_keeps_its_bar_of_the_clip(tmp_path, boards, show_at_once, capsys):
    from avatar_nb.cli import main

    folder = _folder(tmp_path, {"only": 1.0})
    assert main(["run", str(folder / "only.wav"), "--out", str(tmp_path / "o"), "--fast", "--no-plot"]) == 0
    err = capsys.readouterr().err
    assert "animating:" in err and "/1.0 s of audio" in err and "1/1" in err  # its own bar, as before
    [bars] = boards
    assert not bars.clip_bars and bars.finished == []
