"""MicrophonePanel's kernel side, fed with the binary widget messages the page sends.

The page (getUserMedia + AudioWorklet) needs a browser: ``make browser-check`` covers it.
Here every message goes through the widget's comm-level handler (``_handle_msg``, the
entry ipywidgets uses for a front-end message) with its PCM as a binary buffer, and the
session runs against the local service over loopback.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from avatar_nb import _pcm
from avatar_nb.audio import speech_like
from avatar_nb.widgets import MicrophonePanel
from avatar_nb.plots import waveform_svg
from avatar_nb.widgets.microphone import CaptureSequencer, stats_html

RATE = 16000
CHUNK = 640  # 40 ms at 16 kHz
CHUNK_S = CHUNK / RATE


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """2 s of speech-like int16 audio."""
    return np.frombuffer(_pcm.to_s16le(speech_like(2.0, RATE, seed=5)), dtype="<i2").copy()


def page_msg(panel: MicrophonePanel, content: dict, buffers: list | None = None) -> None:
    """Deliver ``content`` (and binary ``buffers``) as the page's custom widget message."""
    panel._handle_msg(
        {
            "content": {"data": {"method": "custom", "content": content}},
            "buffers": [memoryview(b) for b in (buffers or [])],
        }
    )


def chunk_msg(panel: MicrophonePanel, seq: int, pcm: bytes, end: bool = False) -> None:
    page_msg(panel, {"type": "chunk", "seq": seq, "t": time.monotonic(), "end": end}, [pcm])


async def started(panel: MicrophonePanel) -> asyncio.Task:
    task = panel.start()
    await asyncio.wait_for(panel._ready.wait(), 10.0)
    return task


async def deliver_paced(panel: MicrophonePanel, pieces: list[tuple[int, bytes, bool]]) -> None:
    """Deliver chunks as a microphone would: each when its last sample was captured."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index, (seq, pcm, end) in enumerate(pieces):
        await asyncio.sleep(max(0.0, start + (index + 1) * CHUNK_S - loop.time()))
        chunk_msg(panel, seq, pcm, end)


def pieces_of(samples: np.ndarray) -> list[bytes]:
    data = samples.astype("<i2").tobytes()
    return [data[i : i + 2 * CHUNK] for i in range(0, len(data), 2 * CHUNK)]


# --------------------------------------------------------------------------- sequencing (no I/O)


def test_sequencer_in_order_sends_each_chunk_at_once():
    seq = CaptureSequencer(4)
    out = [seq.accept(i, bytes(8)) for i in range(3)]
    assert [[c.seq for c in o] for o in out] == [[0], [1], [2]]
    assert all(c.kind == "audio" and not c.end for o in out for c in o)
    assert seq.counts()["errors"] == 0


def test_sequencer_fills_a_gap_with_silence_and_drops_the_late_chunk():
    seq = CaptureSequencer(4)
    seq.accept(0, b"\x01\x00" * 4)
    out = seq.accept(3, b"\x02\x00" * 4)  # 1 and 2 missing
    assert [(c.seq, c.kind) for c in out] == [(1, "silence"), (2, "silence"), (3, "audio")]
    assert out[0].pcm == bytes(8) and out[2].pcm == b"\x02\x00" * 4
    assert seq.gaps == 2 and seq.gap_samples == 8
    assert seq.accept(2, b"\x03\x00" * 4) == []  # reordered: its slot is already filled
    assert seq.late == 1 and seq.duplicates == 0
    assert seq.accept(3, b"\x02\x00" * 4) == []  # a repeat
    assert seq.duplicates == 1
    assert any("1..2 never arrived" in e for e in seq.errors)


def test_sequencer_rejects_wrong_sizes_and_fills_their_slot():
    seq = CaptureSequencer(640)
    out = seq.accept(0, bytes(641))
    assert [(c.kind, len(c.pcm)) for c in out] == [("silence", 1280)]
    assert (
        "641 bytes, an odd number" in seq.errors[-1]
        and "accepted: 1280 bytes (640 samples)" in seq.errors[-1]
    )
    out = seq.accept(1, bytes(1000))  # even, but not a chunk, and not the last one
    assert out[0].kind == "silence" and "1000 bytes (500 samples)" in seq.errors[-1]
    out = seq.accept(2, bytes(2000))  # too long
    assert out[0].kind == "silence" and seq.rejected == 3


def test_sequencer_accepts_a_short_last_chunk_and_nothing_after_it():
    seq = CaptureSequencer(640)
    seq.accept(0, bytes(1280))
    (last,) = seq.accept(1, bytes(300), end=True)
    assert last.kind == "audio" and last.end and len(last.pcm) == 300
    assert seq.accept(2, bytes(1280)) == [] and seq.after_end == 1
    odd = CaptureSequencer(640)
    (filler,) = odd.accept(
        0, bytes(301), end=True
    )  # an odd last chunk: rejected, but the end still goes
    assert filler.kind == "silence" and filler.end and odd.rejected == 1


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None, True])
def test_sequencer_refuses_bad_sequence_numbers(bad):
    seq = CaptureSequencer(4)
    assert seq.accept(bad, bytes(8)) == []
    assert repr(bad) in seq.errors[-1]


def test_sequencer_keeps_a_bounded_error_list():
    seq = CaptureSequencer(4)
    for i in range(100):
        seq.accept(i, bytes(3))
    assert seq.n_errors == 100 and len(seq.errors) == 20


def test_panel_checks_its_settings():
    with pytest.raises(ValueError, match="chunk_ms"):
        MicrophonePanel(chunk_ms=0)
    with pytest.raises(ValueError, match="sample_rate"):
        MicrophonePanel(sample_rate=16000.0)
    with pytest.raises(ValueError, match="unsupported sample_rate 11025; accepted: 8000, 16000"):
        MicrophonePanel(sample_rate=11025)
    panel = MicrophonePanel(chunk_ms=20, sample_rate=24000)
    assert panel.chunk_samples == 480 and "<svg" in panel.wave and "<svg" in panel.face


# --------------------------------------------------------------------------- against the local service


async def test_chunks_in_order_make_the_timeline(realtime_service, speech):
    panel = MicrophonePanel(realtime_service)
    task = await started(panel)
    pieces = pieces_of(speech)
    await deliver_paced(panel, [(i, p, i == len(pieces) - 1) for i, p in enumerate(pieces)])
    tl = await asyncio.wait_for(task, 30.0)
    assert tl is panel.timeline and tl.complete and not tl.errors
    assert tl.meta["pacing"] == "capture" and tl.meta["capture"]["gaps"] == 0
    np.testing.assert_array_equal(tl.audio, speech)
    assert tl.chunk_samples.sum() == speech.size
    assert tl.n_keyframes == 50  # 2 s at 25 fps
    # origin = capture start: chunk 0 was captured at one chunk, and left at once
    chunks = panel.chunks
    assert chunks["captured_at"].iloc[0] == pytest.approx(CHUNK_S)
    assert (tl.chunk_sent_at >= chunks["arrived_at"].to_numpy() - 1e-9).all()
    # the session's clock is the panel's: it stamps a send just before the panel's log does
    assert (tl.chunk_sent_at <= chunks["sent_at"].to_numpy()).all()
    # lateness under capture pacing against a service with 80 ms latency is never negative
    assert np.nanmin(tl.lateness) > 0
    assert panel.session.closed and not panel.running and panel.status.startswith("done")


async def test_pacing_each_chunk_leaves_before_the_next_is_captured(realtime_service, speech):
    panel = MicrophonePanel(realtime_service)
    task = await started(panel)
    pieces = pieces_of(speech[: 25 * CHUNK])
    await deliver_paced(panel, [(i, p, i == len(pieces) - 1) for i, p in enumerate(pieces)])
    tl = await asyncio.wait_for(task, 30.0)
    c = panel.chunks
    sent, arrived, captured = (
        c["sent_at"].to_numpy(),
        c["arrived_at"].to_numpy(),
        c["captured_at"].to_numpy(),
    )
    # sent as they arrive: never before, and always before the next chunk arrived (no batching)
    assert (sent >= arrived).all()
    assert (sent[:-1] < arrived[1:]).all()
    # send times follow capture: the Timeline's send times are in capture order, one chunk apart
    assert (np.diff(tl.chunk_sent_at) > 0).all()
    assert np.median(np.diff(tl.chunk_sent_at)) == pytest.approx(CHUNK_S, rel=0.5)
    assert (np.diff(captured) > 0).all()


async def test_out_of_order_gap_and_duplicate_over_the_wire(realtime_service, speech):
    panel = MicrophonePanel(realtime_service)
    task = await started(panel)
    p = pieces_of(speech[: 6 * CHUNK])
    # 2 overtakes 1 (1 arrives late), 4 never arrives, 5 is repeated
    order = [
        (0, p[0], False),
        (2, p[2], False),
        (1, p[1], False),
        (3, p[3], False),
        (5, p[5], False),
        (5, p[5], False),
    ]
    await deliver_paced(panel, order)
    chunk_msg(panel, 6, p[0][:200], end=True)
    tl = await asyncio.wait_for(task, 30.0)
    cap = tl.meta["capture"]
    assert (cap["gaps"], cap["late"], cap["duplicates"]) == (2, 1, 1)
    assert cap["kind"] == ["audio", "silence", "audio", "audio", "silence", "audio", "audio"]
    assert cap["gap_seconds"] == pytest.approx(2 * CHUNK_S)
    expected = np.concatenate(
        [
            speech[:CHUNK],
            np.zeros(CHUNK, np.int16),
            speech[2 * CHUNK : 4 * CHUNK],
            np.zeros(CHUNK, np.int16),
            speech[5 * CHUNK : 6 * CHUNK],
            speech[:100],
        ]
    )
    np.testing.assert_array_equal(tl.audio, expected)  # media time stays that of the capture
    assert tl.complete
    assert any("chunk 1 arrived after" in e for e in tl.errors)
    assert any("chunks 4..4 never arrived" in e for e in tl.errors)
    assert any("arrived twice" in e for e in tl.errors)


async def test_wrong_sizes_are_recorded_and_nothing_invalid_is_sent(realtime_service, speech):
    panel = MicrophonePanel(realtime_service)
    task = await started(panel)
    p = pieces_of(speech[: 3 * CHUNK])
    chunk_msg(panel, 0, p[0])
    chunk_msg(panel, 1, p[1][:-1])  # odd
    page_msg(
        panel, {"type": "chunk", "seq": 2, "t": time.monotonic(), "end": False}, []
    )  # no buffer
    chunk_msg(panel, 3, p[2], end=True)
    tl = await asyncio.wait_for(task, 30.0)
    assert tl.meta["capture"]["rejected"] == 2
    assert (tl.chunk_samples == CHUNK).all() and tl.audio.size == 4 * CHUNK
    assert any("chunk 1 rejected: 1279 bytes, an odd number" in e for e in tl.errors)
    assert any("carried 0 binary buffers" in e for e in tl.errors)


async def test_stop_mid_chunk_sends_the_partial_chunk_with_end(realtime_service, speech):
    panel = MicrophonePanel(realtime_service)
    task = await started(panel)
    p = pieces_of(speech[: 3 * CHUNK])
    await deliver_paced(panel, [(0, p[0], False), (1, p[1], False), (2, p[2][: 2 * 250], True)])
    tl = await asyncio.wait_for(task, 30.0)
    assert list(tl.chunk_samples) == [CHUNK, CHUNK, 250]
    assert tl.complete and tl.audio.size == 2 * CHUNK + 250
    assert tl.requests["status"].tolist() == ["complete"]
    assert panel.chunks["end"].tolist() == [False, False, True]


async def test_stop_from_code_without_a_page_ends_the_request(realtime_service, speech):
    panel = MicrophonePanel(realtime_service)
    await started(panel)
    p = pieces_of(speech[: 4 * CHUNK])
    await deliver_paced(panel, [(i, p[i], False) for i in range(4)])
    tl = await panel.stop()
    assert tl.complete and tl.audio.size == 4 * CHUNK
    assert tl.chunk_samples[-1] == 0  # the request was ended with an empty end chunk
    assert panel.session.closed


async def test_stop_waits_for_a_capturing_page_to_flush_its_partial_chunk(realtime_service, speech):
    panel = MicrophonePanel(realtime_service)
    await started(panel)
    page_msg(panel, {"type": "capturing", "device": "test microphone", "capture_rate": RATE})
    p = pieces_of(speech[: 4 * CHUNK])
    told: list[str] = []

    def page(content: dict) -> None:  # the page: told to stop, it flushes its partial chunk
        told.append(content["type"])
        if told.count("stop") == 1 and content["type"] == "stop":  # a while later, as a browser
            asyncio.get_running_loop().call_later(0.2, chunk_msg, panel, 3, p[3][:300], True)

    panel._send_to_page = page
    await deliver_paced(panel, [(i, p[i], False) for i in range(3)])
    tl = await panel.stop()
    # the flushed chunk ended the request: no empty end chunk was added
    assert list(tl.chunk_samples) == [CHUNK, CHUNK, CHUNK, 150]
    assert tl.complete and panel.chunks["end"].tolist() == [False, False, False, True]
    assert tl.meta["capture"]["device"] == "test microphone"


async def test_a_capturing_page_that_never_flushes_still_ends_the_request(realtime_service, speech):
    panel = MicrophonePanel(realtime_service)
    await started(panel)
    page_msg(panel, {"type": "capturing", "device": "test microphone", "capture_rate": RATE})
    p = pieces_of(speech[: 2 * CHUNK])
    await deliver_paced(panel, [(i, p[i], False) for i in range(2)])
    tl = await panel.stop()  # the page is gone: after its bounded wait the kernel ends the request
    assert tl.complete and list(tl.chunk_samples) == [CHUNK, CHUNK, 0]
    assert panel.session.closed


async def test_interrupt_keeps_capturing_as_a_new_request(realtime_service, speech):
    panel = MicrophonePanel(realtime_service)
    task = await started(panel)
    p = pieces_of(speech[: 20 * CHUNK])
    await deliver_paced(panel, [(i, p[i], False) for i in range(10)])
    page_msg(panel, {"type": "interrupt"})
    await asyncio.sleep(0.1)
    await deliver_paced(panel, [(i, p[i], i == 19) for i in range(10, 20)])
    tl = await asyncio.wait_for(task, 30.0)
    assert len(tl.req_ids) == 2
    assert tl.request_status(tl.req_ids[0]) == "interrupted"
    assert tl.request_status(tl.req_ids[1]) == "complete"
    assert tl.audio.size == 20 * CHUNK


async def test_a_refused_microphone_is_explained_and_the_session_closed(realtime_service):
    panel = MicrophonePanel(realtime_service)
    task = await started(panel)
    page_msg(
        panel,
        {
            "type": "error",
            "name": "NotAllowedError",
            "message": "Permission denied",
            "hint": "microphone permission was refused",
        },
    )
    tl = await asyncio.wait_for(task, 30.0)
    assert "permission was refused" in panel.error and "NotAllowedError" in panel.error
    assert panel.error in tl.errors
    assert (
        panel.error.startswith("Microphone unavailable: ")
        and panel.status == "stopped: microphone unavailable"
    )
    assert panel.session.closed and not panel.running


async def test_a_stopped_panel_says_stopped_with_what_was_captured(realtime_service, speech):
    """Once a run has ended without keyframes, the trace lanes no longer say "waiting" but
    why none came, with what was captured, in the words of the session panel."""
    panel = MicrophonePanel(realtime_service)
    assert "waiting for keyframes" in panel.traces  # not started yet
    task = await started(panel)
    assert "waiting for keyframes" in panel.traces
    page_msg(panel, {"type": "error", "name": "NotAllowedError", "message": "Permission denied"})
    await asyncio.wait_for(task, 30.0)
    assert "waiting for keyframes" not in panel.traces
    assert "no keyframes: Microphone unavailable: it could not be\u2026 (0.0 s captured)" in panel.traces
    assert panel.status == "stopped: microphone unavailable"
    # the figure is the panel's capture counter (set here: audio sent would bring keyframes)
    await started(panel)
    panel._captured_samples = 3 * CHUNK
    tl = await panel.stop()
    assert tl.n_keyframes == 0 and "no keyframes: nothing was sent (0.1 s captured)" in panel.traces


async def test_closing_the_widget_stops_the_capture_and_closes_the_session(
    realtime_service, speech
):
    panel = MicrophonePanel(realtime_service)
    task = await started(panel)
    p = pieces_of(speech[: 3 * CHUNK])
    await deliver_paced(panel, [(i, p[i], False) for i in range(3)])
    panel.close()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10.0)
    assert panel.session.closed
    assert panel.timeline.audio.size == 3 * CHUNK  # what was captured survives


async def test_chunks_without_a_run_are_dropped_with_a_reason(speech):
    panel = MicrophonePanel()
    chunk_msg(panel, 0, pieces_of(speech)[0])
    assert "no session is open" in panel.sequencer.errors[-1]
    page_msg(panel, {"type": "nonsense"})
    assert "unknown message" in panel.sequencer.errors[-1]


async def test_feed_file_goes_through_the_same_path(realtime_service, tmp_path, speech):
    import soundfile

    wav = tmp_path / "speech.wav"
    soundfile.write(wav, speech[:RATE], RATE, subtype="PCM_16")
    panel = MicrophonePanel(realtime_service)
    tl = await panel.feed_file(wav)
    np.testing.assert_array_equal(tl.audio, speech[:RATE])
    assert tl.complete and tl.n_keyframes == 25 and tl.meta["pacing"] == "capture"
    assert panel.device == "file speech.wav" and panel.chunks["seq"].tolist() == list(range(25))
    # the live view redrew during the run, and skipped the ticks when nothing had changed
    assert panel.refreshes >= 5 and panel.refreshes <= panel.refresh_ticks + 1
    assert "<path" in panel.wave and "polyline" in panel.traces and "first frame" in panel.stats


async def test_the_panel_holds_only_a_window_of_audio_beside_the_timeline(service, speech):
    panel = MicrophonePanel(service, window=0.5)
    tl = await panel.feed_file(speech, pacing="fast")
    assert tl.meta["pacing"] == "fast" and tl.meta["source"] == "feed_file"
    np.testing.assert_array_equal(tl.audio, speech)  # the whole capture is in the Timeline
    assert panel._recent_samples <= 1.5 * RATE + CHUNK  # the waveform's window (+1 s), not the run
    assert panel._all_captured is None


async def test_feed_file_still_takes_realtime_with_a_deprecation_warning(service, speech):
    panel = MicrophonePanel(service)
    with pytest.warns(DeprecationWarning, match="pacing="):
        tl = await panel.feed_file(speech[: 5 * CHUNK], realtime=False)
    assert tl.meta["pacing"] == "fast" and tl.complete and tl.audio.size == 5 * CHUNK
    with pytest.raises(ValueError, match="'capture'.*'fast'"):
        await panel.feed_file(speech, pacing="playback")


def test_markup_helpers():
    from avatar_nb.timeline import Timeline

    svg = waveform_svg(np.zeros(0, np.int16), RATE, 0)
    assert svg.startswith("<svg") and "0.0 s so far" in svg
    svg = waveform_svg(
        (np.sin(np.arange(RATE)) * 1000).astype(np.int16), RATE, 3 * RATE, window=2.0
    )
    assert "<path" in svg and "3.0 s so far" in svg
    assert "keyframes <b>0</b>" in stats_html(Timeline(sample_rate=RATE))


# --------------------------------------------------------------------------- in a real kernel


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A kernel of this interpreter, as Jupyter runs one (interrupts are SIGINT)."""
    import json
    import sys

    from jupyter_client.manager import start_new_kernel

    spec = tmp_path / "kernels" / "avatar-nb-mic"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "avatar_nb tests",
                "language": "python",
                "interrupt_mode": "signal",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "agg")
    km, kc = start_new_kernel(kernel_name="avatar-nb-mic", cwd=str(tmp_path))
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_cell(kc, code: str, timeout: float = 60.0) -> str:
    """Execute ``code``; return its printed output. A cell error fails the test, with its traceback."""
    out: list[str] = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            pytest.fail(
                f"cell failed: {msg['content']['ename']}: {msg['content']['evalue']}\n"
                + "\n".join(msg["content"]["traceback"])
                + f"\n--- cell:\n{code}"
            )

    reply = kc.execute_interactive(
        code, timeout=timeout, output_hook=hook, user_expressions={"report": "_report"}
    )
    report = reply["content"].get("user_expressions", {}).get("report", {})
    return "".join(out) + report.get("data", {}).get("text/plain", "")


_PAGE_STAND_IN = """
import asyncio, time
import avatar_nb as an
from avatar_nb.widgets import MicrophonePanel
svc = an.LocalService(latency_ms=80).start()
panel = MicrophonePanel(svc)

async def page(panel):
    # what the page does while it captures: a numbered 40 ms chunk every 40 ms, until cancelled
    await panel._ready.wait()
    seq = 0
    while True:
        await asyncio.sleep(0.04)
        panel._on_browser_msg(panel, {"type": "chunk", "seq": seq, "t": time.monotonic()}, [bytes(1280)])
        seq += 1
"""

_REPORT = """
feeder.cancel()
_report = " ".join(map(str, ["closed", panel.session.closed, "running", panel.is_running,
                             "statuses", panel.timeline.requests.status.tolist(), "chunks", len(panel.chunks)]))
"""


def test_a_kernel_interrupt_between_cells_stops_the_capture(kernel):
    km, kc = kernel
    run_cell(
        kc, _PAGE_STAND_IN + "task = panel.start()\nfeeder = asyncio.ensure_future(page(panel))\n"
    )
    deadline = time.monotonic() + 20
    while (
        "True" not in run_cell(kc, "_report = len(panel.chunks) >= 10")
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    km.interrupt_kernel()  # the kernel is idle: ipykernel alone would ignore this
    report = run_cell(kc, "await asyncio.wait_for(asyncio.shield(task), 20)\n" + _REPORT)
    assert "closed True running False statuses ['complete']" in report, report


def test_a_kernel_interrupt_while_a_cell_waits_closes_the_session(kernel):
    km, kc = kernel
    run_cell(
        kc, _PAGE_STAND_IN + "task = panel.start()\nfeeder = asyncio.ensure_future(page(panel))\n"
    )
    msg_id = kc.execute(
        "await panel.wait()", stop_on_error=False
    )  # its error must not abort the next cell
    while True:  # until the cell runs (an interrupt before it would stop the idle capture instead)
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
            break
    time.sleep(1.0)  # the cell is waiting on the panel while chunks stream
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["status"] == "error"
    report = run_cell(kc, _REPORT)
    assert "closed True running False" in report, report
    assert int(report.split("chunks")[1].strip(" '\"")) >= 10, report
