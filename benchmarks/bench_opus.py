"""Ogg Opus against PCM: bytes on the wire per audio second, and the codec's speed.

    python benchmarks/bench_opus.py [--quick]

Both formats are sent the way ``stream()`` sends them: one ClientAudioInput message per
40 ms chunk (avatar_nb.pacing.DEFAULT_CHUNK_MS), the PCM chunk as it is, the Opus chunk
as the Ogg pages :class:`avatar_nb.OggOpusEncoder` completes for it (default bitrate).
Bytes on the wire are counted per message: the protobuf envelope (serialized by the
protobuf library, request id in the log-id format) plus the client's WebSocket frame
header (2, 4 or 10 bytes and the 4-byte mask); TCP/IP headers are left out, as they
are the same per message for both. The baseline is PCM at the same rate, measured in
the same run.

Speed: encoding a speech-like clip chunk by chunk, as ``stream()`` does, and decoding
the resulting stream in the official clients' 4096-byte slices, as the local service
does, each as a multiple of real time (best of several runs; the machine is shared).
"""

from __future__ import annotations

import argparse
import time

from avatar_nb import _pcm
from avatar_nb.audio import speech_like
from avatar_nb.logid import generate_log_id
from avatar_nb.opus import DEFAULT_OPUS_BITRATE, OggOpusDecoder, OggOpusEncoder
from avatar_nb.pacing import DEFAULT_CHUNK_MS, chunk_bytes
from avatar_nb.proto import message_pb2 as pb


def ws_frame_bytes(payload: int) -> int:
    """A client WebSocket binary frame: header (with the 4-byte mask) and payload."""
    length = 0 if payload < 126 else 2 if payload < 65536 else 8
    return 2 + length + 4 + payload


def message_bytes(req_id: str, audio: bytes, end: bool) -> int:
    msg = pb.Message(type=pb.MESSAGE_CLIENT_AUDIO_INPUT)
    msg.client_audio_input.req_id = req_id
    msg.client_audio_input.audio = audio
    msg.client_audio_input.end = end
    return ws_frame_bytes(len(msg.SerializeToString()))


def chunks(pcm: bytes, rate: int) -> list[bytes]:
    step = chunk_bytes(DEFAULT_CHUNK_MS, rate)
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def encode_stream(parts: list[bytes], rate: int) -> list[bytes]:
    encoder = OggOpusEncoder(rate)
    out = [encoder.encode(part) for part in parts]
    out[-1] += encoder.flush()
    return out


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter clip, fewer repetitions")
    args = parser.parse_args()
    seconds = 10.0 if args.quick else 60.0
    repeat = 3 if args.quick else 5
    req_id = generate_log_id()

    print(f"{seconds:g} s of speech-like audio, {DEFAULT_CHUNK_MS:g} ms chunks, Opus at {DEFAULT_OPUS_BITRATE // 1000} kb/s\n")
    print(f"{'rate':>6s}  {'PCM B/s':>10s}  {'Opus B/s':>10s}  {'PCM/Opus':>8s}  {'Opus payload':>12s}  {'encode':>10s}  {'decode':>10s}")
    for rate in (16000, 24000, 48000):
        pcm = _pcm.to_s16le(speech_like(seconds, rate, seed=1))
        parts = chunks(pcm, rate)
        pcm_wire = sum(message_bytes(req_id, part, i == len(parts) - 1) for i, part in enumerate(parts))
        pages = encode_stream(parts, rate)
        opus_wire = sum(message_bytes(req_id, page, i == len(pages) - 1) for i, page in enumerate(pages))
        payload = sum(len(page) for page in pages)
        stream = b"".join(pages)

        def decode() -> None:
            decoder = OggOpusDecoder(rate)
            for i in range(0, len(stream), 4096):
                decoder.feed(stream[i : i + 4096])
            decoder.finish()

        encode_s = best(lambda: encode_stream(parts, rate), repeat)
        decode_s = best(decode, repeat)
        print(
            f"{rate:6d}  {pcm_wire / seconds:10,.0f}  {opus_wire / seconds:10,.0f}  {pcm_wire / opus_wire:7.1f}x  "
            f"{8 * payload / seconds / 1000:8.1f} kb/s  {seconds / encode_s:8.0f}x RT  {seconds / decode_s:8.0f}x RT"
        )
    print(
        "\nB/s: bytes on the wire per audio second (protobuf message + WebSocket frame); PCM/Opus: how many times\n"
        "fewer bytes Opus sends; Opus payload: the Ogg stream itself (pages, headers included) in kilobits per\n"
        "second; encode/decode: speed as a multiple of real time, one core."
    )


if __name__ == "__main__":
    main()
