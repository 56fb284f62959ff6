"""Video export speed: seconds of video encoded per second of wall time, against a naive renderer.

    python benchmarks/bench_video.py [--seconds 20] [--naive-seconds 4] [--size 640x480]

Both paths write the same MP4 (H.264 + AAC through PyAV, same encoder settings) of the
same Timeline: the local service's animation of speech-like audio, 25 fps, 640x480.
- avatar_nb: ``Timeline.to_video`` (frames drawn with numpy and Pillow);
- naive, measured in the same run: a new matplotlib figure per frame (the face of
  ``plots.face`` above a waveform panel with a playhead and the time and keyframe index
  in its title), drawn on an Agg canvas and handed to the same encoder.
The naive renderer is timed on a shorter stretch (``--naive-seconds``) because it is
slow; both figures are rates (video seconds per wall second), so they compare directly.
Targets: avatar_nb >= 5x real time, and >= 10x the naive renderer. Best of
``--repeat`` runs each (the machines are shared).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from fractions import Fraction

import numpy as np

from avatar_nb import animate_sync, speech_like
from avatar_nb.timeline import Timeline

RATE = 16000


def run_timeline(seconds: float) -> Timeline:
    return animate_sync(speech_like(seconds, RATE, seed=3), RATE, pacing="fast")


def head(tl: Timeline, seconds: float) -> Timeline:
    """The first ``seconds`` of a one-utterance Timeline, audio included."""
    n = int(seconds * tl.fps)
    out = Timeline(tl.fps, sample_rate=tl.sample_rate, audio=tl.audio[: int(n / tl.fps * tl.sample_rate)])
    out.add_audio_chunk("r", 0.0, int(n / tl.fps * tl.sample_rate))
    out.add_animation(tl.keyframes[:n], req_id="r", arrival=0.1, end=True)
    return out


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, every thread) of ``fn(*args)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def ours(tl: Timeline, size: tuple[int, int], path: str) -> None:
    tl.to_video(path, size=size)


def naive(tl: Timeline, size: tuple[int, int], path: str) -> None:
    """A matplotlib figure per frame: face + waveform with a playhead, encoded like ours."""
    import av
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from avatar_nb import plots

    w, h = size
    audio = tl.audio
    fps = tl.fps
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(path, "w", format="mp4") as container:
        vs = container.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": "23", "preset": "superfast"}
        aus = container.add_stream("aac", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(audio[None, :], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, 0, Fraction(1, RATE)
        t = np.arange(audio.size) / RATE
        for i, row in enumerate(tl.keyframes):
            fig = Figure(figsize=(w / 100, h / 100), dpi=100)
            canvas = FigureCanvasAgg(fig)
            face_ax = fig.add_axes((0.0, 0.2, 1.0, 0.8))
            plots.face(row, ax=face_ax)
            wave_ax = fig.add_axes((0.05, 0.03, 0.9, 0.14))
            wave_ax.plot(t, audio, linewidth=0.5)
            wave_ax.axvline(i / fps, color="r")
            wave_ax.set_title(f"{i / fps:.2f} s  keyframe {i} / {tl.n_keyframes}", fontsize=8)
            canvas.draw()
            rgb = np.asarray(canvas.buffer_rgba())[:, :, :3]
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            vf.pts = i
            container.mux(vs.encode(vf))
        container.mux(aus.encode(frame))
        container.mux(aus.encode(None))
        container.mux(vs.encode(None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="video length for avatar_nb (s)")
    parser.add_argument("--naive-seconds", type=float, default=4.0, help="video length for the naive renderer (s)")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    full = run_timeline(args.seconds)
    short = head(full, min(args.naive_seconds, args.seconds))
    with tempfile.TemporaryDirectory() as tmp:
        ours_path, naive_path = os.path.join(tmp, "ours.mp4"), os.path.join(tmp, "naive.mp4")
        ours_s, ours_cpu = min(timed(ours, full, size, ours_path) for _ in range(args.repeat))
        naive_s, naive_cpu = min(timed(naive, short, size, naive_path) for _ in range(args.repeat))
        ours_mb = os.path.getsize(ours_path) / 1e6
    ours_rate = full.duration / ours_s
    naive_rate = short.duration / naive_s
    print(f"video {size[0]}x{size[1]} @ {full.fps:g} fps, H.264 + AAC; best of {args.repeat}; machine load "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"avatar_nb  {full.duration:6.1f} s of video in {ours_s:6.2f} s wall: {ours_rate:6.1f}x real time "
          f"({full.n_keyframes / ours_s:.0f} frames/s, {ours_cpu / full.duration:.3f} CPU-s per video s, "
          f"{ours_mb:.2f} MB)  target >= 5x: {'ok' if ours_rate >= 5 else 'BELOW TARGET'}")
    print(f"naive      {short.duration:6.1f} s of video in {naive_s:6.2f} s wall: {naive_rate:6.2f}x real time "
          f"({short.n_keyframes / naive_s:.1f} frames/s, {naive_cpu / short.duration:.3f} CPU-s per video s; "
          "a matplotlib figure per frame)")
    ratio = ours_rate / naive_rate
    cpu_ratio = (naive_cpu / short.duration) / (ours_cpu / full.duration)
    print(f"ratio      {ratio:6.1f}x the naive renderer in wall time, {cpu_ratio:.1f}x in CPU time  "
          f"target >= 10x: {'ok' if ratio >= 10 else 'BELOW TARGET'}")

if __name__ == "__main__":
    main()
