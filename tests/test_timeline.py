"""Timeline: data model, metrics, channels."""

from __future__ import annotations

import math
import sys
import threading

import numpy as np
import pytest

from avatar_nb.timeline import Timeline


def _kf(n: int, e: int = 50, start: float = 0.0) -> np.ndarray:
    out = np.zeros((n, 20 + e), dtype=np.float32)
    out[:, 9] = np.linspace(start, start + 1, n, dtype=np.float32)  # jaw_open
    out[:, 3:6] = np.arange(n * 3, dtype=np.float32).reshape(n, 3)  # rotation
    out[:, 18] = 0.25
    out[:, 19] = 0.75
    out[:, 20:] = np.arange(e, dtype=np.float32)
    return out


def make_run(realtime: bool = True) -> Timeline:
    """Two utterances, 1 s and 0.52 s of 16 kHz audio in 40 ms chunks, keyframes 2 per message."""
    tl = Timeline(25, sample_rate=16000, audio=np.zeros(24000, dtype=np.int16))
    t = 0.0
    for req, n_chunks in (("r1", 25), ("r2", 13)):
        for _ in range(n_chunks):
            tl.add_audio_chunk(req, t, 640)
            t += 0.04 if realtime else 0.001
    # keyframes arrive 100 ms after their audio in the realtime case
    arrival = 0.1
    for req, n in (("r1", 25), ("r2", 13)):
        for i in range(0, n, 2):
            k = min(2, n - i)
            tl.add_animation(_kf(k), req_id=req, arrival=arrival, end=i + k >= n)
            arrival += 0.08
    return tl


def test_counts_and_arrays():
    tl = make_run()
    assert tl.n_keyframes == 38 == len(tl) == tl.keyframes.shape[0]
    assert tl.keyframes.shape == (38, 70)
    assert tl.n_expression == 50
    assert tl.req_ids == ["r1", "r2"]
    assert tl.message_keyframes.sum() == 38
    assert tl.arrival.shape == (38,)
    assert list(np.bincount(tl.keyframe_req)) == [25, 13]
    assert tl.complete
    assert tl.audio_duration == pytest.approx(1.52)


def test_media_time_follows_utterance_audio():
    tl = make_run()
    np.testing.assert_allclose(tl.utterance_start, [0.0, 1.0])
    mt = tl.media_time
    np.testing.assert_allclose(mt[:25], np.arange(25) / 25)
    np.testing.assert_allclose(mt[25:], 1.0 + np.arange(13) / 25)


def test_metrics():
    tl = make_run()
    assert tl.first_frame_latency == pytest.approx(0.1)
    np.testing.assert_allclose(tl.inter_arrival, 0.08)
    assert tl.jitter == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(tl.lateness, tl.arrival - tl.media_time)
    assert tl.real_time_factor == pytest.approx(tl.arrival[-1] / 1.52)
    s = tl.summary()
    assert s["keyframes"] == 38 and s["requests"] == 2 and s["complete"] is True


def test_jitter_is_std_of_gaps():
    tl = Timeline(25)
    for t in (0.0, 0.1, 0.3, 0.35):
        tl.add_animation(_kf(1), req_id="r", arrival=t, end=False)
    assert tl.jitter == pytest.approx(np.std([0.1, 0.2, 0.05]))
    assert not tl.complete


def test_empty_timeline_metrics_are_nan():
    tl = Timeline(30)
    assert tl.n_keyframes == 0
    assert tl.keyframes.shape == (0, 20)
    assert math.isnan(tl.first_frame_latency)
    assert math.isnan(tl.jitter)
    assert math.isnan(tl.real_time_factor)
    assert not tl.complete
    assert "0 keyframes" in repr(tl)


def test_channels_by_name():
    tl = make_run()
    np.testing.assert_array_equal(tl.jaw_open, tl.keyframes[:, 9])
    np.testing.assert_array_equal(tl["jaw_pose"], tl.keyframes[:, 9:12])
    np.testing.assert_array_equal(tl.channel("expression"), tl.keyframes[:, 20:])
    assert np.all(tl.eyelid_left == 0.25) and np.all(tl.eyelid_right == 0.75)
    np.testing.assert_array_equal(tl.head_yaw, tl.keyframes[:, 4])
    with pytest.raises(KeyError, match="unknown channel 'mouth'.*jaw_open"):
        tl.channel("mouth")
    with pytest.raises(AttributeError):
        tl.no_such_thing  # noqa: B018


def test_arrays_are_read_only_and_cached_until_next_append():
    tl = make_run()
    kf = tl.keyframes
    assert not kf.flags.writeable
    assert tl.keyframes is kf
    v = tl.version
    tl.add_animation(_kf(3), req_id="r3", arrival=9.0, end=True)
    assert tl.version > v
    assert tl.keyframes.shape[0] == 41


def test_differing_expression_width_is_rejected_without_change():
    tl = make_run()
    before = tl.n_keyframes
    with pytest.raises(ValueError, match="100 expression coefficients, earlier ones have 50"):
        tl.add_animation(_kf(2, e=100), req_id="r1", arrival=5.0, end=False)
    assert tl.n_keyframes == before


def test_bad_keyframe_shape():
    with pytest.raises(ValueError, match="shape"):
        Timeline().add_animation(np.zeros((3, 5)), req_id="r", arrival=0, end=False)


@pytest.mark.parametrize("fps", [0, -1, float("nan"), "25"])
def test_bad_fps(fps):
    with pytest.raises(ValueError, match="fps"):
        Timeline(fps)


def test_repr_and_html():
    tl = make_run()
    text = repr(tl)
    assert "38 keyframes" in text and "E=50" in text and "first frame 100.0 ms" in text
    page = tl._repr_html_()
    assert "<table>" in page and "first-frame latency" in page and "100.0 ms" in page


def test_audio_validation():
    with pytest.raises(ValueError, match="odd number"):
        Timeline(audio=b"\x00\x01\x02")
    with pytest.raises(ValueError, match="int16"):
        Timeline(audio=np.zeros(4, dtype=np.float32))
    tl = Timeline(sample_rate=8000, audio=b"\x00\x40" * 8000)
    assert tl.audio_duration == pytest.approx(1.0)
    np.testing.assert_allclose(tl.audio_samples(), 0.5)


def test_changing_fps_or_sample_rate_recomputes_derived_arrays():
    tl = make_run()
    np.testing.assert_allclose(tl.media_time[:3], [0.0, 0.04, 0.08])
    v = tl.version
    tl.fps = 50
    assert tl.version > v
    np.testing.assert_allclose(tl.media_time[:3], [0.0, 0.02, 0.04])
    tl.sample_rate = 8000  # the second utterance now starts 2 s in (16000 samples at 8 kHz)
    np.testing.assert_allclose(tl.utterance_start, [0.0, 2.0])
    with pytest.raises(ValueError, match="fps must be a positive number, got 0"):
        tl.fps = 0
    with pytest.raises(ValueError, match="sample_rate must be a positive int or None, got 16000.5"):
        tl.sample_rate = 16000.5
    assert tl.fps == 50.0


def test_reading_while_another_thread_appends_loses_nothing():
    """A view reading arrays while a session's thread appends: every keyframe stays, in order."""
    tl = Timeline(25)
    n_messages = 3000
    done = threading.Event()

    def writer() -> None:
        for i in range(n_messages):
            tl.add_animation(np.full((1, 70), i, dtype=np.float32), req_id="r", arrival=i * 0.04, end=False)
        done.set()

    # switch threads every microsecond so that reads land in the middle of appends
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        thread = threading.Thread(target=writer)
        thread.start()
        reads = 0
        while not done.is_set() or reads == 0:
            kf = tl.keyframes
            assert np.array_equal(kf[:, 0], np.arange(kf.shape[0]))  # a prefix, in order, no gap
            reads += 1
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    np.testing.assert_array_equal(tl.keyframes[:, 0], np.arange(n_messages))
    assert tl.arrival.shape == (n_messages,)


# ---------------------------------------------------------------------- timing definitions


def test_latency_is_arrival_minus_when_the_frames_audio_was_sent():
    """16 kHz, 25 fps: frame k covers samples [640k, 640(k+1)); 100 ms chunks of 1600 samples."""
    tl = Timeline(25, sample_rate=16000, meta={"pacing": "capture"})
    for i in range(5):  # 0.5 s of audio, chunk i sent at (i + 1) * 0.1 (capture pacing)
        tl.add_audio_chunk("r", (i + 1) * 0.1, 1600)
    tl.add_animation(_kf(13), req_id="r", arrival=0.9, end=True)  # 12.5 frames: the 13th is clipped
    # frame k ends at sample 640(k+1) (clipped to 8000); chunk j covers up to 1600(j+1)
    frame_end = np.minimum(640 * (np.arange(13) + 1), 8000)
    chunk = np.ceil(frame_end / 1600).astype(int) - 1
    np.testing.assert_allclose(tl.audio_complete_at, (chunk + 1) * 0.1)
    np.testing.assert_allclose(tl.latency, 0.9 - (chunk + 1) * 0.1)
    np.testing.assert_allclose(tl.lateness, 0.9 - np.arange(13) / 25)
    s = tl.summary()
    assert s["pacing"] == "capture"
    assert s["latency_p50"] == pytest.approx(float(np.percentile(0.9 - (chunk + 1) * 0.1, 50)))
    assert s["first_frame_latency"] == pytest.approx(0.8)  # first keyframe minus first chunk sent


def test_latency_of_frames_whose_audio_never_went_out_is_nan():
    tl = Timeline(25, sample_rate=16000)
    tl.add_audio_chunk("r", 0.04, 640)
    tl.add_audio_chunk("r", 0.08, 640)
    tl.add_animation(_kf(2), req_id="r", arrival=0.2, end=False)
    tl.add_animation(_kf(1), req_id="other", arrival=0.3, end=False)  # a request with no audio
    np.testing.assert_allclose(tl.latency[:2], [0.16, 0.12])
    assert np.isnan(tl.latency[2])
    assert tl.summary()["latency_p99"] == pytest.approx(float(np.percentile([0.16, 0.12], 99)))


def test_fast_pacing_has_no_lateness():
    tl = make_run(realtime=False)
    tl.meta["pacing"] = "fast"
    assert np.isnan(tl.lateness).all() and tl.lateness.shape == (38,)
    assert np.isfinite(tl.latency).all()
    s = tl.summary()
    assert s["lateness_p50"] is None and s["lateness_p99"] is None and s["latency_p99"] is not None
    assert "n/a under fast pacing" in tl._repr_html_()
    assert "processing speed" in tl._repr_html_()


def test_fast_pacing_reads_as_times_real_time():
    """Under fast pacing the real-time factor is processing speed: 0.0032 reads as "310x real time",
    never as "RTF 0.00"."""
    tl = Timeline(25, sample_rate=16000)
    tl.meta["pacing"] = "fast"
    tl.add_audio_chunk("r", 0.0, 16000 * 31)  # 31 s of audio sent at once
    tl.add_animation(_kf(775), req_id="r", arrival=0.1, end=True)  # all of it animated after 0.1 s
    assert tl.real_time_factor == pytest.approx(0.1 / 31)
    text = repr(tl)
    assert "processing 310x real time" in text and "RTF" not in text
    page = tl._repr_html_()
    assert "processing speed</th><td>310x real time" in page and "real-time factor" not in page
    paced = make_run()
    assert "RTF 1.0" in repr(paced) and "real time" not in repr(paced)
    assert "real-time factor</th><td>1.0" in paced._repr_html_()


def test_times_real_time_text():
    from avatar_nb.timeline_text import times_real_time

    assert times_real_time(1 / 310.4) == "310x"
    assert times_real_time(0.4) == "2.5x"
    assert times_real_time(2.0) == "0.5x"
    assert times_real_time(None) == times_real_time(0.0) == times_real_time(float("nan")) == "n/a"


def test_without_pacing_in_meta_counts_as_playback():
    tl = make_run()
    assert tl.pacing == "playback" and np.isfinite(tl.lateness).all()


def test_non_integral_fps_frame_boundaries():
    tl = Timeline(30, sample_rate=16000)
    tl.fps = 29.97
    tl.add_audio_chunk("r", 0.0, 16000)
    tl.add_animation(_kf(3), req_id="r", arrival=1.0, end=True)
    np.testing.assert_allclose(tl.latency, 1.0)


# ---------------------------------------------------------------------- requests


def test_requests_table_and_statuses():
    tl = make_run()
    tl.add_audio_chunk("r3", 2.0, 640)
    tl.set_request_status("r3", "interrupted", at=2.1)
    tl.add_animation(_kf(1), req_id="r3", arrival=2.2, end=True)  # the end after an interrupt
    tl.set_request_status("r4", "open", at=2.3)
    tl.add_playback_state("r1", "PLAYING", 40, "", at=0.5)
    tl.add_playback_state("r1", "PAUSED", 480, "client", at=0.9)
    tl.add_anomaly("r2", "after_end", "2 keyframes after the end frame", at=1.7)
    tl.add_anomaly("ghost", "unknown_request", "1 keyframe", at=1.8)
    req = tl.requests
    assert list(req["req_id"]) == ["r1", "r2", "r3", "r4"]
    assert list(req["status"]) == ["complete", "complete", "interrupted", "open"]
    assert list(req["keyframes"]) == [25, 13, 1, 0]
    assert list(req["chunks"]) == [25, 13, 1, 0]
    np.testing.assert_allclose(req["audio_seconds"], [1.0, 0.52, 0.04, 0.0])
    assert req.loc[0, "first_arrival"] == pytest.approx(0.1)
    assert req.loc[0, "last_arrival"] == pytest.approx(0.1 + 12 * 0.08)
    assert np.isnan(req.loc[3, "first_arrival"])
    assert list(req["anomalies"]) == [0, 1, 0, 0]
    assert list(req["playback_state"]) == ["PAUSED", None, None, None]
    assert list(req["playback_states"]) == [2, 0, 0, 0]
    assert req.loc[2, "status_at"] == pytest.approx(2.1) and bool(req.loc[2, "ended"])
    assert not tl.complete
    s = tl.summary()
    assert s["interrupted"] == 1 and s["anomalies"] == 2 and s["complete"] is False
    assert "1 interrupted" in repr(tl)
    history = tl.request_history
    assert list(history["status"]) == ["interrupted", "open"]
    states = tl.playback_states
    assert list(states["state"]) == ["PLAYING", "PAUSED"]
    np.testing.assert_allclose(states["played"], [0.04, 0.48])  # seconds
    assert list(tl.anomalies["req_id"]) == ["r2", "ghost"]


def test_open_status_becomes_complete_at_the_end_frame():
    tl = Timeline(25)
    tl.set_request_status("r", "open", at=0.0)
    assert tl.request_status("r") == "open" and not tl.complete
    tl.add_animation(_kf(1), req_id="r", arrival=0.1, end=True)
    assert tl.request_status("r") == "complete" and tl.complete


@pytest.mark.parametrize("status", ["preempted", "failed"])
def test_ended_but_otherwise_marked_is_not_complete(status):
    tl = make_run()
    tl.set_request_status("r1", status)
    assert not tl.complete and tl.summary()[status] == 1


def test_unknown_status_is_refused():
    with pytest.raises(ValueError, match="unknown request status 'done'; accepted: 'open', 'complete'"):
        Timeline().set_request_status("r", "done")


def test_sent_audio_is_the_timelines_audio():
    tl = Timeline(25, sample_rate=8000)
    assert tl.audio is None
    tl.add_audio_chunk("r", 0.0, 3, pcm=np.array([1, 2, 3], dtype=np.int16).tobytes())
    tl.add_audio_chunk("r", 0.1, 2, pcm=np.array([4, 5], dtype=np.int16))
    np.testing.assert_array_equal(tl.audio, [1, 2, 3, 4, 5])
    assert tl.audio.dtype == np.int16
    with pytest.raises(ValueError, match="pcm holds 1 samples, n_samples says 2"):
        tl.add_audio_chunk("r", 0.2, 2, pcm=b"\x00\x00")
    # an explicitly set audio wins (a caller attaching the whole clip)
    tl.audio = np.zeros(10, dtype=np.int16)
    assert tl.audio.shape == (10,)
    tl.audio = None
    np.testing.assert_array_equal(tl.audio, [1, 2, 3, 4, 5])


def _naive_audio_complete_at(tl: Timeline) -> np.ndarray:
    """The definition, request by request and frame by frame."""
    out = np.full(tl.n_keyframes, np.nan)
    for i, (req, k) in enumerate(zip(tl.keyframe_req, tl.keyframe_index)):
        chunks = np.flatnonzero(tl.chunk_req == req)
        total = int(tl.chunk_samples[chunks].sum())
        end = min(int(np.floor((k + 1) * tl.sample_rate / tl.fps)), total)
        if end <= 0:
            continue
        reached = np.cumsum(tl.chunk_samples[chunks])
        out[i] = tl.chunk_sent_at[chunks[np.searchsorted(reached, end)]]
    return out


def test_audio_complete_at_matches_its_definition_on_interleaved_requests():
    rng = np.random.default_rng(3)
    tl = Timeline(25, sample_rate=16000)
    t = 0.0
    for _ in range(300):  # chunks and keyframes of five requests, interleaved at random
        req = f"r{rng.integers(5)}"
        t += float(rng.uniform(0, 0.05))
        if rng.random() < 0.6:
            tl.add_audio_chunk(req, t, int(rng.choice([0, 160, 640, 1000])))
        else:
            tl.add_animation(_kf(int(rng.integers(0, 3))), req_id=req, arrival=t, end=False)
    tl.add_animation(_kf(2), req_id="silent", arrival=t + 1, end=True)  # no audio at all
    np.testing.assert_array_equal(tl.audio_complete_at, _naive_audio_complete_at(tl))
    assert np.isnan(tl.audio_complete_at[-2:]).all()


def test_saw_end_follows_end_messages_only():
    import numpy as np

    from avatar_nb import Timeline
    from avatar_nb.flame import FIXED_COLUMNS

    tl = Timeline()
    kf = np.zeros((2, FIXED_COLUMNS + 3), np.float32)
    tl.add_animation(kf, req_id="a", arrival=0.1, end=False)
    assert not tl.saw_end("a") and not tl.saw_end("unknown")
    tl.add_animation(kf[:0], req_id="a", arrival=0.2, end=True)
    assert tl.saw_end("a")


def _every_log_run() -> Timeline:
    tl = make_run()
    tl.meta.update(pacing="capture", clip="a.wav")
    tl.set_request_status("r1", "interrupted", at=1.2)
    tl.set_request_status("r2", "open")  # at=None: NaN
    tl.add_playback_state("r1", "PLAYING", 40, "", at=0.15)
    tl.add_anomaly("zz", "unknown_request", "frames of a request never sent")
    tl.add_error("connectionClosed: dropped (code 1006)")
    return tl


def test_restore_of_a_snapshot_equals_the_original():
    import pandas as pd

    from avatar_nb.timeline import TimelineRecord

    for tl in (make_run(), _every_log_run(), Timeline(30)):
        record = tl.snapshot()
        assert isinstance(record, TimelineRecord)
        back = Timeline.restore(record)
        assert back.snapshot() == record
        np.testing.assert_array_equal(back.keyframes, tl.keyframes)
        assert back.keyframes.dtype == tl.keyframes.dtype
        if tl.audio is not None:
            np.testing.assert_array_equal(back.audio, tl.audio)
        assert (back.req_ids, back.errors, back.meta, back.fps, back.sample_rate) == (
            tl.req_ids, tl.errors, tl.meta, tl.fps, tl.sample_rate
        )
        for name in ("message_arrival", "message_keyframes", "message_req", "message_end", "chunk_sent_at",
                     "chunk_samples", "chunk_req", "media_time", "latency", "lateness"):
            np.testing.assert_array_equal(getattr(back, name), getattr(tl, name), err_msg=name)
        assert [back.request_status(r) for r in back.req_ids] == [tl.request_status(r) for r in tl.req_ids]
        for table in ("requests", "request_history", "playback_states", "anomalies"):
            pd.testing.assert_frame_equal(getattr(back, table), getattr(tl, table), obj=table)
        assert back.summary() == tl.summary()


def test_snapshot_is_plain_read_only_and_detached():
    tl = _every_log_run()
    record = tl.snapshot()
    assert record.status_log == (("r1", "interrupted", 1.2), record.status_log[1])
    assert math.isnan(record.status_log[1][2])
    assert record.anomalies[0][:3] == ("zz", "unknown_request", "frames of a request never sent")
    assert record.playback == (("r1", "PLAYING", 0.04, "", 0.15),)
    assert record.ended == (0, 1) and record.width == 70 and record.audio_set
    for name in ("keyframes", "message_arrival", "chunk_samples", "audio"):
        assert not getattr(record, name).flags.writeable, name
    with pytest.raises(AttributeError):
        record.fps = 30  # frozen
    # the record does not change when the timeline grows, nor the timeline when a restored one does
    tl.add_animation(_kf(1), req_id="r3", arrival=9.0, end=True)
    tl.meta["more"] = 1
    assert record.keyframes.shape[0] == 38 and record.req_ids == ("r1", "r2") and "more" not in record.meta
    back = Timeline.restore(record)
    back.add_anomaly("r1", "after_end", "x")
    back.audio[:1] = 5
    assert len(record.anomalies) == 1 and record.audio[0] == 0
    assert record != tl.snapshot() and record == Timeline.restore(record).snapshot()


def test_channels_is_read_from_flame_with_a_deprecation_warning():
    import avatar_nb.timeline as timeline_module
    from avatar_nb import flame

    assert "CHANNELS" not in timeline_module.__all__ and "SCALAR_CHANNELS" not in timeline_module.__all__
    with pytest.warns(DeprecationWarning, match="avatar_nb.flame"):
        assert timeline_module.CHANNELS is flame.CHANNELS
    with pytest.warns(DeprecationWarning, match="avatar_nb.flame"):
        from avatar_nb.timeline import SCALAR_CHANNELS
    assert SCALAR_CHANNELS is flame.SCALAR_CHANNELS
    with pytest.raises(AttributeError):
        _ = timeline_module.NOT_A_NAME
