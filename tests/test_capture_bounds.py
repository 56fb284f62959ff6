"""A sequence number far ahead cannot exhaust the kernel's memory: the microphone panel's
sequencer fills at most ``max_gap`` chunks with silence and refuses a longer gap before
allocating anything, and the panel ends the capture with a clear error.

The reproducers run in a child process under an address-space limit: before the bound,
``CaptureSequencer(640).accept(3_000_000, ...)`` alone took 4.45 GB."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

from avatar_nb.widgets.capture import MAX_GAP_CHUNKS, CaptureGapError, CaptureSequencer

CHUNK = 640
CHUNK_BYTES = 2 * CHUNK
GiB = 1 << 30


def run_limited(code: str, address_space: int) -> dict:
    """Run ``code`` in a child Python under ``RLIMIT_AS``; the JSON it prints last."""
    prelude = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({address_space}, {address_space}))\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=240, check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, f"child failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1])


def test_a_huge_sequence_number_is_refused_with_bounded_memory():
    result = run_limited(
        """
        import json, tracemalloc
        from avatar_nb.widgets.capture import CaptureSequencer
        seq = CaptureSequencer(640)
        seq.accept(0, bytes(1280))
        tracemalloc.start()
        try:
            out = seq.accept(3_000_000, bytes(1280))
            outcome = f"returned {len(out)} chunks"
        except BaseException as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        later = seq.accept(3_000_001, bytes(1280))
        print(json.dumps({"outcome": outcome, "peak": peak, "ended": seq.ended, "later": len(later),
                          "failure": seq.failure, "counts": seq.counts()}))
        """,
        2 * GiB,
    )
    assert result["outcome"].startswith("CaptureGapError: chunk 3000000 arrived when chunk 1 was expected")
    assert "more than the 250 filled with silence; capture stopped" in result["outcome"]
    assert result["peak"] < 16 * CHUNK_BYTES  # a few messages, not 3 million chunks (3.84 GB)
    assert result["ended"] and result["later"] == 0 and result["counts"]["after_end"] == 1
    assert result["counts"]["gaps"] == 0  # nothing was filled


def test_a_gap_up_to_the_bound_is_filled_sharing_one_silence_buffer():
    seq = CaptureSequencer(CHUNK, max_gap=MAX_GAP_CHUNKS)
    seq.accept(0, bytes(CHUNK_BYTES))
    tracemalloc.start()
    out = seq.accept(1 + MAX_GAP_CHUNKS, bytes(CHUNK_BYTES))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(out) == MAX_GAP_CHUNKS + 1 and seq.gaps == MAX_GAP_CHUNKS
    assert len({id(c.pcm) for c in out[:-1]}) == 1  # one shared silence buffer
    assert peak < MAX_GAP_CHUNKS * CHUNK_BYTES / 4  # the fillers' PCM is not copied per chunk
    with pytest.raises(CaptureGapError, match="a gap of 2 chunks"):
        CaptureSequencer(4, max_gap=1).accept(2, bytes(8))
    with pytest.raises(ValueError, match="max_gap"):
        CaptureSequencer(4, max_gap=-1)


def test_the_panel_ends_the_capture_with_a_clear_error():
    result = run_limited(
        """
        import asyncio, json, time, tracemalloc
        import avatar_nb as an
        from avatar_nb.widgets import MicrophonePanel

        def chunk(panel, seq):
            panel._on_browser_msg(panel, {"type": "chunk", "seq": seq, "t": time.monotonic()}, [bytes(1280)])

        async def main():
            with an.LocalService(realtime=False) as svc:
                panel = MicrophonePanel(svc)
                task = panel.start()
                await asyncio.wait_for(panel._ready.wait(), 30)
                chunk(panel, 0)
                chunk(panel, 1)
                tracemalloc.start()
                try:
                    chunk(panel, 3_000_000)
                    outcome = "returned"
                except BaseException as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                tl = await asyncio.wait_for(task, 60)
                print(json.dumps({
                    "outcome": outcome, "peak": peak, "error": panel.error, "status": panel.status,
                    "running": panel.is_running, "sent": tl.audio.size if tl.audio is not None else 0,
                    "statuses": tl.requests["status"].tolist(), "errors": list(tl.errors),
                }))

        asyncio.run(main())
        """,
        3 * GiB,
    )
    assert result["outcome"] == "returned"
    assert result["peak"] < 64 * CHUNK_BYTES
    assert result["error"].startswith(
        "Capture stopped (119999.9 s of audio missing): chunk 3000000 arrived when chunk 2 was expected"
    )
    assert result["status"] == "stopped: a chunk far out of sequence (see error)"
    assert not result["running"] and result["sent"] == 2 * CHUNK  # what arrived before it was sent
    assert result["statuses"] == ["complete"]  # the request was ended with what was sent
    assert any("gap of 2999998 chunks" in e for e in result["errors"])
