"""animate(): audio in, Timeline out, in one call (the notebook's main entry point).

The audio is prepared (:func:`avatar_nb.audio.prepare_audio`), a session is opened
against, in this order of preference: the given ``service``; explicit endpoints and
credentials in ``session_kwargs``; the ``AVATAR_NB_*`` environment variables; and
otherwise an embedded :class:`~avatar_nb.server.LocalService` started for the call.
The clip is streamed as one utterance, the call waits for its end frame, and the
session's Timeline is returned (the session attaches the audio it sent, for the
waveform views). A call still running after a couple of seconds shows a ``tqdm.auto``
bar of the seconds animated, drawn by a thread of its own from the Timeline's counters,
never by the session's event loop (:mod:`avatar_nb.progress`); ``progress=False``
turns it off.

``animate_sync`` is the same for code without an event loop; inside a running loop
(a Jupyter kernel) it runs the coroutine on a private loop in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from .audio import prepare_audio
from .endpoints import ENV_VARS, ServiceHandle, endpoints_from_env, open_service
from .errors import AvatarSDKError, AvatarSDKErrorCode
from .pacing import DEFAULT_CHUNK_MS, Pacing, check_chunk_ms, pacing_from_realtime
from .progress import StreamProgress, bars_wanted, batch_clip, streaming_bars
from .protocol import DEFAULT_SAMPLE_RATE
from .session import AvatarSession
from .sync import run_sync  # its home is avatar_nb.sync; importable from here as before
from .timeline import Timeline

if TYPE_CHECKING:
    from .server import LocalService

__all__ = [
    "AnimationTimeout",
    "animate",
    "animate_sync",
    "service_meta",
    "stream_clip",
]

# still importable from here, no longer exported: their home is avatar_nb.endpoints / avatar_nb.sync
_KEPT = (ENV_VARS, endpoints_from_env, run_sync)


class AnimationTimeout(AvatarSDKError):
    """The end frame did not arrive in time; ``timeline`` holds what did arrive."""

    def __init__(self, message: str, timeline: Timeline, req_id: str | None = None) -> None:
        super().__init__(AvatarSDKErrorCode.unknown, message, phase="websocket_runtime", req_id=req_id)
        self.timeline = timeline


def _audio_pcm(audio: Any, sample_rate: int | None, target_rate: int) -> bytes:
    if isinstance(audio, (bytes, bytearray, memoryview)) and sample_rate is None:
        sample_rate = target_rate  # s16le bytes at the session rate
    return prepare_audio(audio, sample_rate, target_rate=target_rate)


def service_meta(handle: ServiceHandle) -> dict[str, Any]:
    """What a run's metadata records about its service: its label and, for a local
    service, the simulated processing latency and jitter (ms, as the service's options)."""
    meta: dict[str, Any] = {"service": handle.label}
    if handle.local is not None:
        state = handle.local.state
        meta.update(
            service_realtime=bool(state.realtime),
            service_latency_ms=float(state.latency_ms),
            service_jitter_ms=float(state.jitter_ms),
        )
    return meta


async def stream_clip(
    handle: ServiceHandle,
    pcm: bytes,
    *,
    chunk_ms: float,
    pacing: Pacing,
    timeout: float | None = None,
    timeline: Timeline | None = None,
    **session_overrides: Any,
) -> Timeline:
    """One utterance through one session against an already opened service; its Timeline.

    The unit of work of :func:`animate`, batches and sweeps. ``pcm`` is mono s16le at the
    handle's session sample rate. Waits for the end frame (``timeout``, default 30 s plus
    the clip's duration); raises :class:`AnimationTimeout` or the session's
    :class:`AvatarSDKError`, each carrying the partial Timeline as ``.timeline``.
    Inside a :func:`avatar_nb.progress.streaming_bars` block the clip gets a progress bar;
    a batch's clip gets a line among the batch's bars (:class:`avatar_nb.progress.BatchProgress`).
    """
    session = AvatarSession(handle.config(**session_overrides), timeline=timeline)
    tl = session.timeline
    rate = session.config.sample_rate
    seconds = len(pcm) / 2 / rate
    in_batch = batch_clip()  # a batch's clip: a line among the batch's bars, drawn by its thread
    bar = (in_batch[0].track(tl, seconds, in_batch[1]) if in_batch is not None
           else StreamProgress(tl, seconds, enabled=bars_wanted(), leave=False))
    with bar:
        return await _stream(session, tl, pcm, rate, chunk_ms=chunk_ms, pacing=pacing, timeout=timeout,
                             handle=handle)


async def _stream(
    session: AvatarSession,
    tl: Timeline,
    pcm: bytes,
    rate: int,
    *,
    chunk_ms: float,
    pacing: Pacing,
    timeout: float | None,
    handle: ServiceHandle,
) -> Timeline:
    tl.meta.update(
        {
            "pacing": pacing,
            "chunk_ms": chunk_ms,
            "sample_rate": rate,
            **service_meta(handle),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    try:
        async with session:
            tl.meta["connection_id"] = session.connection_id
            req_id = await session.stream(pcm, chunk_ms=chunk_ms, pacing=pacing)
            wait = timeout if timeout is not None else 30.0 + len(pcm) / 2 / rate
            try:
                await session.wait_for_end(req_id, timeout=wait)
            except asyncio.TimeoutError:
                raise AnimationTimeout(
                    f"no end frame for request {req_id} within {wait:g} s "
                    f"({tl.n_keyframes} keyframes arrived; see .timeline)",
                    tl,
                    req_id,
                ) from None
    except AvatarSDKError as exc:
        # a refused or dropped session still hands back what arrived before it ended
        if getattr(exc, "timeline", None) is None:
            exc.timeline = tl
        raise
    return tl


async def animate(
    audio: Any,
    sample_rate: int | None = None,
    *,
    service: LocalService | None = None,
    chunk_ms: float = DEFAULT_CHUNK_MS,
    pacing: Pacing | None = None,
    realtime: bool | None = None,
    timeout: float | None = None,
    timeline: Timeline | None = None,
    target_rate: int = DEFAULT_SAMPLE_RATE,
    progress: bool = True,
    **session_kwargs: Any,
) -> Timeline:
    """Stream ``audio`` through an avatar session and return the resulting :class:`Timeline`.

    ``audio`` is an audio file path, a numpy array (with its ``sample_rate``) or s16le
    bytes (at ``sample_rate``, default ``target_rate``). ``target_rate`` is the session's
    sample rate (one of ``SUPPORTED_SAMPLE_RATES``); the audio is resampled to it when
    needed. ``pacing`` is ``"capture"``, ``"playback"`` or ``"fast"`` (see
    :mod:`avatar_nb.pacing`; default :data:`~avatar_nb.pacing.DEFAULT_PACING`);
    ``realtime=False`` is the older spelling of ``"fast"``. An embedded service runs in
    real time unless the pacing is ``"fast"``. ``session_kwargs`` are further
    :class:`~avatar_nb.SessionConfig` options (endpoints, credentials, ``fps``,
    callbacks ...). ``timeout`` bounds the wait for the end frame after the last chunk
    (default: 30 s plus the clip's duration); on expiry :class:`AnimationTimeout` is
    raised carrying the partial Timeline. ``timeline`` lets a live view watch the run:
    the session fills the given (empty) Timeline. The Timeline's ``meta`` records the
    pacing, ``chunk_ms``, sample rate, service and, for a local service, its simulated
    latency and jitter.

    ``progress``: a call still running after
    :data:`~avatar_nb.progress.SHOW_AFTER_SECONDS` shows a ``tqdm.auto`` bar of the seconds
    of audio animated (and sent), redrawn a few times a second by a thread of its own
    from the Timeline's counters, so the session's event loop never draws it; shorter
    calls print nothing. ``progress=False``: no bar.
    """
    session_rate = int(target_rate)
    chunk_ms = check_chunk_ms(chunk_ms, session_rate)
    mode = pacing_from_realtime(realtime, pacing)
    session_kwargs["sample_rate"] = session_rate
    pcm = _audio_pcm(audio, sample_rate, session_rate)
    if progress and timeline is None:  # the bar reads the Timeline the session fills
        timeline = Timeline(sample_rate=session_rate)  # the session sets its fps as it would its own
    async with open_service(service, local_options={"realtime": mode != "fast"}, **session_kwargs) as handle:
        # this call's bar, or none with progress=False, whatever an enclosing streaming_bars asks
        with streaming_bars(False), StreamProgress(timeline, len(pcm) / 2 / session_rate, enabled=progress):
            return await stream_clip(handle, pcm, chunk_ms=chunk_ms, pacing=mode, timeout=timeout,
                                     timeline=timeline)


def animate_sync(audio: Any, sample_rate: int | None = None, **kwargs: Any) -> Timeline:
    """:func:`animate` for code without a running event loop (scripts, plain notebook cells).

    Inside a running loop (a Jupyter kernel) the call blocks this thread while a worker
    thread runs :func:`animate` on a private loop, so a ``service`` entered with
    ``async with`` on this thread's loop cannot answer: that case raises ``RuntimeError``
    (use ``await animate(...)``, or ``service.start()`` which runs it in its own thread).
    """
    return run_sync(
        lambda: animate(audio, sample_rate, **kwargs),
        service=kwargs.get("service"),
        name="animate_sync",
        async_name="animate",
        thread_name="avatar_nb-animate",
    )
