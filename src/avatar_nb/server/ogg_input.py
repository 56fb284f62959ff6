"""Ogg Opus input of the local service: one stream per request, decoded page by page.

A session configured with ``audio_format=OGG_OPUS`` sends, for each request, one
continuous Ogg Opus stream cut at any byte (docs/protocol.md, section 3: the official
clients send a file in 4096-byte slices, then an empty chunk with ``end=true``).
:class:`OggOpusInput` keeps one :class:`~avatar_nb.opus.OggOpusDecoder` for the request
whose audio is arriving and turns each chunk into the PCM of the pages it completes, so
the animator follows the audio with no more delay than one page.

Opus packs up to 120 ms of audio in a 2-byte packet, so a small message can stand for
hours of audio. What one message and one request may decode to is bounded
(:data:`MAX_MESSAGE_SECONDS`, :data:`MAX_REQUEST_SECONDS`; only mono and stereo
streams are decoded), each packet's duration is read from its header before it is
decoded, and the audio comes out in slices of 0.2 s (:meth:`OggOpusInput.slices`)
so the service's event loop runs other sessions between them. A session's decoding
is also paced (:meth:`OggOpusInput.pause`): after a first :data:`BURST_SECONDS` of
audio, at most :data:`MAX_SPEED` times faster than real time, so one client sending
such streams in a loop takes a bounded share of the service's CPU, not all of it.

A stream that cannot be decoded, or that crosses a bound, is reported once for its
request (the caller sends a ServerError with code 3, INVALID_ARGUMENT, whose message
names the problem or the limit) and the rest of that request's bytes are dropped; the
request still ends normally, so frames already animated are kept.
"""

from __future__ import annotations

from collections.abc import Iterator

# PyAV (libopus, swresample) loads with the service rather than on its event loop when
# the first Ogg Opus session sends audio: importing it takes a few hundred milliseconds
import av  # noqa: F401

from ..opus import OggOpusDecoder, OggOpusError
from ..proto import message_pb2 as pb

__all__ = ["BURST_SECONDS", "MAX_MESSAGE_SECONDS", "MAX_REQUEST_SECONDS", "MAX_SPEED", "OggOpusInput"]

#: The most audio one ClientAudioInput of Ogg Opus may decode to. A real-time client
#: sends 20 ms to a few seconds a message (the official clients: 4096-byte slices, about
#: 1.4 s at 24 kb/s); a whole 1 MB speech file (330 s at 24 kb/s) still fits.
MAX_MESSAGE_SECONDS = 600
#: The most audio one request (one Ogg stream, one utterance) may decode to.
MAX_REQUEST_SECONDS = 3600
#: How much faster than real time a session's Ogg Opus audio is decoded, at most, once
#: its burst is spent: a real-time client is never slowed, a clip of up to a minute sent
#: at once is animated at once, a 330 s file in about 14 s; a client sending hours of
#: audio makes the service work as much as 20 real-time sessions, not the whole loop.
MAX_SPEED = 20.0
#: Seconds of audio a session may have decoded at once, before :data:`MAX_SPEED` applies.
BURST_SECONDS = 60.0
_OPUS_RATE = 48000


class OggOpusInput:
    """PCM (s16le at ``sample_rate``) from the Ogg Opus streams of a session's requests."""

    @classmethod
    def for_session(cls, sample_rate: int, audio_format: int) -> OggOpusInput | None:
        """The input for a session configured with ``audio_format``; None for PCM."""
        return cls(sample_rate) if audio_format == pb.AUDIO_FORMAT_OGG_OPUS else None

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.req_id: str | None = None
        self.decoder: OggOpusDecoder | None = None
        self.failed = False  # the current request's stream was refused
        self.decoded = 0  # 48 kHz samples the current request's stream has made
        self.problem: str | None = None  # why the last chunk's stream was refused
        self._credit = BURST_SECONDS  # seconds of audio that may be decoded without a pause
        self._credit_at: float | None = None  # when the credit was last topped up

    def pause(self, seconds: float, now: float) -> float:
        """How long to wait, from ``now`` (the event loop's clock), after decoding
        ``seconds`` of audio before decoding more: 0 within the burst, then enough to
        keep to :data:`MAX_SPEED` times real time (a token bucket of :data:`BURST_SECONDS`)."""
        if self._credit_at is not None:
            self._credit = min(BURST_SECONDS, self._credit + (now - self._credit_at) * MAX_SPEED)
        self._credit_at = now
        self._credit -= seconds
        return max(0.0, -self._credit / MAX_SPEED)

    def decode(self, req_id: str, data: bytes, end: bool) -> tuple[bytes, str | None]:
        """``(pcm, problem)``: the audio of the pages ``data`` completes, and the reason the
        request's stream was refused (only on the chunk where that happens, else None)."""
        pcm = b"".join(self.slices(req_id, data, end))
        return pcm, self.problem

    def slices(self, req_id: str, data: bytes, end: bool) -> Iterator[bytes]:
        """The audio of the pages ``data`` completes, in slices of about 0.2 s
        (some possibly empty); once the iteration is over, :attr:`problem` is the reason
        the request's stream was refused on this chunk, else None."""
        self.problem = None
        if req_id != self.req_id:  # a new request: a new stream (a preempted one is dropped)
            self.req_id, self.decoder, self.failed = req_id, OggOpusDecoder(self.sample_rate), False
            self.decoded = 0
        if not self.failed:
            decoder = self.decoder
            assert decoder is not None
            message = MAX_MESSAGE_SECONDS * _OPUS_RATE
            left = MAX_REQUEST_SECONDS * _OPUS_RATE - self.decoded
            budget = min(message, left)
            decoder.budget = budget
            decoder.budget_name = (
                f"{MAX_MESSAGE_SECONDS} s of audio in one message"
                if message <= left
                else f"{MAX_REQUEST_SECONDS} s of audio in one request"
            ) + " (the local service's limit)"
            try:
                yield from decoder.feed_slices(data)
                if end:
                    yield decoder.finish()
            except OggOpusError as exc:
                self.failed = True
                self.problem = f"invalid Ogg Opus audio: {exc}"
            finally:
                self.decoded += budget - decoder.budget
        if end:
            self.req_id, self.decoder = None, None
