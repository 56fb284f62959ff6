"""Timeline files: save and load round-trip exactly; older formats are read, foreign files refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar_nb.timeline import Timeline

from .test_timeline import _kf, make_run

DATA = Path(__file__).parent / "data"


def test_save_load_round_trip_exact(tmp_path):
    tl = make_run()
    tl.meta["service"] = "local"
    tl.add_error("connectionClosed: dropped (code 1006)")
    path = tl.save(tmp_path / "run")
    assert path.suffix == ".npz"
    back = Timeline.load(path)
    np.testing.assert_array_equal(back.keyframes, tl.keyframes)
    assert back.keyframes.dtype == np.float32
    for name in (
        "message_arrival",
        "message_keyframes",
        "message_req",
        "message_end",
        "chunk_sent_at",
        "chunk_samples",
        "chunk_req",
        "media_time",
        "arrival",
        "lateness",
    ):
        np.testing.assert_array_equal(getattr(back, name), getattr(tl, name), err_msg=name)
    np.testing.assert_array_equal(back.audio, tl.audio)
    assert back.req_ids == tl.req_ids
    assert back.errors == tl.errors
    assert back.meta == {"service": "local"}
    assert back.fps == tl.fps and back.sample_rate == tl.sample_rate
    assert back.complete == tl.complete
    assert back.summary() == tl.summary()
    # a loaded timeline keeps growing like a fresh one
    back.add_animation(_kf(1), req_id="r9", arrival=10.0, end=True)
    assert back.n_keyframes == tl.n_keyframes + 1


def test_load_rejects_foreign_npz(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, a=np.zeros(3))
    with pytest.raises(ValueError, match="not an avatar_nb timeline"):
        Timeline.load(p)


def test_save_load_keeps_requests_statuses_and_sent_audio(tmp_path):
    tl = Timeline(25, sample_rate=16000, meta={"pacing": "capture"})
    tl.add_audio_chunk("a", 0.04, 640, pcm=np.arange(640, dtype=np.int16))
    tl.add_animation(_kf(1), req_id="a", arrival=0.1, end=False)
    tl.set_request_status("a", "interrupted", at=0.12)
    tl.add_playback_state("a", "PLAYING", 40, "", at=0.15)
    tl.add_anomaly("a", "after_end", "x")
    back = Timeline.load(tl.save(tmp_path / "v2.npz"))
    import pandas as pd

    pd.testing.assert_frame_equal(back.requests, tl.requests)
    pd.testing.assert_frame_equal(back.playback_states, tl.playback_states)
    pd.testing.assert_frame_equal(back.anomalies, tl.anomalies)
    pd.testing.assert_frame_equal(back.request_history, tl.request_history)
    np.testing.assert_array_equal(back.audio, tl.audio)
    np.testing.assert_array_equal(back.latency, tl.latency)
    assert back.summary() == tl.summary()
    back.add_audio_chunk("b", 0.2, 2, pcm=b"\x01\x00\x02\x00")  # still the sent audio, not a set one
    assert back.audio.shape == (642,)


def test_reads_format_1_files(tmp_path):
    """A file written before statuses and pacing existed: read as playback pacing."""
    import json

    header = {
        "format": 1, "fps": 25.0, "sample_rate": 16000, "meta": {"realtime": True}, "errors": [],
        "req_ids": ["r"], "width": 70, "ended": [0],
    }
    path = tmp_path / "old.npz"
    np.savez_compressed(
        path,
        header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
        keyframes=_kf(2),
        message_arrival=np.array([0.1]),
        message_keyframes=np.array([2], dtype=np.int32),
        message_req=np.array([0], dtype=np.int32),
        message_end=np.array([True]),
        chunk_sent_at=np.array([0.0]),
        chunk_samples=np.array([1280]),
        chunk_req=np.array([0], dtype=np.int32),
        audio=np.zeros(1280, dtype=np.int16),
    )
    tl = Timeline.load(path)
    assert tl.pacing == "playback" and tl.complete and tl.n_keyframes == 2
    assert list(tl.requests["status"]) == ["complete"]
    np.testing.assert_allclose(tl.lateness, [0.1, 0.06])
    np.testing.assert_allclose(tl.latency, [0.1, 0.1])
    assert tl.audio.shape == (1280,)
    bad = dict(header, format=7)
    np.savez(tmp_path / "new.npz", header=np.frombuffer(json.dumps(bad).encode(), dtype=np.uint8))
    with pytest.raises(ValueError, match="timeline format 7; this version reads 1, 2"):
        Timeline.load(tmp_path / "new.npz")


def _sent_audio_run() -> Timeline:
    """The run saved in ``tests/data/timeline_format2_sent_audio.npz`` (sent audio, every log)."""
    tl = Timeline(25, sample_rate=16000, meta={"pacing": "capture", "service": "local", "clip": "a.wav"})
    tl.add_audio_chunk("a", 0.04, 640, pcm=np.arange(640, dtype=np.int16))
    tl.add_audio_chunk("a", 0.08, 640, pcm=-np.arange(640, dtype=np.int16))
    tl.add_animation(_kf(2, e=10), req_id="a", arrival=0.1, end=False)
    tl.add_animation(_kf(0, e=10), req_id="a", arrival=0.11, end=False)
    tl.set_request_status("a", "interrupted", at=0.12)
    tl.add_playback_state("a", "PLAYING", 40, "", at=0.15)
    tl.add_playback_state("a", "PAUSED", 80, "interrupt", at=0.2)
    tl.add_anomaly("a", "after_end", "x")
    tl.add_audio_chunk("b", 0.2, 320, pcm=np.full(320, 7, dtype=np.int16))
    tl.add_animation(_kf(1, e=10), req_id="b", arrival=0.3, end=True)
    tl.set_request_status("b", "open")
    tl.add_anomaly("zz", "unknown_request", "frames of a request never sent", at=0.31)
    tl.add_error("connectionClosed: dropped (code 1006)")
    return tl


@pytest.mark.parametrize(
    ("name", "build"),
    [("timeline_format2_audio_set.npz", make_run), ("timeline_format2_sent_audio.npz", _sent_audio_run)],
)
def test_files_saved_by_format_2_load_identically(name, build):
    """Files written by the format-2 writer of commit 9e8a057 (kept in tests/data) load as
    the timeline that was saved: the same arrays, tables, summary and growth."""
    import pandas as pd

    tl = build()
    back = Timeline.load(DATA / name)
    for attr in (
        "keyframes", "message_arrival", "message_keyframes", "message_req", "message_end",
        "chunk_sent_at", "chunk_samples", "chunk_req", "media_time", "arrival", "latency", "lateness", "audio",
    ):
        np.testing.assert_array_equal(getattr(back, attr), getattr(tl, attr), err_msg=attr)
        assert getattr(back, attr).dtype == getattr(tl, attr).dtype, attr
    assert (back.req_ids, back.errors, back.meta) == (tl.req_ids, tl.errors, tl.meta)
    assert (back.fps, back.sample_rate, back.n_expression) == (tl.fps, tl.sample_rate, tl.n_expression)
    for table in ("requests", "request_history", "playback_states", "anomalies"):
        pd.testing.assert_frame_equal(getattr(back, table), getattr(tl, table), obj=table)
    for per in ("keyframe", "message", "chunk"):
        pd.testing.assert_frame_equal(back.to_pandas(per), tl.to_pandas(per), obj=per)
    assert back.summary() == tl.summary()
    assert [back.saw_end(r) for r in back.req_ids] == [tl.saw_end(r) for r in tl.req_ids]
    # both grow the same way: set audio stays set, sent audio keeps growing
    for t in (tl, back):
        t.add_audio_chunk("c", 1.0, 2, pcm=b"\x01\x00\x02\x00")
        t.add_animation(_kf(1, e=tl.n_expression), req_id="c", arrival=1.1, end=True)
    np.testing.assert_array_equal(back.audio, tl.audio)
    assert back.summary() == tl.summary()
