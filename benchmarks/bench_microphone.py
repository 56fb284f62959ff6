"""Does the microphone panel's live view cost the session anything? Measured in a kernel.

    python benchmarks/bench_microphone.py [--quick]

In a real ipykernel driven by nbclient (widget updates go through the kernel's comm
channel as in Jupyter), speech is delivered as 40 ms chunks at capture pace (chunk
``i`` when its last sample would have been captured) to a LocalService (80 ms
processing latency) running in its own thread, three ways, alternated:

- ``session``: a bare AvatarSession sending each chunk when it is due (the baseline:
  no widget at all);
- ``panel, no view``: a displayed MicrophonePanel fed through its kernel-side path
  (``feed_file``), its live view's refresher switched off;
- ``panel``: the same with the live view redrawing (12 Hz, only when the Timeline
  changed).

Printed per mode (medians over runs): keyframe latency (arrival minus the moment the
frame's audio had been sent) median and p99, lateness median and p99, inter-arrival
jitter; for the panel, how long a chunk waited between arriving and being sent (p99),
and the panel's own counters (:mod:`avatar_nb.widgets.live`, the same as bench_render.py
prints): refresher wake-ups and redraws per second, and ms per redraw (time inside the
drawing code of the redraws, over their number; a wake-up that finds nothing new is not
a redraw). Reported, not a pass/fail threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

_CELLS = [
    """
import asyncio, json, time
import numpy as np
import avatar_nb as an
from avatar_nb.config import config_from_kwargs
from avatar_nb.widgets import MicrophonePanel
from IPython.display import display

svc = an.LocalService(latency_ms=80).start()
clip = an.speech_like({duration}, 16000, seed=11)
pcm = an.to_s16le(clip)
STEP = 1280  # 40 ms at 16 kHz

def figures(tl):
    lat, late = tl.latency * 1000, tl.lateness * 1000
    return dict(keyframes=int(tl.n_keyframes), complete=bool(tl.complete),
                latency_p50=float(np.nanmedian(lat)), latency_p99=float(np.nanpercentile(lat, 99)),
                lateness_p50=float(np.nanmedian(late)), lateness_p99=float(np.nanpercentile(late, 99)),
                jitter=float(tl.jitter * 1000))

async def bare():
    tl = an.Timeline(sample_rate=16000, meta={{"pacing": "capture"}})
    session = an.AvatarSession(config_from_kwargs(svc.session_kwargs(sample_rate=16000)), timeline=tl)
    async with session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        session.set_time_origin(time.monotonic())  # the origin is the capture start, as in the panel
        for i in range(0, len(pcm), STEP):
            piece = pcm[i:i + STEP]
            await asyncio.sleep(max(0.0, start + (i + len(piece)) / 2 / 16000 - loop.time()))
            await session.send_audio(piece, end=i + STEP >= len(pcm))
        await session.wait_for_end(session.last_req_id, timeout=30)
    return tl

async def with_panel(view):
    panel = MicrophonePanel(svc)
    display(panel)
    panel.refresher.enabled = view
    tl = await panel.feed_file(clip)
    c = panel.chunks
    wait = (c.sent_at - c.arrived_at).to_numpy() * 1000
    out = dict(send_wait_p99=float(np.percentile(wait, 99)), **figures(tl))
    if view:
        out.update(wakeup_hz=panel.refresh_rate, redraw_hz=panel.redraw_rate,
                   wakeups=panel.wakeups, redraws=panel.redraws, render_ms=panel.redraw_ms,
                   render_max_ms=1000 * panel.redraw_max)
    panel.close()
    return out
""",
    """
results = []
modes = ["session", "panel, no view", "panel"]
for rep in range({repeat}):
    for mode in modes if rep % 2 == 0 else modes[::-1]:
        if mode == "session":
            results.append(dict(mode=mode, **figures(await bare())))
        else:
            results.append(dict(mode=mode, **(await with_panel(mode == "panel"))))
svc.stop()
print("RESULTS " + json.dumps(results))
""",
]


def refresher_line(runs: list[dict]) -> str:
    """The live view's work, worded as bench_render.py words it (avatar_nb.widgets.live):
    wake-ups and redraws per second, and ms per redraw = time inside the drawing code over
    the number of redraws."""
    wake = [r["wakeup_hz"] for r in runs]
    redraw = [r["redraw_hz"] for r in runs]
    return (
        f"refresher {min(wake):.1f}-{max(wake):.1f} wake-ups per second (target >= 10), "
        f"{min(redraw):.1f}-{max(redraw):.1f} redraws per second, "
        f"{np.mean([r['render_ms'] for r in runs]):.2f} ms per redraw "
        f"(max {max(r['render_max_ms'] for r in runs):.1f} ms)"
    )


def main() -> None:
    import nbformat
    from nbclient import NotebookClient

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 s clips, 2 runs per mode")
    args = parser.parse_args()
    duration, repeat = (6.0, 2) if args.quick else (20.0, 4)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(c.format(duration=duration, repeat=repeat)) for c in _CELLS
    ]
    with tempfile.TemporaryDirectory() as root:
        spec = os.path.join(root, "kernels", "avatar-nb-bench")
        os.makedirs(spec)
        with open(os.path.join(spec, "kernel.json"), "w") as f:
            json.dump(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "avatar_nb bench",
                    "language": "python",
                },
                f,
            )
        os.environ["JUPYTER_PATH"] = root
        os.environ["MPLBACKEND"] = "agg"
        NotebookClient(
            nb, kernel_name="avatar-nb-bench", timeout=900, resources={"metadata": {"path": root}}
        ).execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    results = json.loads(text.split("RESULTS ", 1)[1])
    print(
        f"microphone panel in an ipykernel: {duration:g} s of speech in 40 ms chunks at capture pace, "
        f"LocalService 80 ms latency, {repeat} runs per mode (alternating); medians over runs, ms"
    )
    base = None
    for mode in ("session", "panel, no view", "panel"):
        runs = [r for r in results if r["mode"] == mode]

        def med(key: str, runs: list = runs) -> float:
            return float(np.median([r[key] for r in runs]))

        line = (
            f"  {mode:15s} latency p50 {med('latency_p50'):6.1f}  p99 {med('latency_p99'):6.1f}   "
            f"lateness p50 {med('lateness_p50'):6.1f}  p99 {med('lateness_p99'):6.1f}   jitter {med('jitter'):5.2f}"
        )
        if base is None:
            base = med("latency_p99")
        else:
            line += f"   latency p99 ratio to session {med('latency_p99') / base:5.3f}"
            line += f"\n  {'':15s} chunk wait before send p99 {med('send_wait_p99'):.2f}"
        if mode == "panel":
            line += "\n  " + " " * 15 + " " + refresher_line(runs)
        print(line)
    if not all(r["complete"] for r in results):
        print("  WARNING: a run did not complete")


if __name__ == "__main__":
    main()
