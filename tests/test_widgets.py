"""Widgets instantiated and driven from Python: trait changes update the views."""

from __future__ import annotations

import asyncio
import base64
import io
import wave

import pytest

from avatar_nb import LocalService, plots, speech_like, widgets
from avatar_nb.timeline import Timeline
from avatar_nb.widgets._util import Throttle

from .test_plots import synthetic


def test_waveform_view_window_zoom_and_playhead():
    tl = synthetic()
    view = widgets.WaveformView(tl)
    assert view.window == (0.0, pytest.approx(3.2))
    first = view.image.value
    assert first[:4] == b"\x89PNG"
    view.window = (1.0, 1.5)
    assert view.slider.value == (1.0, 1.5)  # the slider follows
    assert view.image.value != first
    assert view._ax.get_xlim() == pytest.approx((1.0, 1.5), abs=1e-3)
    view.zoom(0.5)
    assert view.window == pytest.approx((1.125, 1.375))
    view.zoom(100)
    assert view.window == pytest.approx((0.0, 3.2))
    renders = view.renders
    view.playhead = 2.0
    assert view.renders == renders + 1
    assert view._line.get_xdata()[0] == 2.0
    view.window = (5.0, 2.0)  # clipped into the audio, start <= end
    assert 0 <= view.window[0] <= view.window[1] <= 3.2


def test_timeline_view_scrubbing_updates_face_readout_playhead_and_player():
    tl = synthetic()
    view = widgets.TimelineView(tl)
    face0 = view.face.value
    view.slider.value = 25
    assert view.index == 25
    assert view.face.value != face0 and view.face.value == plots.face_svg(tl.keyframes[25])
    assert "keyframe 25" in view.readout.value and "media time 1.00 s" in view.readout.value
    assert view.waveform.playhead == pytest.approx(1.0)
    assert view.player.seek == pytest.approx(1.0)  # scrubbing seeks the audio
    assert view._lines[0].get_xdata()[0] == pytest.approx(1.0)
    # the audio player drives the keyframe while it plays, without seeking back
    view.player.seek = -1.0
    view.player.time = 2.52
    assert view.index == 63 and view.player.seek == -1.0
    # window shared with the waveform
    view.waveform.window = (0.5, 1.5)
    assert view.window == (0.5, 1.5)
    assert view._axes[-1].get_xlim() == pytest.approx((0.5, 1.5))


def test_timeline_view_play_widget_is_linked_and_paced():
    tl = synthetic()
    view = widgets.TimelineView(tl)
    assert view.play.interval == 40 and view.play.max == tl.n_keyframes - 1
    # linked in the browser, so Play advances the slider even while the kernel is busy
    assert view.play_link.source == (view.play, "value") and view.play_link.target == (view.slider, "value")


def test_player_carries_the_audio_as_wav():
    tl = synthetic()
    view = widgets.TimelineView(tl)
    header, data = view.player.src.split(",", 1)
    assert header == "data:audio/wav;base64"
    with wave.open(io.BytesIO(base64.b64decode(data))) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getnframes()) == (16000, 1, tl.audio.shape[0])


def test_timeline_view_without_audio():
    view = widgets.TimelineView(synthetic(with_audio=False))
    assert view.waveform is None and view.player is None
    view.index = 5
    assert "keyframe 5" in view.readout.value


def test_show_composes_summary_views_and_timing():
    tl = synthetic()
    box = widgets.show(tl)
    summary, tabs = box.children
    assert "Timeline" in summary.value and tabs.titles == ("animation", "frame timing")
    assert isinstance(tabs.children[0], widgets.TimelineView)
    assert tabs.children[1].value[:4] == b"\x89PNG"
    with pytest.raises(TypeError, match="takes a Timeline"):
        widgets.show("not a timeline")
    with pytest.raises(ValueError, match="needs a Timeline with keyframes"):
        widgets.TimelineView(synthetic(n_per_req=(0,)))


async def test_throttle_defers_inside_a_loop_and_runs_the_last_request():
    calls = []
    throttle = Throttle(lambda: calls.append(1), 0.05)
    throttle()
    throttle()
    throttle()
    assert len(calls) == 1  # the first ran, the others wait for the interval
    while len(calls) < 2:
        await asyncio.sleep(0.01)
    assert len(calls) == 2 and throttle.pending is None


async def test_session_panel_runs_refreshes_and_interrupts():
    async with LocalService(latency_ms=40) as svc:
        panel = widgets.SessionPanel(speech_like(6.0, 16000), 16000, service=svc, refresh_hz=20)
        assert panel.start_button.description == "Start" and panel.stop_button.disabled
        # live redraws while frames still stream (not only the final one after the run)
        while_streaming = []
        panel.live.observe(lambda _: while_streaming.append(panel.timeline.complete is False), names="value")
        task = panel.start()
        with pytest.raises(RuntimeError, match="already running"):
            panel.start()
        while panel.timeline.n_keyframes < 25:
            await asyncio.sleep(0.02)
        assert panel.start_button.disabled and not panel.stop_button.disabled
        assert "frames received" in panel.stats.value
        assert "<polyline" in panel.live.value
        req = await panel.interrupt()
        tl = await panel.wait()
        assert task.done() and tl is panel.timeline
        assert tl.n_keyframes < 150 and tl.req_ids == [req]
        # the run ends with the request's outcome from timeline.requests, not "done"
        assert not tl.complete and tl.request_status(req) == "interrupted"
        assert panel.status.value == "<b>interrupted</b>"
        assert sum(while_streaming) >= 2 and panel.refresh_rate > 0  # it kept redrawing while streaming
        assert panel.stop_button.disabled and not panel.start_button.disabled
        assert tl.meta["pacing"] == "capture" and tl.audio is not None
        # a second run starts a fresh timeline
        second = await panel.start()
        assert second is not tl and second.complete and second.n_keyframes == 150
        assert panel.status.value == "<b>complete</b>"


async def test_session_panel_reports_errors_in_its_status():
    async with LocalService(realtime=False, avatar_ids=["someone"]) as svc:
        panel = widgets.SessionPanel(speech_like(0.5), 16000, service=svc, avatar_id="nobody")
        tl = await panel.start()
        assert "error: avatarNotFound" in panel.status.value
        assert tl.errors and tl.n_keyframes == 0


async def test_session_panel_says_why_a_run_ended_without_keyframes():
    """A refused run leaves the live view empty: it says what happened, not "waiting"."""
    async with LocalService(realtime=False, api_key="right") as svc:
        panel = widgets.SessionPanel(speech_like(0.5), 16000, service=svc, api_key="wrong")
        assert "waiting for keyframes" in panel.live.value  # before a run
        tl = await panel.start()
        assert tl.n_keyframes == 0 and tl.errors[0].startswith("sessionTokenInvalid")
        assert "waiting for keyframes" not in panel.live.value
        assert "no keyframes: sessionTokenInvalid: session token request failed (HTTP 401)" in panel.live.value
        # a second run of the same panel waits again while it lasts
        drawn_while_running = []
        panel.live.observe(lambda change: drawn_while_running.append(change["new"]), names="value")
        panel.status.observe(
            lambda change: drawn_while_running.append(panel.live.value) if "connecting" in change["new"] else None,
            names="value",
        )
        await panel.start()
        assert "waiting for keyframes" in drawn_while_running[0]
        assert "no keyframes: sessionTokenInvalid" in panel.live.value


async def test_session_panel_cancelled_before_keyframes_says_cancelled():
    async with LocalService(realtime=False) as svc:
        panel = widgets.SessionPanel(speech_like(0.5), 16000, service=svc)
        task: asyncio.Task | None = None

        def cancel_while_connecting(change):
            if "connecting" in change["new"]:
                assert task is not None
                task.cancel()  # raised at the run's next await: nothing is ever sent

        panel.status.observe(cancel_while_connecting, names="value")
        task = panel.start()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert panel.timeline.n_keyframes == 0
        assert "no keyframes: cancelled" in panel.live.value and "waiting" not in panel.live.value
        assert panel.status.value == "<b>stopped: cancelled</b>"


async def test_session_panel_opens_its_own_service_when_none_is_given(monkeypatch):
    for var in ("AVATAR_NB_CONSOLE_URL", "AVATAR_NB_INGRESS_URL", "AVATAR_NB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    panel = widgets.SessionPanel(speech_like(0.6), 16000, pacing="fast")
    tl = await panel.start()
    assert tl.meta["service"] == "local" and tl.meta["pacing"] == "fast"
    assert tl.complete and panel.status.value == "<b>complete</b>"
    # fast pacing: the live view shows latency, and says why lateness is not shown
    assert "fast pacing: lateness n/a" in panel.live.value and "current latency" in panel.stats.value


def test_final_status_words_each_request_outcome():
    from avatar_nb.widgets.panel import final_status

    tl = synthetic()
    assert final_status(tl) == "complete"
    tl.set_request_status("r1", "preempted")
    assert final_status(tl) == "preempted 1 of 2 requests"
    assert final_status(Timeline()) == "nothing was sent"


async def test_both_panels_count_redraws_the_same_way():
    """The same keyframe arrivals and refresher wake-ups give both panels the same counts:
    a wake-up redraws only when something arrived since the last redraw."""
    keyframes = synthetic().keyframes
    panels = [widgets.SessionPanel(speech_like(0.2), 16000), widgets.MicrophonePanel()]
    counts = []
    for panel in panels:
        refresher = panel.refresher
        refresher.enabled = False  # the test wakes it up itself, with no clock involved
        refresher.forget()
        refresher.start()
        tl = panel.timeline
        drew = [await refresher.wakeup()]  # the first wake-up of a run draws
        drew.append(await refresher.wakeup())  # nothing new: no redraw
        for arrival, block in enumerate((keyframes[:5], keyframes[5:10], keyframes[10:12])):
            tl.add_animation(block, req_id="r0", arrival=0.2 + arrival * 0.2, end=False)
            drew.append(await refresher.wakeup())  # keyframes arrived: a redraw
            drew.append(await refresher.wakeup())  # and nothing since
        panel._render()  # the panel's own redraw after a run: nothing changed, nothing drawn
        await refresher.stop()
        assert drew == [True, False] + [True, False] * 3
        assert (panel.wakeups, panel.redraws) == (8, 4)
        assert (panel.refresh_ticks, panel.refreshes) == (panel.wakeups, panel.redraws)  # older names
        assert panel.redraw_seconds > 0 and 0 < panel.redraw_max <= panel.redraw_seconds
        assert panel.redraw_ms == pytest.approx(1000 * panel.redraw_seconds / panel.redraws)
        assert panel.refresh_rate > 0 and panel.redraw_rate == pytest.approx(panel.refresh_rate / 2)
        tl.add_animation(keyframes[12:13], req_id="r0", arrival=1.0, end=True)
        panel._render()  # outside the loop, a redraw when something changed: counted, no wake-up
        assert (panel.wakeups, panel.redraws) == (8, 5)
        counts.append((panel.wakeups, panel.redraws))
    assert counts[0] == counts[1]
    assert "<polyline" in panels[0].live.value and "<polyline" in panels[1].traces
    assert "13" in panels[0].stats.value and "keyframes <b>13</b>" in panels[1].stats


def test_both_panels_word_their_outcome_and_stats_in_one_place():
    from avatar_nb.widgets import live, microphone, panel

    assert panel.final_status is live.final_status and microphone.stats_html is live.stats_html
    tl = synthetic()
    assert live.outcome_text(tl) == "complete"
    assert live.outcome_text(tl, error="lost") == "error: lost (complete)"
    assert live.outcome_text(tl, stopped="microphone unavailable") == "stopped: microphone unavailable"
    assert live.outcome_text(tl, capture=True).startswith(f"done: {tl.n_keyframes} keyframes for ")
    tl.set_request_status("r1", "preempted")
    assert live.outcome_text(tl, capture=True).endswith("(preempted 1 of 2 requests)")
    line = live.stats_html(tl, current=True, count_label="frames received:")
    # the empty live view: waiting while a run lasts, else one line saying why nothing came
    empty = Timeline()
    assert live.empty_text(empty, ended=False, error="ignored while running") == "waiting for keyframes"
    assert live.empty_text(empty, ended=True) == "no keyframes: nothing was sent"
    assert live.empty_text(empty, ended=True, error="\nrefused: bad key\n  details") == "no keyframes: refused: bad key"
    assert live.empty_text(empty, ended=True, stopped="cancelled", captured=1.25) == (
        "no keyframes: cancelled (1.2 s captured)"
    )
    cut = live.empty_text(empty, ended=True, error="x" * 500, captured=0.0, max_chars=60)
    assert len(cut) == 60 and cut.startswith("no keyframes: xxx") and cut.endswith("\u2026 (0.0 s captured)")
    words = live.empty_text(empty, ended=True, error="refused: " + "word " * 40, max_chars=40)
    assert words == "no keyframes: refused: word word word\u2026"
    empty.add_audio_chunk("r0", 0.0, 640)
    empty.set_request_status("r0", "interrupted")
    assert live.empty_text(empty, ended=True) == "no keyframes: interrupted"
    empty.add_error("capture: the kernel was interrupted")
    assert live.empty_text(empty, ended=True) == "no keyframes: capture: the kernel was interrupted"
    assert line.startswith(f"frames received: <b>{tl.n_keyframes}</b>") and "current late" in line


def test_public_names_are_exactly_all():
    for module in (plots, widgets):
        assert dir(module) == sorted(module.__all__)
        assert not {"np", "Axes", "Ellipse", "math", "w", "Timeline"} & set(dir(module))


def test_views_use_only_the_public_plotting_api():
    import inspect
    import re

    from avatar_nb.widgets import _util, capture, live, microphone, panel, player, timeline, waveform

    for module in (microphone, panel, player, timeline, waveform, _util, live, capture):
        source = inspect.getsource(module)
        assert not re.findall(r"plots\._\w+", source), module.__name__
        assert "print_png" not in source and "wave.open" not in source, module.__name__
    for module in (plots, microphone, panel, timeline, live):
        # FLAME columns come from avatar_nb.flame, never as bare indices
        source = inspect.getsource(module)
        assert not re.findall(r"\[(?:[^\]]*, *)?(?:9|18|19|20)\]|3:6|12:14|18:20", source), module.__name__
