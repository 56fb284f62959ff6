"""Every example notebook runs top to bottom against the embedded local service."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
KERNEL = "avatar-nb-tests"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory, monkeypatch_module):
    """A kernelspec that runs this very interpreter, so notebooks import this avatar_nb."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "avatar_nb tests",
                "language": "python",
            }
        )
    )
    monkeypatch_module.setenv("JUPYTER_PATH", str(root))
    monkeypatch_module.setenv("MPLBACKEND", "agg")
    for var in ("AVATAR_NB_CONSOLE_URL", "AVATAR_NB_INGRESS_URL", "AVATAR_NB_API_KEY"):
        monkeypatch_module.delenv(var, raising=False)
    return root


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_there_are_notebooks():
    names = [p.name for p in NOTEBOOKS]
    for expected in (
        "01_quickstart",
        "02_frame_timing",
        "03_live_session",
        "04_bring_your_own_audio",
        "05_experiments",
        "06_scale_out",
        "07_microphone",
        "08_explore_long_runs",
        "09_tap_and_replay",
    ):
        assert any(n.startswith(expected) for n in names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, kernel_env, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=180,
        resources={"metadata": {"path": str(tmp_path)}},
        allow_errors=False,
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    kinds = {key for o in outputs for key in o.get("data", {})}
    # the notebooks show figures and widgets, not only text
    assert "image/png" in kinds or "application/vnd.jupyter.widget-view+json" in kinds
    assert not any("Traceback" in "".join(o.get("text", "")) for o in outputs if o.output_type == "stream")
    if path.stem == "01_quickstart":  # the run as a video that plays inline
        html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
        assert "<video controls" in html and "data:video/mp4;base64," in html
