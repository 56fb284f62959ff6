"""The receive side of :class:`~avatar_nb.session.AvatarSession`: waiting for a request's
end, the read loop that turns every server message into the Timeline and the callbacks,
and error reporting. The connection's state lives in the session (a mixin)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from ._session_transport import _closed_error
from .errors import AvatarSDKError, AvatarSDKErrorCode, InvalidStateError
from .events import PlaybackSignal, PlaybackStateEvent
from .events import PlaybackState as PublicPlaybackState
from .protocol import AnimationReceived, PlaybackStateReceived, RequestStatus, ServerErrorReceived

if TYPE_CHECKING:
    from .config import SessionConfig
    from .protocol import ClientConnection
    from .timeline import Timeline

logger = logging.getLogger("avatar_nb.session")


class _ReceivePath:
    """How :class:`~avatar_nb.session.AvatarSession` takes what the server sends."""

    _config: SessionConfig
    _protocol: ClientConnection
    _timeline: Timeline
    _closing: bool
    _close_error: AvatarSDKError | None
    _peer_close: AvatarSDKError | None
    _end_waiters: dict[str, list[asyncio.Future[None]]]

    if TYPE_CHECKING:  # defined by the session and by the send path

        @property
        def closed(self) -> bool: ...

        def _elapsed(self, now: float | None = None) -> float: ...

        async def _finish(self) -> None: ...

    # ------------------------------------------------------------------ waiting

    async def wait_for_end(self, req_id: str | None = None, timeout: float | None = None) -> None:
        """Wait until the animation of ``req_id`` (default: the latest request) has ended.

        Raises ``asyncio.TimeoutError`` after ``timeout`` seconds, and an
        :class:`AvatarSDKError` if the connection closed before the end arrived (with
        the close code, also for a clean close by the server).
        """
        req_id = req_id or self._protocol.last_req_id
        if req_id is None:
            raise InvalidStateError("no request to wait for: no audio has been sent")
        if not self._protocol.is_pending(req_id):
            status = self._protocol.status(req_id)
            if status is RequestStatus.FAILED and not self._timeline.saw_end(req_id):
                raise self._waiter_error(req_id)
            if status is not None or self._timeline.saw_end(req_id):
                return
        if self.closed:
            raise self._waiter_error(req_id)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._end_waiters.setdefault(req_id, []).append(future)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        finally:
            waiters = self._end_waiters.get(req_id, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._end_waiters.pop(req_id, None)

    def _waiter_error(self, req_id: str | None = None) -> AvatarSDKError:
        error = self._close_error or self._peer_close
        if error is not None:
            return error
        return AvatarSDKError(
            AvatarSDKErrorCode.connectionClosed, "the session closed before the end frame arrived", req_id=req_id
        )

    def _resolve_waiters(self, req_id: str | None, error: BaseException | None = None) -> None:
        if req_id is None:
            items = list(self._end_waiters.items())
            self._end_waiters.clear()
        else:
            items = [(req_id, self._end_waiters.pop(req_id, []))]
        for _, futures in items:
            for future in futures:
                if not future.done():
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)

    # ------------------------------------------------------------------ receiving

    async def _read_loop(self, ws: Any) -> None:
        receive = self._protocol.receive
        monotonic = time.monotonic
        try:
            async for data in ws:
                arrival = monotonic()  # first thing: the message just left the socket
                try:
                    event = receive(data)
                except AvatarSDKError as exc:  # malformed: report and keep reading
                    self._timeline.add_error(str(exc))
                    self._notify_error(exc)
                    continue
                kind = type(event)
                if kind is AnimationReceived:
                    self._on_animation(event, arrival)
                elif kind is PlaybackStateReceived:
                    self._on_playback_state(event, arrival)
                elif kind is ServerErrorReceived:
                    self._timeline.add_error(str(event.error))
                    if event.status is not None and event.error.req_id:
                        self._timeline.set_request_status(
                            event.error.req_id, event.status.value, at=self._elapsed(arrival)
                        )
                    self._notify_error(event.error)
                else:
                    logger.debug("ignored message: %r", event)
            # the iteration ends quietly when the server closes cleanly (1000, 1001)
            if self._close_error is None and not self._closing:
                self._peer_close = _closed_error(ws.protocol.close_exc, phase="websocket_runtime")
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            if self._close_error is None and not self._closing:
                error = _closed_error(exc, phase="websocket_runtime")
                if code in (1000, 1001):
                    self._peer_close = error  # a clean close: pending waiters still learn its code
                else:
                    self._close_error = error
                    self._timeline.add_error(str(error))
                    self._notify_error(error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never die silently
            error = AvatarSDKError(
                AvatarSDKErrorCode.connectionFailed, f"read loop failed: {exc}", phase="websocket_runtime"
            )
            self._close_error = self._close_error or error
            self._timeline.add_error(str(error))
            self._notify_error(error)
        await self._finish()

    def _on_animation(self, event: AnimationReceived, arrival: float) -> None:
        at = self._elapsed(arrival)
        req_id = event.req_id
        tl = self._timeline
        if event.animation_error is not None:
            self._protocol_error(f"unreadable animation payload for request {req_id}: {event.animation_error}", req_id)
        callback = self._config.on_playback
        if callback is not None:
            signal = PlaybackSignal(
                req_id=req_id,
                end=event.end,
                connection_id=event.connection_id,
                avatar_id=event.avatar_id,
                has_animation=event.keyframes.shape[0] > 0 or event.animation_error is not None,
            )
            try:
                callback(signal)
            except Exception:
                logger.exception("on_playback callback raised")
        if event.anomaly is not None:
            detail = (
                f"keyframes for request {req_id}, which this session did not make"
                if event.anomaly == "unknown_request"
                else f"keyframes for request {req_id} after its end frame"
            )
            tl.add_anomaly(req_id, event.anomaly, detail, at=at)
        if not event.duplicate_end:
            try:
                tl.add_animation(event.keyframes, req_id=req_id, arrival=at, end=event.end)
            except ValueError as exc:  # another keyframe width: a protocol error for this message
                tl.add_anomaly(req_id, "width_change", str(exc), at=at)
                self._protocol_error(f"animation message for request {req_id} rejected: {exc}", req_id)
                tl.add_animation(event.keyframes[:0], req_id=req_id, arrival=at, end=event.end)  # keep its end
        callback = self._config.transport_frames
        if callback is not None:
            try:
                callback(event.raw, event.end)
            except Exception:
                logger.exception("transport_frames callback raised")
        if event.status is not None:
            tl.set_request_status(req_id, event.status.value, at=at)
        if event.end and req_id in self._end_waiters:
            self._resolve_waiters(req_id)

    def _on_playback_state(self, event: PlaybackStateReceived, arrival: float) -> None:
        at = self._elapsed(arrival)
        tl = self._timeline
        tl.add_playback_state(event.req_id, event.state.name, event.played_ms, event.reason, at)
        if event.anomaly is not None:
            tl.add_anomaly(event.req_id, event.anomaly, f"playback state {event.state.name} for an unknown request", at=at)
        if event.status is not None:
            tl.set_request_status(event.req_id, event.status.value, at=at)
        callback = self._config.on_playback_state
        if callback is not None:
            public = PlaybackStateEvent(
                req_id=event.req_id,
                state=PublicPlaybackState[event.state.name],
                played_ms=int(event.played_ms),
                reason=event.reason,
                connection_id=event.connection_id,
            )
            try:
                callback(public)
            except Exception:
                logger.exception("on_playback_state callback raised")

    def _protocol_error(self, message: str, req_id: str) -> None:
        error = AvatarSDKError(
            AvatarSDKErrorCode.protocolError, message, phase="websocket_runtime", req_id=req_id or None
        )
        self._timeline.add_error(str(error))
        self._notify_error(error)

    def _notify_error(self, error: Exception) -> None:
        callback = self._config.on_error
        if callback is None:
            logger.warning("avatar session error (no on_error callback): %s", error)
            return
        try:
            callback(error)
        except Exception:
            logger.exception("on_error callback raised")
