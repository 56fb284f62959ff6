"""animate(): audio in, Timeline out, in one call (the notebook's main entry point).

The audio is prepared (:func:`avatar_nb.audio.prepare_audio`), a session is opened
against, in this order of preference: the given ``service``; explicit endpoints and
credentials in ``session_kwargs``; the ``AVATAR_NB_*`` environment variables; and
otherwise an embedded :class:`~avatar_nb.server.LocalService` started for the call.
The clip is streamed as one utterance, the call waits for its end frame, and the
session's Timeline is returned, with the audio attached for the waveform views.

``animate_sync`` is the same for code without an event loop; inside a running loop
(a Jupyter kernel) it runs the coroutine on a private loop in a worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import prepare_audio
from .endpoints import ENV_VARS, endpoints_from_env, open_service
from .errors import AvatarSDKError, AvatarSDKErrorCode
from .session import AvatarSession
from .timeline import Timeline

if TYPE_CHECKING:
    from .server import LocalService

__all__ = ["AnimationTimeout", "ENV_VARS", "animate", "animate_sync", "endpoints_from_env"]


class AnimationTimeout(AvatarSDKError):
    """The end frame did not arrive in time; ``timeline`` holds what did arrive."""

    def __init__(self, message: str, timeline: Timeline, req_id: str | None = None) -> None:
        super().__init__(AvatarSDKErrorCode.unknown, message, phase="websocket_runtime", req_id=req_id)
        self.timeline = timeline


def _audio_pcm(audio: Any, sample_rate: int | None, target_rate: int) -> bytes:
    if isinstance(audio, (bytes, bytearray, memoryview)) and sample_rate is None:
        sample_rate = target_rate  # s16le bytes at the session rate
    return prepare_audio(audio, sample_rate, target_rate=target_rate)


async def animate(
    audio: Any,
    sample_rate: int | None = None,
    *,
    service: LocalService | None = None,
    chunk_ms: float = 40.0,
    realtime: bool = True,
    timeout: float | None = None,
    timeline: Timeline | None = None,
    target_rate: int = 16000,
    **session_kwargs: Any,
) -> Timeline:
    """Stream ``audio`` through an avatar session and return the resulting :class:`Timeline`.

    ``audio`` is a WAV path, a numpy array (with its ``sample_rate``) or s16le bytes (at
    ``sample_rate``, default ``target_rate``). ``target_rate`` is the session's sample rate
    (one of ``SUPPORTED_SAMPLE_RATES``); the audio is resampled to it when needed.
    ``session_kwargs`` are further :class:`~avatar_nb.SessionConfig` options (endpoints,
    credentials, ``fps``, callbacks ...). ``timeout`` bounds the wait for the
    end frame after the last chunk (default: 30 s plus the clip's duration); on expiry
    :class:`AnimationTimeout` is raised carrying the partial Timeline. ``timeline`` lets a
    live view watch the run: the session fills the given (empty) Timeline.
    """
    session_rate = int(target_rate)
    session_kwargs["sample_rate"] = session_rate
    pcm = _audio_pcm(audio, sample_rate, session_rate)
    async with open_service(service, local_options={"realtime": realtime}, **session_kwargs) as handle:
        session = AvatarSession(handle.config(), timeline=timeline)
        tl = session.timeline
        tl.audio = np.frombuffer(pcm, dtype="<i2").copy()
        tl.meta.update(
            {
                "chunk_ms": chunk_ms,
                "realtime": realtime,
                "sample_rate": session.config.sample_rate,
                "service": handle.label,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        try:
            async with session:
                tl.meta["connection_id"] = session.connection_id
                req_id = await session.stream(pcm, chunk_ms=chunk_ms, realtime=realtime)
                wait = timeout if timeout is not None else 30.0 + len(pcm) / 2 / session_rate
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


def animate_sync(audio: Any, sample_rate: int | None = None, **kwargs: Any) -> Timeline:
    """:func:`animate` for code without a running event loop (scripts, plain notebook cells).

    Inside a running loop (a Jupyter kernel) the call blocks this thread while a worker
    thread runs :func:`animate` on a private loop, so a ``service`` entered with
    ``async with`` on this thread's loop cannot answer: that case raises ``RuntimeError``
    (use ``await animate(...)``, or ``service.start()`` which runs it in its own thread).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(animate(audio, sample_rate, **kwargs))
    service = kwargs.get("service")
    # a running service without a thread of its own is served by this thread's loop
    if service is not None and service.running and getattr(service, "_thread", None) is None:
        raise RuntimeError(
            "animate_sync() would block the event loop that serves this LocalService "
            "(it was entered with `async with`); use `await animate(...)` instead, "
            "or start the service with service.start()"
        )
    # a loop runs in this thread (Jupyter): run on a private loop in a worker thread
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="avatar_nb-animate") as pool:
        return pool.submit(asyncio.run, animate(audio, sample_rate, **kwargs)).result()
