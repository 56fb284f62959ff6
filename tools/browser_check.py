"""Real-browser check: run a notebook in JupyterLab in headless Chromium and screenshot it.

    .venv/bin/pip install -e '.[browser]'      # jupyterlab, playwright (Python side only)
    apt-get install -y chromium                # the browser: Debian's, not a Playwright download
    .venv/bin/python tools/browser_check.py [--notebook notebooks/01_quickstart.ipynb] [--out build/browser-check]

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
"""

from __future__ import annotations

import argparse
import contextlib
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
from pathlib import Path

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


def run_notebook(url: str, n_code: int, out: Path, timeout: float) -> list[str]:
    """Open ``url`` in headless Chromium, run all cells, check and screenshot; return problems."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        console_errors: list[str] = []
        page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
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
            "SVG face previews": page.locator(".jp-OutputArea-output .widget-html svg").count(),
            "sliders": page.locator(".jp-OutputArea-output .widget-slider").count(),
            "audio players": page.locator(".jp-OutputArea-output audio").count(),
        }
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
        widget_errors = [e for e in console_errors if "widget" in e.lower() or "anywidget" in e.lower()]
        problems.extend(f"browser console: {e[:300]}" for e in widget_errors)
        browser.close()
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, default=ROOT / "notebooks" / "01_quickstart.ipynb")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "browser-check")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds for the whole notebook to run")
    args = parser.parse_args()
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
            problems = run_notebook(url.format(path=args.notebook.name), n_code, args.out, args.timeout)
    for problem in problems:
        print("PROBLEM:", problem)
    print("browser check " + ("failed" if problems else "passed") + f"; screenshots in {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
