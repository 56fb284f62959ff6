"""A run as a video: an MP4 (H.264 video, AAC audio) with the face, a waveform strip and the sound.

:func:`write_video` (also :meth:`avatar_nb.Timeline.to_video`) renders one video frame per
keyframe period of the Timeline and muxes the run's audio so that keyframe ``k`` is on
screen while the audio from ``k / fps`` to ``(k + 1) / fps`` plays.

What a viewer sees move, from the FLAME channels (``avatar_nb.flame``):

- the jaw: the mouth opens with ``jaw_open`` (the chin drops with it);
- the eyelids: each eye closes with its ``eye_lid`` value (a blink closes both);
- the gaze: the pupils follow each eye's ``eye_pose`` (pitch up/down, yaw left/right);
- the head pose: roll tilts the whole face, yaw and pitch move it, and the features
  shift more than the outline, so a turn reads as a turn;
- the brows: raised by the first expression coefficient.

Below the face, an optional strip shows the waveform around the playhead with the
current time and keyframe index.

Frames are drawn with numpy and Pillow (the face as anti-aliased polygons, the strip
as a numpy mask over a waveform envelope computed once for the whole run), never
through a matplotlib figure per frame: that would cost tens of milliseconds a frame.
Encoding is PyAV, the FFmpeg bindings whose PyPI wheels bundle FFmpeg's libraries
with libx264 and the native AAC encoder, so nothing is needed besides ``pip install``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .face import VIEW, Oval, face_geometry, face_pose

if TYPE_CHECKING:
    from .timeline import Timeline

__all__ = ["PANELS", "Video", "face_pose", "frame_keyframes", "render_frames", "write_video"]

PANELS: tuple[str, ...] = ("face", "waveform")
"""What a video frame can show: the face, and the waveform strip (with time and keyframe index) below it."""

_MIN_SIZE = 64
_EMBED_LIMIT = 50_000_000  # bytes of MP4 embedded inline in a notebook; larger files are linked
_STRIP_WINDOW = 6.0  # seconds of audio shown in the waveform strip around the playhead

# colours (RGB)
_BACKGROUND = (246, 246, 246)
_SKIN = (242, 211, 177)
_OUTLINE = (51, 51, 51)
_MOUTH = (139, 45, 45)
_EYE_WHITE = (255, 255, 255)
_PUPIL = (38, 38, 38)
_BROW = (64, 64, 64)
_NOSE = (115, 115, 115)
_STRIP_BG = (255, 255, 255)
_WAVE = (31, 119, 180)
_PLAYHEAD = (214, 39, 40)
_TEXT = (40, 40, 40)


# ----------------------------------------------------------------------------- the face


_CIRCLES: dict[int, np.ndarray] = {}


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 40) -> np.ndarray:
    circle = _CIRCLES.get(n)
    if circle is None:
        a = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
        circle = _CIRCLES[n] = np.stack([np.cos(a), np.sin(a)], axis=1)
    return circle * (rx, ry) + (cx, cy)


class _FacePainter:
    """Draws the face of one pose into a Pillow image, at 2x then reduced (anti-aliasing).

    The shapes are :func:`avatar_nb.face.face_geometry`'s, in face units (the head is 1.7
    wide, 2.2 tall; y up), placed by the head's roll and shift and mapped to pixels, with
    :data:`avatar_nb.face.VIEW` fitted to the face area.
    """

    _SUPERSAMPLE = 2

    def __init__(self, width: int, height: int) -> None:
        from PIL import Image, ImageDraw

        self.size = (width, height)
        s = self._SUPERSAMPLE
        self.image = Image.new("RGB", (width * s, height * s), _BACKGROUND)
        self.draw = ImageDraw.Draw(self.image)
        self.unit = min(width / VIEW[0], height / VIEW[1]) * s
        self.origin = (width * s / 2.0, height * s / 2.0)
        self._drawn: tuple[int, int, int, int] | None = None

    def paint(self, p: dict[str, float]) -> tuple[Any, tuple[int, int]]:
        """The face of pose ``p`` (:func:`avatar_nb.face.face_geometry`'s shapes): the image
        of its bounding box at 1x, and where it goes."""
        draw, u = self.draw, self.unit
        if self._drawn is not None:  # clear only what the last face covered
            draw.rectangle(self._drawn, fill=_BACKGROUND)
        g = face_geometry(p)
        ox, oy = self.origin

        def px(points: np.ndarray) -> list[tuple[float, float]]:
            placed = g.place(points)  # face units in the view, y up
            return list(zip((ox + u * placed[:, 0]).tolist(), (oy - u * placed[:, 1]).tolist()))

        def oval(o: Oval, n: int) -> list[tuple[float, float]]:
            return px(_ellipse(o.cx, o.cy, o.rx, o.ry, n))

        width = max(1, int(round(u * 0.025)))
        outline = oval(g.head, 64)
        draw.polygon(outline, fill=_SKIN, outline=_OUTLINE, width=width)
        for eye in g.eyes:
            white = eye.white
            if eye.pupil is not None:
                draw.polygon(oval(white, 32), fill=_EYE_WHITE, outline=_OUTLINE, width=width)
                draw.polygon(oval(eye.pupil, 20), fill=_PUPIL)
            else:  # closed: the lid as a line
                lid = np.array([[white.cx - white.rx, white.cy], [white.cx + white.rx, white.cy]])
                draw.line(px(lid), fill=_OUTLINE, width=width * 2)
            draw.line(px(np.array(eye.brow)), fill=_BROW, width=width * 3)
        draw.line(px(np.array(g.nose)), fill=_NOSE, width=width)
        draw.polygon(oval(g.mouth, 40), fill=_MOUTH, outline=_OUTLINE, width=width)
        # only the head's bounding box (every feature is inside it) is reduced and pasted
        s = self._SUPERSAMPLE
        xs, ys = zip(*outline)
        pad = 2 * width + s
        box = [int(min(xs)) - pad, int(min(ys)) - pad, int(max(xs)) + pad + 1, int(max(ys)) + pad + 1]
        box = [max(0, v // s * s) for v in box[:2]] + [min(lim, -(-v // s) * s) for v, lim in zip(box[2:], self.image.size)]
        self._drawn = tuple(box)  # type: ignore[assignment]
        return self.image.crop(box).reduce(s), (box[0] // s, box[1] // s)


# ----------------------------------------------------------------------------- the strip


class _Strip:
    """The waveform around the playhead: an envelope computed once for the run, drawn in
    blocks of columns that frames slice (a scrolling window re-draws nothing)."""

    _BLOCK = 2048  # columns per drawn block; two are kept

    def __init__(self, audio: np.ndarray | None, sample_rate: int | None, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.wave_top = max(14, height // 4 + 4)  # text line above the waveform
        self.wave_h = height - self.wave_top - 2
        self.samples = 0
        self._blocks: dict[int, np.ndarray] = {}
        self.empty = np.empty((height, width, 3), dtype=np.uint8)
        self.empty[:] = _STRIP_BG
        self.empty[0, :] = (200, 200, 200)
        if audio is None or not sample_rate or audio.size == 0:
            self.top = self.bottom = None
            return
        self.sample_rate = int(sample_rate)
        self.samples = audio.shape[0]
        duration = self.samples / self.sample_rate
        self.span = min(_STRIP_WINDOW, duration)
        per_column = max(1, int(round(self.span * self.sample_rate / width)))
        self.column_seconds = per_column / self.sample_rate
        n_cols = -(-self.samples // per_column)
        padded = np.zeros(n_cols * per_column, dtype=np.int16)
        padded[: self.samples] = audio
        blocks = padded.reshape(n_cols, per_column)
        peak = max(int(blocks.max()), -int(blocks.min()), 1)  # Python ints: -(-32768) fits
        scale = (self.wave_h / 2 - 1) / peak  # scaled to the clip's peak: quiet recordings stay readable
        mid = self.wave_top + self.wave_h / 2
        # padded with blank columns so a window at the end of the audio slices whole
        self.top = np.full(n_cols + width, height, dtype=np.int32)
        self.bottom = np.full(n_cols + width, -1, dtype=np.int32)
        self.top[:n_cols] = np.floor(mid - blocks.max(axis=1) * scale)
        self.bottom[:n_cols] = np.ceil(mid - blocks.min(axis=1) * scale)
        self.rows = np.arange(height, dtype=np.int32)[:, None]

    def _block(self, b: int) -> np.ndarray:
        block = self._blocks.get(b)
        if block is None:
            top = self.top[b * self._BLOCK : (b + 1) * self._BLOCK]
            bottom = self.bottom[b * self._BLOCK : (b + 1) * self._BLOCK]
            block = np.empty((self.height, self._BLOCK, 3), dtype=np.uint8)
            block[:] = self.empty[:, :1]
            mask = (self.rows >= top[None, :]) & (self.rows <= bottom[None, :])
            block[:, : top.shape[0]][mask] = _WAVE
            if len(self._blocks) >= 2:
                self._blocks.pop(max(self._blocks, key=lambda k: abs(k - b)))  # the farthest
            self._blocks[b] = block
        return block

    def render(self, t: float, out: np.ndarray) -> None:
        """Draw the strip for time ``t`` (s) into ``out`` (height, width, 3)."""
        if self.top is None:
            out[:] = self.empty
            return
        duration = self.samples / self.sample_rate
        start = min(max(0.0, t - self.span / 2.0), max(0.0, duration - self.span))
        c0 = int(round(start / self.column_seconds))
        b0, off = divmod(c0, self._BLOCK)
        first = self._block(b0)[:, off : off + self.width]
        out[:, : first.shape[1]] = first
        if first.shape[1] < self.width:
            out[:, first.shape[1] :] = self._block(b0 + 1)[:, : self.width - first.shape[1]]
        out[0] = self.empty[0]
        x = int(round((t - c0 * self.column_seconds) / self.column_seconds))
        if 0 <= x < self.width:
            out[self.wave_top :, max(0, x - 1) : x + 1] = _PLAYHEAD


# ----------------------------------------------------------------------------- frames


def frame_keyframes(timeline: Timeline) -> np.ndarray:
    """Which keyframe each video frame shows: frame ``i`` covers media time ``[i / fps, (i + 1) / fps)``
    and shows the last keyframe whose media time is at or before the middle of that span.

    For a run of back-to-back utterances this is keyframe ``i`` for frame ``i``; frames
    past the last keyframe's media time are not made (the video is as long as the
    animation).
    """
    n = timeline.n_keyframes
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    mt = np.asarray(timeline.media_time, dtype=np.float64)
    order = np.argsort(mt, kind="stable")
    fps = timeline.fps
    n_frames = max(n, int(math.floor(float(mt[order[-1]]) * fps + 0.5)) + 1)
    centres = (np.arange(n_frames) + 0.5) / fps
    pos = np.searchsorted(mt[order], centres, side="right") - 1
    return order[np.clip(pos, 0, n - 1)]


def _check_panels(panels: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(panels, str):
        panels = (panels,)
    chosen = tuple(panels)
    unknown = [p for p in chosen if p not in PANELS]
    if unknown or "face" not in chosen:
        raise ValueError(f"panels={chosen!r}: accepted panels are {PANELS!r}, and 'face' is always one of them")
    return chosen


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height) in pixels, got {size!r}") from None
    if w < _MIN_SIZE or h < _MIN_SIZE or w % 2 or h % 2 or w > 7680 or h > 4320:
        raise ValueError(f"size must be even (width, height) from {_MIN_SIZE} to 7680x4320 pixels "
                         f"(H.264 in 4:2:0), got {size!r}")
    return w, h


def _check_request(
    timeline: Timeline, size: Sequence[int], panels: Sequence[str] | str
) -> tuple[int, int, tuple[str, ...]]:
    """Width, height and panels of a video of ``timeline``, or the error saying what is wrong."""
    width, height = _check_size(size)
    chosen = _check_panels(panels)
    if timeline.n_keyframes == 0:
        raise ValueError("the Timeline has no keyframes: there is nothing to put in a video")
    return width, height, chosen


class _TextLine:
    """One line of text from glyphs that Pillow renders once each (a frame's label changes
    every frame, its characters do not): composed with numpy, then blended in one go."""

    def __init__(self, font: Any, height: int) -> None:
        self.font, self.height = font, height
        self.glyphs: dict[str, tuple[np.ndarray, float]] = {}
        self.ink = np.array(_TEXT, dtype=np.uint16)

    def _glyph(self, ch: str) -> tuple[np.ndarray, float]:
        glyph = self.glyphs.get(ch)
        if glyph is None:
            from PIL import Image, ImageDraw

            right = max(1, int(math.ceil(self.font.getbbox(ch)[2])) + 1)
            image = Image.new("L", (right, self.height), 0)
            ImageDraw.Draw(image).text((0, 0), ch, fill=255, font=self.font)
            glyph = self.glyphs[ch] = (np.asarray(image, dtype=np.uint8), float(self.font.getlength(ch)))
        return glyph

    def draw(self, out: np.ndarray, text: str, x0: int = 6) -> None:
        """Blend ``text`` in the text colour onto ``out`` (height, width, 3), from ``x0``."""
        width = out.shape[1]
        alpha = np.zeros((self.height, width), dtype=np.uint16)
        x = float(x0)
        for ch in text:
            mask, advance = self._glyph(ch)
            left = int(round(x))
            right = min(width, left + mask.shape[1])
            if right > left:
                np.maximum(alpha[:, left:right], mask[:, : right - left], out=alpha[:, left:right])
            x += advance
        used = min(width, int(math.ceil(x)) + 2)
        a = alpha[:, :used, None]
        region = out[: self.height, :used]
        region[:] = ((region * (255 - a) + self.ink * a) // 255).astype(np.uint8)


def _draw_frames(
    timeline: Timeline, width: int, height: int, chosen: tuple[str, ...], target: Callable[[], tuple[Any, np.ndarray]]
) -> Iterator[Any]:
    """Draw every frame into a fresh (height, width, 3) RGB buffer from ``target()`` (which
    returns the object to yield and the buffer) and yield the object: frames are drawn
    straight into the encoder's frames, with no copy in between."""
    from PIL import ImageFont

    strip_h = max(40, height // 5) if "waveform" in chosen else 0
    face_h = height - strip_h
    painter = _FacePainter(width, face_h)
    strip = _Strip(timeline.audio, timeline.sample_rate, width, strip_h) if strip_h else None
    font = ImageFont.load_default(size=max(10, min(strip_h // 5 if strip_h else height // 24, 22)))
    text_y = face_h + 2 if strip is not None else 4
    text = _TextLine(font, min(font.size + 8, height - text_y))
    poses = face_pose(timeline.keyframes)
    which = frame_keyframes(timeline)
    fps = timeline.fps
    n = timeline.n_keyframes
    note = "" if strip is None or strip.top is not None else "   (no audio)"
    background = np.empty((face_h, width, 3), dtype=np.uint8)
    background[:] = _BACKGROUND  # copied in per frame: a memcpy, where filling from a tuple costs 0.7 ms
    for i, k in enumerate(which.tolist()):
        item, buf = target()
        np.copyto(buf[:face_h], background)
        face, (fx, fy) = painter.paint({name: float(values[k]) for name, values in poses.items()})
        pixels = np.asarray(face)
        fh, fw = min(pixels.shape[0], face_h - fy), min(pixels.shape[1], width - fx)
        buf[fy : fy + fh, fx : fx + fw] = pixels[:fh, :fw]
        t = i / fps
        if strip is not None:
            strip.render(t, buf[face_h:])
        text.draw(buf[text_y:], f"{t:6.2f} s   keyframe {k} / {n}{note}")
        yield item


def render_frames(
    timeline: Timeline,
    *,
    size: Sequence[int] = (640, 480),
    panels: Sequence[str] | str = PANELS,
) -> Iterator[np.ndarray]:
    """The video's frames as (height, width, 3) uint8 RGB arrays, one per keyframe period.

    The same frames :func:`write_video` encodes; useful to inspect or test a frame.
    """
    width, height, chosen = _check_request(timeline, size, panels)

    def fresh() -> tuple[np.ndarray, np.ndarray]:
        buf = np.empty((height, width, 3), dtype=np.uint8)
        return buf, buf

    return _draw_frames(timeline, width, height, chosen, fresh)


# ----------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class Video:
    """An MP4 written by :func:`write_video`. Displays inline in a notebook as a playable video
    (the file embedded as a data URL) and can be used as a path (``os.fspath(video)``)."""

    path: Path
    frames: int
    fps: float
    size: tuple[int, int]
    has_audio: bool
    note: str | None = None

    @property
    def duration(self) -> float:
        """Seconds of video (frames / fps)."""
        return self.frames / self.fps

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        audio = "with audio" if self.has_audio else "video only"
        return (f"<Video {self.path} {self.size[0]}x{self.size[1]}, {self.frames} frames @ {self.fps:g} fps "
                f"({self.duration:.2f} s), {audio}>")

    def _repr_html_(self) -> str:
        import base64
        import html

        note = f"<div><i>{html.escape(self.note)}</i></div>" if self.note else ""
        caption = f"<div><code>{html.escape(str(self.path))}</code></div>"
        size = self.path.stat().st_size
        if size > _EMBED_LIMIT:  # a notebook holding hundreds of MB of base64 is unusable: link the file
            relative = os.path.relpath(self.path)
            src = "" if relative.startswith("..") else f' src="{html.escape(relative)}"'
            why = (f"<div><i>{size / 1e6:.0f} MB: too large to embed in the notebook"
                   + ("" if src else "; open the file to watch it") + "</i></div>")
            return f'<video controls width="{self.size[0]}"{src}></video>{caption}{why}{note}'
        data = base64.b64encode(self.path.read_bytes()).decode("ascii")
        return f'<video controls width="{self.size[0]}" src="data:video/mp4;base64,{data}"></video>{caption}{note}'


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def _partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


def write_video(
    timeline: Timeline,
    path: str | os.PathLike[str],
    *,
    size: Sequence[int] = (640, 480),
    panels: Sequence[str] | str = PANELS,
    crf: int = 23,
    preset: str = "superfast",
    audio_bitrate: int = 96_000,
    progress: bool = True,
) -> Video:
    """Write ``timeline`` as an MP4: H.264 video at the Timeline's fps, AAC audio.

    Frame ``i`` shows the keyframe whose media time is ``i / fps`` (for one utterance,
    keyframe ``i``) and is on screen while the audio from ``i / fps`` to ``(i + 1) / fps``
    plays: video and audio both start at time 0 of the file.

    ``size`` is (width, height) in pixels, both even; ``panels`` is ``("face",
    "waveform")`` (default) or ``("face",)``. ``crf`` and ``preset`` are libx264's quality
    and speed settings (``"superfast"``: flat-coloured frames compress well anyway, and
    it takes half the encoder time of ``"veryfast"``, which keeps export well above
    real time on two cores). A Timeline without audio gives a video-only file and a
    ``UserWarning`` saying so (``Video.note``). The file is written next to ``path``
    under a temporary name and renamed at the end, so a failure leaves no partial file.
    An export still running after :data:`avatar_nb.progress.SHOW_AFTER_SECONDS` shows a
    ``tqdm.auto`` bar of the frames written (gone when done); ``progress=False``: none.
    """
    import av
    from tqdm.auto import tqdm

    from . import progress as _progress

    width, height, chosen = _check_request(timeline, size, panels)
    path = Path(os.fspath(path))
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"{path}: the video is an MP4 file, give a path ending in .mp4")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give the path of an .mp4 file")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    audio = timeline.audio
    sample_rate = timeline.sample_rate
    has_audio = audio is not None and audio.size > 0 and bool(sample_rate)
    note = None
    if not has_audio:
        why = "no sample rate" if audio is not None and audio.size and not sample_rate else "no audio"
        note = (f"the Timeline carries {why}: {path.name} is video only "
                "(set timeline.audio and timeline.sample_rate to include the sound)")
        warnings.warn(note, UserWarning, stacklevel=2)

    partial = _partial_path(path)
    try:
        handle = open(partial, "wb")  # noqa: SIM115 - handed to the muxer, closed below
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write the video to {path}: {exc.strerror}") from None
    frames = 0
    bar = tqdm(total=len(frame_keyframes(timeline)), desc=f"writing {path.name}", unit="frame",
               disable=not progress, delay=_progress.SHOW_AFTER_SECONDS, leave=False, dynamic_ncols=True)
    try:
        with handle, av.open(handle, "w", format="mp4", options={"movflags": "+faststart"}) as container:
            rate = _fps_fraction(timeline.fps)
            vstream = container.add_stream("libx264", rate=rate)
            vstream.width, vstream.height = width, height
            vstream.pix_fmt = "yuv420p"
            vstream.time_base = 1 / rate
            vstream.codec_context.time_base = 1 / rate
            vstream.options = {"crf": str(int(crf)), "preset": preset}
            astream = None
            if has_audio:
                astream = container.add_stream("aac", rate=int(sample_rate), layout="mono")
                astream.bit_rate = int(audio_bitrate)
                astream.time_base = Fraction(1, int(sample_rate))
            pcm = np.ascontiguousarray(audio, dtype=np.int16) if has_audio else None
            sent = 0  # audio samples handed to the encoder so far

            def push_audio(until: int) -> None:
                nonlocal sent
                until = min(until, pcm.shape[0])
                if until <= sent:
                    return
                block = av.AudioFrame.from_ndarray(pcm[None, sent:until], format="s16", layout="mono")
                block.sample_rate = int(sample_rate)
                block.pts = sent
                block.time_base = Fraction(1, int(sample_rate))
                container.mux(astream.encode(block))
                sent = until

            def video_frame() -> tuple[Any, np.ndarray]:
                vf = av.VideoFrame(width, height, "rgb24")
                plane = vf.planes[0]
                rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(height, plane.line_size)
                return vf, rows[:, : width * 3].reshape(height, width, 3)

            for i, vf in enumerate(_draw_frames(timeline, width, height, chosen, video_frame)):
                vf.pts = i
                vf.time_base = 1 / rate
                container.mux(vstream.encode(vf))
                if pcm is not None:  # audio up to the end of this frame, so the muxer interleaves
                    push_audio(int(round((i + 1) / float(rate) * sample_rate)))
                frames += 1
                bar.update(1)
            if pcm is not None:
                push_audio(pcm.shape[0])
                container.mux(astream.encode(None))
            container.mux(vstream.encode(None))
        os.replace(partial, path)
    except BaseException:
        try:
            partial.unlink()
        except FileNotFoundError:
            pass
        raise
    finally:
        bar.close()
    return Video(path, frames, float(timeline.fps), (width, height), has_audio, note)
