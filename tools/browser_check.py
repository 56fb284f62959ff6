"""Real-browser check: run a notebook in JupyterLab in headless Chromium and screenshot it.

    .venv/bin/pip install -e '.[browser]'      # jupyterlab, playwright (Python side only)
    apt-get install -y chromium                # the browser: Debian's, not a Playwright download
    .venv/bin/python tools/browser_check.py [--notebook notebooks/01_quickstart.ipynb] [--out build/browser-check]
    .venv/bin/python tools/browser_check.py --notebook notebooks/07_microphone.ipynb --microphone \
        [--wav speech.wav] [--capture-seconds 4] [--timeline build/browser-check/microphone.npz]

Not run by CI or the test suite: it needs a browser and takes about a minute. The test
suite already executes every notebook with nbclient; this script checks what only a
browser shows: that the widgets' front-end code loads (ipywidgets, anywidget) and the
views render as images, SVG, sliders and an audio element rather than "Error displaying
widget" or a bare text repr.

Steps: copy the notebook into a temporary folder (the checkout stays unchanged), start
JupyterLab there on loopback with a random token (no windowed cell rendering, no news
fetching), open the notebook in Chromium, Run > Run All Cells, wait until every code
cell has an execution count, then check the page and save screenshots to ``--out``:
``notebook.png`` (the window), ``show.png`` (the output of the ``widgets.show`` cell),
and ``cell-NN.png`` for every cell with rich output. Exit status 1 when a cell raised,
a widget failed to render, or the run did not finish within ``--timeout`` seconds.

The microphone check (``--microphone``, for a notebook showing a ``MicrophonePanel``)
starts Chromium with a fake microphone that plays a WAV file in a loop
(``--use-fake-ui-for-media-stream --use-fake-device-for-media-stream
--use-file-for-fake-audio-capture=<wav>``: permission granted without a prompt). After
the notebook ran, it presses the panel's Start button, lets it capture
``--capture-seconds``, presses Stop, waits for the run to end, saves the panel's
Timeline to ``--timeline`` (from a cell it appends: ``<--panel>.timeline.save(...)``)
and checks, in this process, that

- the audio the kernel captured matches the WAV file: normalised cross-correlation at
  least ``--min-ncc`` (0.9) at the best alignment (the fake device loops the file and
  capture starts anywhere in it). Each quarter second is aligned on its own and the
  scores averaged, weighted by energy: Chromium's audio input drops or repeats ~10 ms
  when its audio thread misses a deadline on a loaded machine, which would make one
  alignment of the whole capture read as unrelated audio; the slips are printed, and
  the single-alignment figure too;
- keyframes arrived for it: at least 90 % of the frames its duration calls for, every
  request complete (with ``--interrupt-after S``, Interrupt is pressed S seconds in: the
  first request must be ``interrupted`` and the capture go on as a second, complete
  one), no capture gaps or rejected chunks;
- the panel rendered: its waveform, traces and face SVGs and its latency line are on
  the page, with no microphone error; ``microphone.png`` is its screenshot.

Before that, the notebook runs in two browsers that get no microphone: one with no
capture device at all, one whose permission prompt is refused (headless Chromium with a
fake device but no fake prompt). In each, pressing Start must show the panel's message
saying why ("no microphone was found", "permission was refused") and set
``panel.error`` in the kernel (screenshots ``no-device/no-device.png`` and
``permission/permission.png``).

The explorer pass (``--explorer``) writes its own notebook (a synthetic 1-hour run: 16 kHz
audio, 90,000 keyframes, E = 50, explored with ``an.explore``), runs it, and scripts
``--interactions`` (200) inputs into the explorer with real mouse and keyboard events:
wheel zooms from the whole hour down to 100 ms, drag pans, cursor clicks, arrow steps,
``+``/``-`` and ``0``. The page times each from its input event (``event.timeStamp``) to
the end of the animation frame that drew it with everything it needs, the kernel round
trip included when it needed one (``window.__avatarNbExplorer``). Printed: ``explorer: N
interactions on a 1-hour run, p50 X ms, p95 Y ms, max Z ms, W KB per update`` (W: what
the kernel sent for the interactions that waited for it), those answered from tiles the
page already held apart, the kernel round trips by message, the first paint; saved:
``explorer-hour.png``, ``-minute``, ``-second``, ``-100ms``, ``-100ms-cursor``,
``-playing`` and ``-end``.

The player pass (``--player``) shows a synthetic 1-hour run with ``an.show``, whose audio
player holds one minute of it at a time: the run bar under the player seeks to 30:00 (a
window asked of the kernel; the keyframe readout must follow), playback crosses that
window's end into the next, and typing the last keyframe into the keyframe slider must
move the player into the run's last window; ``player.png`` is the player.

Options: ``--notebook`` (the notebook to run), ``--out`` (screenshots and logs),
``--timeout`` (seconds for the notebook), ``--microphone`` (run the microphone check),
``--wav`` (the fake microphone's file; default: six seconds of generated speech-like
audio written to ``<out>/fake-microphone.wav``), ``--capture-seconds``, ``--timeline``
(where the Timeline is saved; default ``<out>/microphone.npz``), ``--panel`` (the
notebook variable holding the panel; default ``panel``), ``--min-ncc``,
``--interrupt-after``, ``--explorer``, ``--interactions``, ``--player``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# JupyterLab settings for a quiet, fully rendered page: every cell in the DOM (so cells
# below the fold can be checked), no news or update checks over the network.
LAB_SETTINGS = {
    # no autosave: a later pass reopens the notebook and must find it as it was copied
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyterlab(folder: Path, log: Path) -> Iterator[str]:
    """A JupyterLab server serving ``folder`` on loopback; yields its base URL with the token."""
    port, token = free_port(), secrets.token_hex(16)
    settings = folder.parent / "lab-settings"
    for name, value in LAB_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTER_RUNTIME_DIR": str(folder.parent / "runtime"),
        "MPLBACKEND": "agg",
    }
    for var in ("AVATAR_NB_CONSOLE_URL", "AVATAR_NB_INGRESS_URL", "AVATAR_NB_API_KEY"):
        env.pop(var, None)  # the notebooks must run against their embedded service
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={folder}", "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers often run as root
    with log.open("w") as out:
        server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"JupyterLab exited with {server.returncode}; see {log}")
                try:
                    with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"JupyterLab did not answer within 60 s; see {log}") from None
                    time.sleep(0.3)
            yield f"{base}/lab/tree/{{path}}?token={token}"
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


@dataclass
class MicrophoneCheck:
    """Settings of the microphone check (see the module docstring)."""

    wav: Path
    timeline: Path
    capture_seconds: float = 4.0
    panel: str = "panel"
    min_ncc: float = 0.9
    interrupt_after: float | None = None

    def chromium_args(self) -> list[str]:
        return [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={self.wav}",
        ]


def run_all_cells(page: Any, url: str) -> None:
    """Open the notebook at ``url`` and start Run > Run All Cells once its kernel is idle."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    # a fresh JupyterLab asks which kernel to start even when the notebook names one
    dialog = page.locator(".jp-Dialog")
    with contextlib.suppress(PlaywrightTimeout):
        dialog.get_by_role("button", name="Select", exact=True).click(timeout=10_000)
    # wait for the kernel before running (the toolbar shows its status)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def run_notebook(
    url: str, n_code: int, out: Path, timeout: float, mic: MicrophoneCheck | None = None, *, refusal: str = ""
) -> list[str]:
    """Open ``url`` in headless Chromium, run all cells, check and screenshot; return problems.

    With ``mic``, capture from the panel with the fake microphone (:func:`capture_in_browser`);
    with ``refusal`` (one of :data:`REFUSALS`: a browser without any microphone, or one
    that refuses the permission), check that pressing Start explains it
    (:func:`refusal_in_browser`)."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    problems: list[str] = []
    with sync_playwright() as p:
        args = CHROMIUM_ARGS + (mic.chromium_args() if mic is not None else []) + REFUSALS.get(refusal, ("", []))[1]
        browser = p.chromium.launch(executable_path=executable, args=args, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        console_errors: list[str] = []
        page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
        run_all_cells(page, url)

        code_cells = page.locator(".jp-Notebook .jp-CodeCell")
        if code_cells.count() != n_code:
            problems.append(f"the page shows {code_cells.count()} code cells, the notebook has {n_code}")
        n = code_cells.count()
        deadline = time.monotonic() + timeout
        while True:
            prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts()
            done = [t for t in prompts if t.strip().strip("[]:").strip().isdigit()]
            busy = page.locator(".jp-Notebook-ExecutionIndicator[data-status='busy']").count()
            if len(done) == n and not busy:
                break
            if page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").filter(
                has_text="Traceback"
            ).count() or page.locator("[data-mime-type='application/vnd.jupyter.error']").count():
                break
            if time.monotonic() > deadline:
                problems.append(f"only {len(done)} of {n} code cells ran within {timeout:g} s")
                break
            time.sleep(0.5)
        page.wait_for_timeout(1500)  # let the last widgets draw

        errors = page.locator("[data-mime-type='application/vnd.jupyter.error']")
        for i in range(errors.count()):
            problems.append("cell error: " + errors.nth(i).inner_text()[:500])
        for bad in ("Error displaying widget", "Loading widget...", "Model not found"):
            if page.get_by_text(bad).count():
                problems.append(f"a widget did not render: page shows {bad!r}")
        widgets = page.locator(".jp-OutputArea-output .jupyter-widgets")
        if not widgets.count():
            problems.append("no widget rendered")
        checks = {
            "PNG images (figures and widget views)": page.locator(".jp-OutputArea-output img").count(),
            "SVG face previews": page.locator(".jp-OutputArea-output .widget-html svg, .avatar-nb-mic-view svg").count(),
            "sliders": page.locator(".jp-OutputArea-output .widget-slider").count(),
            "audio players": page.locator(".jp-OutputArea-output audio").count(),
        }
        if mic is not None:
            checks["microphone panels"] = page.locator(".avatar-nb-mic").count()
        for what, count in checks.items():
            print(f"  {what}: {count}")
            if not count:
                problems.append(f"no {what} on the page")

        out.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out / "notebook.png"))
        shown = 0
        for i in range(n):
            cell = code_cells.nth(i)
            outputs = cell.locator(".jp-OutputArea-output")
            if not (outputs.locator("img").count() or outputs.locator(".jupyter-widgets").count()):
                continue
            cell.scroll_into_view_if_needed()
            cell.screenshot(path=str(out / f"cell-{i:02d}.png"))
            shown += 1
            if "widgets.show(" in cell.locator(".jp-InputArea").inner_text():
                cell.screenshot(path=str(out / "show.png"))
        print(f"  screenshots of {shown} cells with rich output in {out}")
        if mic is not None and not problems:
            problems.extend(capture_in_browser(page, mic, out))
        if refusal and not problems:
            problems.extend(refusal_in_browser(page, out, refusal))
        widget_errors = [e for e in console_errors if "widget" in e.lower() or "anywidget" in e.lower()]
        problems.extend(f"browser console: {e[:300]}" for e in widget_errors)
        browser.close()
    return problems


def append_cell(page: Any, code: str) -> None:
    """Add a code cell below the last one and run it."""
    page.locator(".jp-Notebook .jp-Cell").last.locator(".jp-InputArea-prompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")


# the ways a page gets no microphone: (what the panel must say, Chromium's arguments)
REFUSALS: dict[str, tuple[str, list[str]]] = {
    # no capture device at all
    "no-device": ("no microphone was found", []),
    # a device, but headless Chromium answers the permission prompt with a refusal
    "permission": ("permission was refused", ["--use-fake-device-for-media-stream"]),
}


def refusal_in_browser(page: Any, out: Path, refusal: str) -> list[str]:
    """Without a microphone (or its permission), Start must say why in the panel and in
    ``panel.error``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    panel = page.locator(".avatar-nb-mic").first
    start = panel.locator("button.avatar-nb-mic-start")
    message = panel.locator(".avatar-nb-mic-message")
    try:
        page.wait_for_function("b => !b.disabled", arg=start.element_handle(), timeout=60_000)
        panel.scroll_into_view_if_needed()
        start.click()
        message.wait_for(state="visible", timeout=30_000)
    except PlaywrightTimeout:
        panel.screenshot(path=str(out / f"{refusal}.png"))
        return [f"{refusal}: Start showed no message"]
    page.wait_for_timeout(1000)  # the kernel's status after the error
    panel.screenshot(path=str(out / f"{refusal}.png"))
    text = message.inner_text()
    status = panel.locator(".avatar-nb-mic-status").inner_text()
    print(f"  {refusal}: the panel says {text!r} (status {status!r})")
    wanted = REFUSALS[refusal][0]
    problems = [] if wanted in text else [f"{refusal}: the panel's message does not say {wanted!r}: {text!r}"]
    append_cell(page, "print('PANEL ERROR:', panel.error)")
    shown = page.locator(".jp-OutputArea-output").filter(has_text="PANEL ERROR:")
    try:
        shown.first.wait_for(timeout=30_000)
        if "PANEL ERROR: Microphone unavailable" not in shown.first.inner_text():
            problems.append(f"panel.error in the kernel: {shown.first.inner_text()!r}")
    except PlaywrightTimeout:
        problems.append("could not read panel.error from the kernel")
    return problems


def capture_in_browser(page: Any, mic: MicrophoneCheck, out: Path) -> list[str]:
    """Start the panel, capture, stop, screenshot it and save its Timeline; return problems."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    panel = page.locator(".avatar-nb-mic").first
    status = panel.locator(".avatar-nb-mic-status")
    start = panel.locator("button.avatar-nb-mic-start")
    try:
        start.wait_for(state="visible", timeout=10_000)
        page.wait_for_function("b => !b.disabled", arg=start.element_handle(), timeout=60_000)
        panel.scroll_into_view_if_needed()
        start.click()
        page.wait_for_function(
            "s => s.textContent.startsWith('listening')", arg=status.element_handle(), timeout=30_000
        )
    except PlaywrightTimeout:
        message = panel.locator(".avatar-nb-mic-message").inner_text()
        panel.screenshot(path=str(out / "microphone.png"))
        return [f"the panel did not start capturing: status {status.inner_text()!r}, message {message!r}"]
    print(f"  capturing for {mic.capture_seconds:g} s: {status.inner_text()}")
    if mic.interrupt_after is not None and mic.interrupt_after < mic.capture_seconds:
        page.wait_for_timeout(int(mic.interrupt_after * 1000))
        panel.locator("button.avatar-nb-mic-interrupt").click()
        print(f"  Interrupt pressed after {mic.interrupt_after:g} s")
        page.wait_for_timeout(int((mic.capture_seconds - mic.interrupt_after) * 1000))
    else:
        page.wait_for_timeout(int(mic.capture_seconds * 1000))
    panel.locator("button.avatar-nb-mic-stop").click()
    problems: list[str] = []
    try:
        page.wait_for_function("s => s.textContent.startsWith('done')", arg=status.element_handle(), timeout=60_000)
    except PlaywrightTimeout:
        problems.append(f"the run did not end after Stop: status {status.inner_text()!r}")
    print(f"  after Stop: {status.inner_text()}")
    panel.scroll_into_view_if_needed()
    page.wait_for_timeout(500)  # the final redraw
    panel.screenshot(path=str(out / "microphone.png"))
    message = panel.locator(".avatar-nb-mic-message")
    if message.is_visible():
        problems.append(f"the panel shows an error: {message.inner_text()!r}")
    n_svg = panel.locator(".avatar-nb-mic-view svg").count()
    if n_svg < 3:
        problems.append(f"the panel shows {n_svg} SVG views; expected the waveform, the traces and the face")
    if "first frame" not in panel.locator(".avatar-nb-mic-stats").inner_text():
        problems.append("the panel's latency line is missing")
    # save the kernel's Timeline from a cell appended below the last one
    mic.timeline.parent.mkdir(parents=True, exist_ok=True)
    mic.timeline.unlink(missing_ok=True)
    append_cell(page, f"{mic.panel}.timeline.save({str(mic.timeline)!r})")
    deadline = time.monotonic() + 30
    while not mic.timeline.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if not mic.timeline.exists():
        problems.append(f"the notebook did not save its Timeline to {mic.timeline}")
    return problems


def check_capture(mic: MicrophoneCheck) -> list[str]:
    """Compare the Timeline the kernel captured with the fake microphone's WAV file."""
    import numpy as np
    import soundfile

    from avatar_nb.audio import prepare_audio
    from avatar_nb.timeline import Timeline

    tl = Timeline.load(mic.timeline)
    captured = tl.audio
    if captured is None or captured.size < tl.sample_rate // 2:
        return [f"the Timeline holds {0 if captured is None else captured.size} captured samples"]
    data, rate = soundfile.read(str(mic.wav), dtype="float32", always_2d=True)
    reference = np.frombuffer(prepare_audio(data.mean(axis=1), rate, target_rate=tl.sample_rate), dtype="<i2")
    captured_f, reference_f = captured.astype(np.float64), reference.astype(np.float64)
    whole, lag = best_alignment(captured_f, reference_f)
    ncc, slips = blockwise_alignment(captured_f, reference_f, tl.sample_rate)
    cap = tl.meta.get("capture", {})
    expected = int(tl.audio_duration * tl.fps)
    print(f"  captured {captured.size / tl.sample_rate:.2f} s ({cap.get('device', '?')}, page rate "
          f"{cap.get('capture_rate')}); normalised cross-correlation with {mic.wav.name}: {ncc:.3f} "
          f"({BLOCK_SECONDS:g} s blocks each aligned; {len(slips)} slip(s) of the alignment"
          + "".join(f", {d * 1000:+.1f} ms at {t:.2f} s" for t, d in slips)
          + f"); one alignment for the whole capture: {whole:.3f} at {lag / tl.sample_rate:.3f} s into the file")
    print(f"  keyframes {tl.n_keyframes} of {expected} for the audio; requests {tl.requests['status'].tolist()}; "
          f"first frame {tl.first_frame_latency * 1000:.0f} ms, latency p50 "
          f"{np.nanmedian(tl.latency) * 1000:.0f} ms; gaps {cap.get('gaps')}, rejected {cap.get('rejected')}")
    problems = []
    if not ncc >= mic.min_ncc:
        problems.append(f"captured audio matches {mic.wav.name} with a correlation of {ncc:.3f} < {mic.min_ncc}")
    if tl.n_keyframes < 0.9 * expected:
        problems.append(f"{tl.n_keyframes} keyframes for {tl.audio_duration:.2f} s of captured audio (expected ~{expected})")
    statuses = tl.requests["status"].tolist()
    wanted = ["complete"] if mic.interrupt_after is None else ["interrupted", "complete"]
    if statuses != wanted:
        problems.append(f"request statuses {statuses}, expected {wanted}")
    if tl.meta.get("pacing") != "capture":
        problems.append(f"the Timeline says pacing {tl.meta.get('pacing')!r}, not 'capture'")
    if cap.get("gaps") or cap.get("rejected"):
        problems.append(f"capture gaps {cap.get('gaps')} / rejected chunks {cap.get('rejected')}: {tl.errors[:3]}")
    return problems


BLOCK_SECONDS = 0.25


def blockwise_alignment(captured: Any, reference: Any, rate: int) -> tuple[float, list[tuple[float, float]]]:
    """Normalised cross-correlation of ``captured`` with ``reference`` (played in a loop),
    each :data:`BLOCK_SECONDS` of it aligned on its own: the energy-weighted mean over the
    blocks, and the slips, ``(capture time, change of offset)`` in seconds, where the best
    offset moved by more than a millisecond from one block to the next.

    A browser's audio input can drop or repeat a few milliseconds when its audio thread
    misses a deadline (on a loaded machine, about once in a few seconds); one alignment
    for the whole capture would score such a run as unrelated audio.
    """
    import numpy as np

    block = int(BLOCK_SECONDS * rate)
    scores, weights, lags = [], [], []
    for start in range(0, captured.size - block + 1, block):
        piece = captured[start : start + block]
        energy = float(np.sum(piece**2))
        if energy <= 0:
            continue
        score, lag = best_alignment(piece, reference)
        scores.append(score)
        weights.append(energy)
        lags.append((start, (lag - start) % reference.size))
    if not scores:
        return 0.0, []
    # a near-silent block aligns anywhere: slips are looked for among the others only
    floor = 0.1 * float(np.median(weights))
    lags = [pair for pair, weight in zip(lags, weights) if weight >= floor]
    slips = []
    for (_, previous), (start, lag) in itertools.pairwise(lags):
        moved = (lag - previous + reference.size // 2) % reference.size - reference.size // 2
        if abs(moved) > rate / 1000:
            slips.append((start / rate, moved / rate))
    return float(np.average(scores, weights=weights)), slips


def best_alignment(captured: Any, reference: Any) -> tuple[float, int]:
    """Highest normalised cross-correlation of ``captured`` against ``reference`` played in
    a loop, and the offset into ``reference`` where it is found."""
    import numpy as np

    n = captured.size
    looped = np.tile(reference, n // reference.size + 2)[: reference.size + n]
    size = 1 << int(np.ceil(np.log2(looped.size + n)))
    corr = np.fft.irfft(np.fft.rfft(looped, size) * np.conj(np.fft.rfft(captured, size)), size)[: reference.size]
    energy = np.concatenate(([0.0], np.cumsum(looped**2)))
    window = np.sqrt(np.maximum(energy[n : n + reference.size] - energy[: reference.size], 1e-12))
    ncc = corr / (window * max(float(np.sqrt(np.sum(captured**2))), 1e-12))
    lag = int(np.argmax(ncc))
    return float(ncc[lag]), lag


def write_fake_microphone(path: Path, seconds: float = 6.0, rate: int = 48000) -> Path:
    """Speech-like audio for the fake microphone (a browser captures at 48 kHz)."""
    import soundfile

    from avatar_nb.audio import speech_like

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), speech_like(seconds, rate, seed=21), rate, subtype="PCM_16")
    return path


# ----------------------------------------------------------------------------- the explorer

EXPLORER_CELLS = [
    ("import time\n"
    "import avatar_nb as an\n"
    "from avatar_nb.timeline_pyramid import RunSeries, TimelinePyramid, synthetic_timeline\n"
    "tl = synthetic_timeline(3600.0, n_expression=50)\n"
    "tl.keyframes, tl.media_time, tl.latency, tl.lateness  # the Timeline's own arrays, as after a run\n"
    "t = time.perf_counter(); pyramid = TimelinePyramid(RunSeries.from_timeline(tl)); built = time.perf_counter() - t\n"
    "print(f'PYRAMID {tl.n_keyframes} keyframes, {tl.audio.size} samples: built in {built * 1000:.0f} ms, '\n"
    "      f'{pyramid.nbytes / 1e6:.1f} MB')"),
    "called = time.time()\nex = an.explore(tl)  # builds the Timeline's pyramid, then the view\n"
    "print(f'CALLED {called * 1000:.1f}')\nex",
]


def explorer_notebook(path: Path) -> int:
    """Write the explorer pass's notebook (a synthetic 1-hour run, explored); its code cells."""
    return write_notebook(path, EXPLORER_CELLS)


def write_notebook(path: Path, cells: list[str]) -> int:
    """Write a notebook of these code cells; their count."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code) for code in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return len(nb.cells)


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def pinch_in_browser(page: Any, x: float, y: float, span: Any) -> list[str]:
    """Two fingers on a touch screen (CDP touch events): spread from 100 to 300 px, then
    pinch back; the span shown must shrink about 3x, then grow back."""
    cdp = page.context.new_cdp_session(page)

    def gesture(start: float, end: float) -> None:
        def points(d: float) -> list[dict[str, float]]:
            return [{"x": x - d / 2, "y": y, "id": 0}, {"x": x + d / 2, "y": y, "id": 1}]

        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": points(start)})
        for k in range(1, 7):
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": points(start + (end - start) * k / 6)})
            page.wait_for_timeout(20)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        page.wait_for_timeout(100)

    page.keyboard.press("+")  # from the whole run to a quarter of it: room to zoom either way
    page.keyboard.press("+")
    page.wait_for_timeout(100)
    before = span()
    gesture(100, 300)
    spread = span()
    gesture(300, 100)
    back = span()
    print(f"  pinch: span {before:.1f} s, fingers spread 3x -> {spread:.1f} s, pinched back -> {back:.1f} s")
    if not (before / 3.6 < spread < before / 2.4 and before / 1.25 < back < before * 1.25):
        return [f"pinch zoom: span {before:.2f} s -> {spread:.2f} s -> {back:.2f} s (wanted about 1/3, then back)"]
    return []


def explorer_in_browser(url: str, n_code: int, out: Path, timeout: float, interactions: int = 200,
                        seed: int = 5) -> list[str]:
    """The explorer pass: run the notebook, then script ``interactions`` inputs into the
    explorer (zooms from the whole hour to 100 ms, pans, cursor clicks, keys), each timed
    in the page from its input event to the frame that drew it; print the summary line
    and save screenshots at several zoom levels."""
    import random

    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    problems: list[str] = []
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, has_touch=True)  # touch: the pinch
        console_errors: list[str] = []
        page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: console_errors.append(f"page error: {exc}"))
        run_all_cells(page, url)
        try:
            page.wait_for_function("() => (window.__avatarNbExplorer || []).some(r => r.firstPaint !== null)",
                                   timeout=timeout * 1000)
        except PlaywrightTimeout:
            page.screenshot(path=str(out / "explorer-failed.png"))
            browser.close()
            return ["the explorer did not paint: " + "; ".join(console_errors[:5])]
        built = page.locator(".jp-OutputArea-output").filter(has_text="PYRAMID").first.inner_text().strip()
        print(f"  {built.removeprefix('PYRAMID ')}")
        first_paint = page.evaluate("() => window.__avatarNbExplorer[0].firstPaint")
        called = page.locator(".jp-OutputArea-output").filter(has_text="CALLED").first.inner_text()
        since_call = page.evaluate("() => window.__avatarNbExplorer[0].firstPaintEpoch") - float(called.split()[-1])
        stage = page.locator(".avatar-nb-explorer-stage").first
        stage.scroll_into_view_if_needed()
        page.wait_for_timeout(500)  # the first prefetch
        box = stage.bounding_box()
        left, right = box["x"] + 100, box["x"] + box["width"] - 20
        mid_y = box["y"] + 120
        stage.click(position={"x": box["width"] / 2, "y": 120})  # focus (and a first cursor)
        page.wait_for_timeout(300)
        base = page.evaluate("() => window.__avatarNbExplorer[0].stats.length")

        def wait_for(count: int) -> bool:
            try:
                page.wait_for_function(f"() => window.__avatarNbExplorer[0].stats.length >= {count}", timeout=10_000)
                return True
            except PlaywrightTimeout:
                return False

        def span() -> float:
            v = page.evaluate("() => window.__avatarNbExplorer[0].view")
            return v[1] - v[0]

        def shot(name: str) -> None:
            page.wait_for_timeout(150)
            stage.locator("xpath=..").locator("xpath=..").screenshot(path=str(out / f"explorer-{name}.png"))

        shot("hour")
        done = 0
        lost = 0

        def act(kind: str) -> None:
            nonlocal done, lost
            before = base + done
            x = rng.uniform(left, right)
            if kind == "zoom-in" or kind == "zoom-out":
                page.mouse.move(x, mid_y)
                page.mouse.wheel(0, -300 if kind == "zoom-in" else 300)
            elif kind == "pan":
                page.mouse.move(x, mid_y)
                page.mouse.down()
                page.mouse.move(x + rng.choice([-1, 1]) * rng.uniform(40, 250), mid_y)
                ok = wait_for(before + 1)
                page.mouse.up()
                done += 1
                lost += not ok
                return
            elif kind == "click":
                page.mouse.click(x, mid_y)
            elif kind == "step":
                page.keyboard.press(rng.choice(["ArrowLeft", "ArrowRight"]))
            elif kind == "key-in":
                page.keyboard.press("+")
            elif kind == "key-out":
                page.keyboard.press("-")
            elif kind == "all":
                page.keyboard.press("0")
            done += 1
            lost += not wait_for(before + 1)

        # down from the whole hour to 100 ms, screenshots on the way
        marks = {"minute": 60.0, "second": 1.0}
        while span() > 0.1 and done < interactions:
            act("zoom-in")
            for name, at in list(marks.items()):
                if span() <= at:
                    shot(name)
                    del marks[name]
        shot("100ms")
        for _ in range(6):
            act("pan")
        act("click")
        shot("100ms-cursor")
        for _ in range(4):
            act("step")
        # then a mix at every scale
        kinds = ["zoom-in"] * 4 + ["zoom-out"] * 4 + ["pan"] * 6 + ["click"] * 3 + ["step"] * 2 + ["key-in", "key-out"]
        while done < interactions - 1:
            kind = rng.choice(kinds)
            if kind in ("zoom-in", "key-in") and span() < 0.2:
                kind = "zoom-out"
            if kind in ("zoom-out", "key-out") and span() > 3000:
                kind = "zoom-in"
            act(kind)
        act("all")
        stats = page.evaluate("() => window.__avatarNbExplorer[0].stats")[base:]
        problems.extend(pinch_in_browser(page, (left + right) / 2, mid_y, span))
        # play from the cursor: the kernel sends the audio, the page plays it (not timed)
        page.locator(".avatar-nb-explorer-bar button").first.click()
        try:
            page.wait_for_function("() => window.__avatarNbExplorer[0].played", timeout=10_000)
            played = page.evaluate("() => window.__avatarNbExplorer[0].played")
            print(f"  play: {played['seconds']:.1f} s of audio from {played['from']:.2f} s started")
            page.wait_for_timeout(400)
            shot("playing")
            page.locator(".avatar-nb-explorer-bar button").first.click()
        except PlaywrightTimeout:
            problems.append("pressing play did not start the audio")
        record = page.evaluate("() => { const r = window.__avatarNbExplorer[0]; "
                               "return {superseded: r.superseded, requests: r.requests, tiles: r.tiles, bytes: r.bytes, "
                               "rtts: r.rtts, rttsBy: r.rttsBy, draws: r.draws}; }")
        shot("end")
        browser.close()
    ms = [s["ms"] for s in stats]
    trips = [s for s in stats if s["roundTrip"]]
    held = [s["ms"] for s in stats if not s["roundTrip"]]
    kb = sum(s["bytes"] for s in trips) / max(1, len(trips)) / 1024
    # KB per update: what the kernel sent for the interactions that waited for it
    print(f"explorer: {len(stats)} interactions on a 1-hour run, p50 {percentile(ms, 50):.1f} ms, "
          f"p95 {percentile(ms, 95):.1f} ms, max {max(ms, default=float('nan')):.1f} ms, {kb:.1f} KB per update")
    print(f"  with a kernel round trip: {len(trips)}, p50 {percentile([s['ms'] for s in trips], 50):.1f} ms, "
          f"p95 {percentile([s['ms'] for s in trips], 95):.1f} ms; from prefetched tiles (no round trip): "
          f"{len(held)}, p50 {percentile(held, 50):.1f} ms, p95 {percentile(held, 95):.1f} ms, "
          f"max {max(held, default=float('nan')):.1f} ms")
    by_kind: dict[str, list[dict]] = {}
    for s in stats:
        by_kind.setdefault(s["kind"], []).append(s)
    print("  by kind: " + ", ".join(
        f"{k} {len(v)} (p50 {percentile([s['ms'] for s in v], 50):.1f} ms, "
        f"p95 {percentile([s['ms'] for s in v], 95):.1f} ms; input event to its handler p50 "
        f"{percentile([s['input'] for s in v], 50):.1f} ms)" for k, v in sorted(by_kind.items())))
    slow = sorted(stats, key=lambda s: -s["ms"])[:3]
    print("  slowest: " + ", ".join(
        f"{s['kind']} {s['ms']:.0f} ms ({'kernel round trip' if s['roundTrip'] else 'held'}, "
        f"handler after {s['input']:.0f} ms, drawn after {s['queued'] + s['draw']:.0f} ms)" for s in slow))
    print(f"  first paint {since_call:.0f} ms after an.explore(tl) was called (pyramid built in it), "
          f"{first_paint:.0f} ms after the view was created; {record['requests']} requests, "
          f"{record['bytes'] / 1024:.0f} KB received in all ({record['bytes'] / 1024 / max(1, len(stats)):.1f} KB "
          f"per interaction, prefetches included), {record['tiles']} tiles held, "
          f"{record['superseded']} interactions superseded, {lost} not seen to finish")
    print(f"  kernel round trips p50 {percentile(record['rtts'], 50):.1f} ms, p95 {percentile(record['rtts'], 95):.1f} ms; "
          f"drawing a frame p50 {percentile(record['draws'], 50):.1f} ms, p95 {percentile(record['draws'], 95):.1f} ms; "
          f"input event to its handler p50 {percentile([s['input'] for s in stats], 50):.1f} ms, "
          f"to the frame's start p50 {percentile([s['queued'] for s in stats], 50):.1f} ms")
    print("  round trips by message: " + ", ".join(
        f"{k} {len(v)} (p50 {percentile(v, 50):.1f} ms, p95 {percentile(v, 95):.1f} ms)" for k, v in record["rttsBy"].items()))
    print(f"  screenshots in {out}")
    if len(stats) < interactions * 0.9:
        problems.append(f"only {len(stats)} of {interactions} interactions were recorded")
    problems.extend(f"browser console: {e[:300]}" for e in console_errors if "explorer" in e.lower() or "page error" in e)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, default=ROOT / "notebooks" / "01_quickstart.ipynb")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "browser-check")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds for the whole notebook to run")
    parser.add_argument("--microphone", action="store_true",
                        help="capture from the notebook's MicrophonePanel with a fake microphone and check it")
    parser.add_argument("--wav", type=Path, default=None,
                        help="the fake microphone's WAV file (default: generated speech in <out>/fake-microphone.wav)")
    parser.add_argument("--capture-seconds", type=float, default=4.0, help="how long to capture")
    parser.add_argument("--timeline", type=Path, default=None,
                        help="where to save the captured Timeline (default <out>/microphone.npz)")
    parser.add_argument("--panel", default="panel", help="the notebook variable holding the MicrophonePanel")
    parser.add_argument("--min-ncc", type=float, default=0.9, help="least normalised cross-correlation accepted")
    parser.add_argument("--interrupt-after", type=float, default=None,
                        help="press Interrupt this many seconds into the capture (two requests expected)")
    parser.add_argument("--explorer", action="store_true",
                        help="the explorer pass: a synthetic 1-hour run explored by 200 scripted interactions")
    parser.add_argument("--interactions", type=int, default=200, help="interactions of the explorer pass")
    parser.add_argument("--player", action="store_true",
                        help="the player pass: show() of a synthetic 1-hour run, its audio player a window at a time")
    args = parser.parse_args()
    if args.explorer:
        return explorer_main(args)
    if args.player:
        return player_main(args)
    mic = None
    if args.microphone:
        out = args.out.resolve()
        wav = args.wav.resolve() if args.wav else write_fake_microphone(out / "fake-microphone.wav")
        if not wav.is_file():
            parser.error(f"--wav {args.wav}: no such file")
        timeline = (args.timeline or out / "microphone.npz").resolve()
        mic = MicrophoneCheck(wav, timeline, args.capture_seconds, args.panel, args.min_ncc, args.interrupt_after)
    with tempfile.TemporaryDirectory(prefix="avatar-nb-browser-") as tmp:
        folder = Path(tmp) / "notebooks"
        folder.mkdir()
        shutil.copy(args.notebook, folder / args.notebook.name)
        cells = json.loads(args.notebook.read_text())["cells"]
        n_code = sum(c["cell_type"] == "code" for c in cells)
        log = args.out / "jupyterlab.log"
        args.out.mkdir(parents=True, exist_ok=True)
        print(f"running {args.notebook.name} in JupyterLab + headless Chromium")
        with jupyterlab(folder, log) as url:
            problems = []
            if mic is not None:  # first browsers that get no microphone, then the fake one
                for refusal in REFUSALS:
                    print(f"  a browser that gets no microphone: {refusal}")
                    problems += run_notebook(url.format(path=args.notebook.name), n_code, args.out / refusal,
                                             args.timeout, refusal=refusal)
                print("  a fake microphone playing", mic.wav)
            problems += run_notebook(url.format(path=args.notebook.name), n_code, args.out, args.timeout, mic)
    if mic is not None and mic.timeline.exists():
        problems.extend(check_capture(mic))
        print(f"  Timeline saved to {mic.timeline}")
    for problem in problems:
        print("PROBLEM:", problem)
    print("browser check " + ("failed" if problems else "passed") + f"; screenshots in {args.out}")
    return 1 if problems else 0


def explorer_main(args: argparse.Namespace) -> int:
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="avatar-nb-browser-") as tmp:
        folder = Path(tmp) / "notebooks"
        folder.mkdir()
        n_code = explorer_notebook(folder / "explore.ipynb")
        print("the explorer on a synthetic 1-hour run in JupyterLab + headless Chromium")
        with jupyterlab(folder, out / "jupyterlab.log") as url:
            problems = explorer_in_browser(url.format(path="explore.ipynb"), n_code, out, args.timeout,
                                           args.interactions)
    for problem in problems:
        print("PROBLEM:", problem)
    print("explorer check " + ("failed" if problems else "passed") + f"; screenshots in {out}")
    return 1 if problems else 0


# ----------------------------------------------------------------------------- the player

PLAYER_CELLS = [
    "import avatar_nb as an\nfrom avatar_nb.timeline_pyramid import synthetic_timeline\n"
    "tl = synthetic_timeline(3600.0, n_expression=8)",
    "an.show(tl)",
]


def player_in_browser(url: str, out: Path, timeout: float) -> list[str]:
    """The player pass: ``show()`` of a 1-hour run, whose audio player holds one window of it.
    The run bar seeks to 30:00 (a window asked of the kernel, the keyframe readout follows),
    playback crosses that window's end into the next, the keyframe slider's last keyframe
    seeks the player into the run's last window; saves ``player.png``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    problems: list[str] = []
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True,
                                    args=CHROMIUM_ARGS + ["--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        console_errors: list[str] = []
        page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: console_errors.append(f"page error: {exc}"))
        run_all_cells(page, url)
        audio = "document.querySelector('audio')"
        bar = f"{audio}.parentElement.querySelector('input[type=range]')"
        label = f"{audio}.parentElement.querySelector('span').textContent"
        readout = page.locator(".widget-html").filter(has_text="media time")

        def step(what: str, action: str | None, *, shows: str = "", until: str = "", wait: float = 30_000) -> bool:
            """Run ``action`` in the page, then wait until the keyframe readout ``shows`` a text
            or the expression ``until`` holds; a problem if neither comes within ``wait`` ms."""
            if action:
                page.evaluate(action)
            try:
                if shows:
                    readout.filter(has_text=shows).first.wait_for(timeout=wait)
                else:
                    page.wait_for_function(until, timeout=wait)
            except PlaywrightTimeout:
                problems.append(f"{what}: not {shows or until!r} within {wait / 1000:g} s")
                return False
            return True

        def seek_bar(t: float) -> str:
            return f"{bar}.value = {t}; {bar}.dispatchEvent(new Event('input')); {bar}.dispatchEvent(new Event('change'))"

        ok = step("the player", None, until=f"{audio} && {audio}.readyState >= 1 && !!({bar})", wait=timeout * 1000)
        if ok:
            print(f"  the player holds {page.evaluate(f'{audio}.duration'):.0f} s of the hour "
                  f"(a {page.evaluate(f'{audio}.src.length') / 1e6:.2f} MB data URL)")
            t0 = time.monotonic()
            if step("the run bar to 30:00", seek_bar(1800), shows="media time 1800.00 s"):
                print(f"  run bar to 30:00: a window from the kernel, keyframe shown in {time.monotonic() - t0:.2f} s")
            step("playing across the window's end", seek_bar(1853.5), shows="media time 1853.")
            if step("playing across the window's end", f"{audio}.play()", shows="media time 1857."):
                print(f"  played across a window's end: {readout.first.inner_text().splitlines()[1]}")
            page.evaluate(f"{audio}.pause()")
            slider = page.locator(".widget-slider").filter(has_text="keyframe").first.locator(".widget-readout")
            slider.click()
            page.keyboard.press("Control+A")
            page.keyboard.type("89999")
            page.keyboard.press("Enter")
            if step("the last keyframe seeks the player", None, until=f"{label}.startsWith('59:59')"):
                print(f"  last keyframe: the player at {page.evaluate(label)}")
            player = page.locator("audio").first
            player.scroll_into_view_if_needed()
            player.locator("xpath=..").screenshot(path=str(out / "player.png"))
        browser.close()
    # page errors and the widgets' own; not JupyterLab's (a 404 for an optional resource)
    problems += [f"browser console: {e[:300]}" for e in console_errors
                 if "page error" in e or "widget" in e.lower() or "player" in e.lower()]
    return problems


def player_main(args: argparse.Namespace) -> int:
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="avatar-nb-browser-") as tmp:
        folder = Path(tmp) / "notebooks"
        folder.mkdir()
        write_notebook(folder / "player.ipynb", PLAYER_CELLS)
        print("show() of a synthetic 1-hour run, its audio player, in JupyterLab + headless Chromium")
        with jupyterlab(folder, out / "jupyterlab.log") as url:
            problems = player_in_browser(url.format(path="player.ipynb"), out, args.timeout)
    for problem in problems:
        print("PROBLEM:", problem)
    print("player check " + ("failed" if problems else "passed") + f"; screenshot in {out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
