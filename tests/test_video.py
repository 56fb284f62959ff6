"""Video export: files read back with PyAV, frames measured in pixels, audio aligned to keyframes."""

from __future__ import annotations

import av
import numpy as np
import pytest

from avatar_nb import LocalService, speech_like, video
from avatar_nb.flame import CHANNELS, SCALAR_CHANNELS
from avatar_nb.timeline import Timeline

FPS = 25.0
RATE = 16000
MOUTH = np.array([139, 45, 45])
EYE_WHITE = np.array([255, 255, 255])


def clip_timeline(n: int = 75, *, open_at: tuple[int, ...] = (), clicks: tuple[int, ...] = (), e: int = 10,
                  audio: bool = True) -> Timeline:
    """``n`` keyframes at 25 fps, the mouth open only at keyframes ``open_at``; the audio is
    silent but for a 5 ms click 12.5 ms into each frame of ``clicks``."""
    tl = Timeline(FPS, sample_rate=RATE)
    pcm = np.zeros(int(round(n / FPS * RATE)), np.int16)
    for k in clicks:
        start = int(round((k + 0.3125) / FPS * RATE))
        pcm[start : start + 80] = 20000
    per_frame = int(RATE / FPS)
    for i in range(n):
        kf = np.zeros((1, 20 + e), np.float32)
        kf[0, SCALAR_CHANNELS["jaw_open"]] = 0.3 if i in open_at else 0.0
        tl.add_audio_chunk("r0", i / FPS, per_frame, pcm[i * per_frame : (i + 1) * per_frame] if audio else None)
        tl.add_animation(kf, req_id="r0", arrival=i / FPS + 0.08, end=i == n - 1)
    return tl


def mouth_pixels(rgb: np.ndarray) -> int:
    """Pixels of the mouth's colour in the face area (nothing else is that red)."""
    face = rgb[: rgb.shape[0] * 4 // 5].astype(np.int32)
    return int((np.abs(face - MOUTH).sum(axis=-1) < 60).sum())


def decoded(path):
    """(video frames as [(time s, rgb)], audio as (float samples, start time s)) from the file."""
    with av.open(str(path)) as container:
        frames = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return frames, None
        blocks, start = [], None
        for f in container.decode(audio=0):
            if start is None:
                start = float(f.pts * f.time_base)
            blocks.append(f.to_ndarray().reshape(-1))
    return frames, (np.concatenate(blocks), start)


def packet_seconds(path) -> float:
    """Where the audio ends on the file's timeline, from its packets (the MP4 edit list
    puts the encoder's priming before 0 and gives the last packet only the samples that
    are audio, not the frame's padding)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        ends = [p.pts + p.duration for p in container.demux(stream) if p.pts is not None]
        return float(max(ends) * stream.time_base)


def test_streams_durations_and_frame_count(tmp_path):
    tl = clip_timeline(81)  # 51,840 samples: not a whole number of AAC frames
    result = tl.to_video(tmp_path / "run.mp4", size=(320, 240))
    assert result.path == tmp_path / "run.mp4" and result.frames == 81 and result.has_audio
    with av.open(str(result.path)) as container:
        (vs,) = container.streams.video
        (aus,) = container.streams.audio
        assert vs.codec_context.name == "h264" and aus.codec_context.name == "aac"
        assert (vs.codec_context.width, vs.codec_context.height) == (320, 240)
        assert vs.average_rate == 25
        video_seconds = float(vs.duration * vs.time_base)
        audio_seconds = float(aus.duration * aus.time_base)
    assert video_seconds == pytest.approx(81 / FPS, abs=1 / FPS)
    frames, (samples, start) = decoded(result.path)
    assert len(frames) == 81
    assert [t for t, _ in frames] == pytest.approx([i / FPS for i in range(81)])
    assert start == pytest.approx(0.0, abs=1e-6)  # the encoder's priming samples are cut by the edit list
    assert audio_seconds == pytest.approx(tl.audio.shape[0] / RATE, abs=0.03)
    assert audio_seconds == pytest.approx(packet_seconds(result.path), abs=1e-9)
    # the decoder hands out whole AAC frames; the file trims the last one to the audio's end
    assert tl.audio.shape[0] <= samples.shape[0] < tl.audio.shape[0] + 1024
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("keyframes", [(12,), (37, 51)])
def test_mouth_opens_in_the_frame_on_screen_when_the_click_plays(tmp_path, keyframes):
    tl = clip_timeline(75, open_at=keyframes, clicks=keyframes)
    path = tl.to_video(tmp_path / "click.mp4", size=(320, 240)).path
    frames, (samples, start) = decoded(path)
    counts = np.array([mouth_pixels(rgb) for _, rgb in frames])
    opened = set(np.flatnonzero(counts > 500).tolist())  # an open mouth is ~1300 px here, a closed one < 100
    assert opened == set(keyframes)  # not one frame earlier or later
    # where the clicks are in the decoded audio, and which frame is on screen then
    loud = np.abs(samples) > 0.3
    onsets = np.flatnonzero(loud & ~np.concatenate(([False], loud[:-1])))
    click_times = [start + i / RATE for i in onsets if i == onsets[0] or i - onsets[onsets < i].max() > RATE // 10]
    assert len(click_times) == len(keyframes)
    times = np.array([t for t, _ in frames])
    for k, t in zip(keyframes, click_times):
        on_screen = int(np.searchsorted(times, t, side="right")) - 1
        assert on_screen == k and counts[on_screen] > 500
        assert counts[on_screen - 1] < 100 and counts[on_screen + 1] < 100


def test_what_moves_jaw_eyelids_gaze_and_head():
    row = np.zeros((1, 30), np.float32)

    def frame(**columns) -> np.ndarray:
        tl = Timeline(FPS)
        kf = row.copy()
        for index, value in columns.items():
            kf[0, int(index[1:])] = value
        tl.add_animation(kf, req_id="r", arrival=0.1, end=True)
        (rgb,) = video.render_frames(tl, size=(320, 240), panels=("face",))
        return rgb.astype(np.int32)

    def whites(rgb):
        return int((np.abs(rgb - EYE_WHITE).sum(axis=-1) < 10).sum())

    def pupil_x(rgb):
        mask = (rgb.sum(axis=-1) < 150)
        return float(np.nonzero(mask)[1].mean())

    rest = frame()
    assert mouth_pixels(frame(**{f"c{SCALAR_CHANNELS['jaw_open']}": 0.3})) > 5 * mouth_pixels(rest)
    both = {f"c{SCALAR_CHANNELS['eyelid_left']}": 1.0, f"c{SCALAR_CHANNELS['eyelid_right']}": 1.0}
    assert whites(frame(**both)) < 0.1 * whites(rest)
    one = whites(frame(**{f"c{SCALAR_CHANNELS['eyelid_left']}": 1.0}))
    assert 0.3 * whites(rest) < one < 0.7 * whites(rest)
    eye = CHANNELS["eye_pose"].start
    assert pupil_x(frame(**{f"c{eye + 1}": 0.2, f"c{eye + 4}": 0.2})) > pupil_x(rest) + 3
    # head yaw moves the face; head roll tilts it (the mouth's centre leaves the midline)
    skin = np.array([242, 211, 177])

    def centre(rgb, colour):
        ys, xs = np.nonzero(np.abs(rgb - colour).sum(axis=-1) < 30)
        return xs.mean(), ys.mean()

    assert centre(frame(**{f"c{SCALAR_CHANNELS['head_yaw']}": 0.1}), skin)[0] > centre(rest, skin)[0] + 5
    jaw = {f"c{SCALAR_CHANNELS['jaw_open']}": 0.3}
    tilted = frame(**jaw, **{f"c{SCALAR_CHANNELS['head_roll']}": 0.1})
    assert abs(centre(tilted, MOUTH)[0] - centre(frame(**jaw), MOUTH)[0]) > 5


def test_waveform_strip_shows_time_keyframe_and_playhead():
    tl = clip_timeline(50, clicks=(10,))
    frames = list(video.render_frames(tl, size=(320, 240)))
    assert len(frames) == 50 and frames[0].shape == (240, 320, 3)
    strip = [f[200:].astype(np.int32) for f in frames]
    red = [np.flatnonzero((np.abs(s - [214, 39, 40]).sum(axis=-1) < 30).any(axis=0)) for s in strip]
    playhead_x = [r.mean() for r in red]
    assert np.all(np.diff(playhead_x) > 0)  # the playhead moves right through a short clip
    # the text line differs from frame to frame (time and keyframe index)
    assert not np.array_equal(frames[3][192:210, :200], frames[4][192:210, :200])
    with pytest.raises(ValueError, match="accepted panels"):
        next(video.render_frames(tl, panels=("face", "spectrogram")))
    with pytest.raises(ValueError, match="even"):
        next(video.render_frames(tl, size=(321, 240)))


def test_waveform_strip_scales_to_a_full_scale_negative_peak():
    """A clip whose loudest sample is -32768 is scaled as one whose loudest is +32767."""

    def wave_pixels(spike: int) -> int:
        tl = clip_timeline(25)
        pcm = tl.audio.copy()
        pcm[:] = (np.sin(np.arange(pcm.size) * 0.05) * 50).astype(np.int16)
        pcm[pcm.size // 2] = spike
        tl.audio = pcm
        strip = next(video.render_frames(tl, size=(320, 240)))[200:].astype(np.int32)
        return int((np.abs(strip - [31, 119, 180]).sum(axis=-1) < 30).sum())

    low, high = wave_pixels(-32768), wave_pixels(32767)
    assert abs(low - high) <= 40  # the spike's own column points the other way; nothing else differs


def test_video_of_a_session_and_of_a_timeline_loaded_from_disk(tmp_path):
    from avatar_nb import AvatarSession
    from avatar_nb.config import config_from_kwargs

    pcm = (speech_like(2.0, RATE) * 32767).astype("<i2").tobytes()

    async def run() -> Timeline:
        async with LocalService(realtime=False) as svc:
            session = AvatarSession(config_from_kwargs(svc.session_kwargs(sample_rate=RATE)))
            async with session:
                req = await session.stream(pcm, realtime=False)
                await session.wait_for_end(req, timeout=30)
            return session.timeline

    import asyncio

    tl = asyncio.run(run())
    assert tl.audio is not None and tl.audio.shape[0] == len(pcm) // 2  # the session attached what it sent
    live = tl.to_video(tmp_path / "live.mp4", size=(256, 192))
    assert live.frames == tl.n_keyframes and live.has_audio
    saved = Timeline.load(tl.save(tmp_path / "run.npz"))
    again = saved.to_video(tmp_path / "again.mp4", size=(256, 192))
    a, (sa, _) = decoded(live.path)
    b, (sb, _) = decoded(again.path)
    assert len(a) == len(b) == tl.n_keyframes
    assert sa.shape == sb.shape
    assert packet_seconds(live.path) == pytest.approx(2.0, abs=0.03) == packet_seconds(again.path)
    counts = [mouth_pixels(rgb) for _, rgb in b]
    assert max(counts) > 3 * min(counts)  # the mouth moves with the speech


def test_inline_display_and_path_use(tmp_path):
    import os

    result = clip_timeline(10).to_video(tmp_path / "x.mp4", size=(128, 96))
    html = result._repr_html_()
    assert html.startswith("<video controls") and "data:video/mp4;base64," in html
    assert os.fspath(result) == str(tmp_path / "x.mp4")
    assert "10 frames @ 25 fps" in repr(result) and result.duration == pytest.approx(0.4)


def test_a_long_export_shows_its_frames_and_progress_false_none(tmp_path, monkeypatch, capsys):
    from avatar_nb import progress

    monkeypatch.setattr(progress, "SHOW_AFTER_SECONDS", 0.0)  # a test clip is shorter than the wait
    clip_timeline(10).to_video(tmp_path / "x.mp4", size=(128, 96))
    err = capsys.readouterr().err
    assert "writing x.mp4" in err and "/10 [" in err  # the bar goes when the file is done
    clip_timeline(10).to_video(tmp_path / "y.mp4", size=(128, 96), progress=False)
    assert capsys.readouterr().err == ""


def test_empty_timeline_is_refused_and_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="no keyframes"):
        Timeline().to_video(tmp_path / "empty.mp4")
    assert list(tmp_path.iterdir()) == []


def test_timeline_without_audio_gives_video_only_with_a_note(tmp_path):
    tl = clip_timeline(20, audio=False)
    assert tl.audio is None
    with pytest.warns(UserWarning, match="no audio: silent.mp4 is video only"):
        result = tl.to_video(tmp_path / "silent.mp4", size=(128, 96))
    assert not result.has_audio and "video only" in result.note and "video only" in repr(result)
    with av.open(str(result.path)) as container:
        assert len(container.streams.video) == 1 and not container.streams.audio
        assert sum(1 for _ in container.decode(video=0)) == 20
    assert "video only" in result._repr_html_()


def test_bad_paths_give_clear_errors_and_no_partial_file(tmp_path):
    tl = clip_timeline(5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tl.to_video(tmp_path / "missing" / "x.mp4")
    with pytest.raises(ValueError, match="ending in .mp4"):
        tl.to_video(tmp_path / "x.avi")
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        tl.to_video(tmp_path / "dir.mp4")
    with pytest.raises(OSError, match="cannot write the video to /proc/x.mp4"):
        tl.to_video("/proc/x.mp4")
    with pytest.raises(ValueError, match=r"size must be even"):
        tl.to_video(tmp_path / "x.mp4", size=(100, 7))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.mp4"]


def test_a_failure_while_encoding_removes_the_partial_file(tmp_path, monkeypatch):
    tl = clip_timeline(30)
    real = video._draw_frames

    def failing(*args, **kwargs):
        for i, frame in enumerate(real(*args, **kwargs)):
            if i == 20:
                raise RuntimeError("renderer broke")
            yield frame

    monkeypatch.setattr(video, "_draw_frames", failing)
    (tmp_path / "keep.mp4").write_bytes(b"old")
    with pytest.raises(RuntimeError, match="renderer broke"):
        tl.to_video(tmp_path / "keep.mp4", size=(128, 96))
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]
    assert (tmp_path / "keep.mp4").read_bytes() == b"old"  # an existing file is replaced only by a whole video


def test_frames_follow_media_time_across_utterances():
    tl = Timeline(FPS, sample_rate=RATE)
    for r, n in enumerate((10, 5)):
        for i in range(n):
            tl.add_audio_chunk(f"r{r}", 0.0, int(RATE / FPS))
            tl.add_animation(np.full((1, 20), i, np.float32), req_id=f"r{r}", arrival=0.1, end=i == n - 1)
    np.testing.assert_array_equal(video.frame_keyframes(tl), np.arange(15))


def test_cli_run_writes_a_video_per_clip_after_streaming(tmp_path, capsys):
    import csv

    from avatar_nb.audio import write_wav
    from avatar_nb.cli import main

    write_wav(tmp_path / "hello.wav", speech_like(1.2, RATE, seed=4), RATE)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "hello.wav"), "--out", str(out), "--fast", "--no-plot", "--video", "--quiet"]) == 0
    video_path = out / "hello.mp4"
    with av.open(str(video_path)) as container:
        assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == Timeline.load(out / "hello.npz").n_keyframes
    with open(out / "summary.csv") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["mp4"].endswith("hello.mp4")
    assert main(["run", str(tmp_path / "hello.wav"), "--out", str(tmp_path / "o2"), "--fast", "--no-plot",
                 "--quiet"]) == 0
    assert not list((tmp_path / "o2").glob("*.mp4"))  # only when asked


def test_a_video_too_large_to_embed_is_linked(tmp_path, monkeypatch):
    result = clip_timeline(10).to_video(tmp_path / "big.mp4", size=(128, 96))
    monkeypatch.setattr(video, "_EMBED_LIMIT", 100)
    monkeypatch.chdir(tmp_path)
    html = result._repr_html_()
    assert "base64" not in html and 'src="big.mp4"' in html and "too large to embed" in html


def test_face_only_frames_redraw_their_text_line():
    tl = clip_timeline(30)
    frames = list(video.render_frames(tl, size=(320, 240), panels="face"))
    assert frames[0].shape == (240, 320, 3)
    ink = [int((f[:30].astype(np.int32).sum(axis=-1) < 300).sum()) for f in frames]
    assert ink[0] > 20  # the text is there
    assert max(ink) < 1.3 * min(ink)  # and earlier frames' text does not pile up
    assert not np.array_equal(frames[10][:30], frames[20][:30])
