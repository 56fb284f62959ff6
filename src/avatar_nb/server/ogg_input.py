"""Ogg Opus input of the local service: one stream per request, decoded page by page.

A session configured with ``audio_format=OGG_OPUS`` sends, for each request, one
continuous Ogg Opus stream cut at any byte (docs/protocol.md, section 3: the official
clients send a file in 4096-byte slices, then an empty chunk with ``end=true``).
:class:`OggOpusInput` keeps one :class:`~avatar_nb.opus.OggOpusDecoder` for the request
whose audio is arriving and turns each chunk into the PCM of the pages it completes, so
the animator follows the audio with no more delay than one page.

A stream that cannot be decoded is reported once for its request (the caller sends a
ServerError with code 3, INVALID_ARGUMENT) and the rest of that request's bytes are
dropped; the request still ends normally, so frames already animated are kept.
"""

from __future__ import annotations

from ..opus import OggOpusDecoder, OggOpusError
from ..proto import message_pb2 as pb

__all__ = ["OggOpusInput"]


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

    def decode(self, req_id: str, data: bytes, end: bool) -> tuple[bytes, str | None]:
        """``(pcm, problem)``: the audio of the pages ``data`` completes, and the reason the
        request's stream was refused (only on the chunk where that happens, else None)."""
        if req_id != self.req_id:  # a new request: a new stream (a preempted one is dropped)
            self.req_id, self.decoder, self.failed = req_id, OggOpusDecoder(self.sample_rate), False
        pcm = b""
        problem = None
        if not self.failed:
            assert self.decoder is not None
            try:
                pcm = self.decoder.feed(data)
                if end:
                    pcm += self.decoder.finish()
            except OggOpusError as exc:
                self.failed = True
                problem = f"invalid Ogg Opus audio: {exc}"
        if end:
            self.req_id, self.decoder = None, None
        return pcm, problem
