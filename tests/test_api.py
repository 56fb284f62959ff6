"""The package's public surface: what `import avatar_nb` loads, and what tab completion shows."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import avatar_nb

HEAVY = ("aiohttp", "websockets", "avatar_nb.server", "avatar_nb.session", "matplotlib", "ipywidgets", "pandas", "pyarrow", "av", "dask")


def test_import_loads_no_heavy_module():
    # a fresh interpreter: this test process has loaded everything already
    code = f"import sys, json, avatar_nb; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_public_names_are_all():
    assert sorted(dir(avatar_nb)) == sorted(avatar_nb.__all__)
    for name in avatar_nb.__all__:
        assert getattr(avatar_nb, name) is not None, name


def test_unknown_attribute_names_it():
    try:
        avatar_nb.no_such_thing
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_default_fps_has_one_home():
    from avatar_nb import flame, protocol

    assert avatar_nb.DEFAULT_FPS is flame.DEFAULT_FPS
    assert "DEFAULT_FPS" not in protocol.__all__
    with pytest.warns(DeprecationWarning, match="import DEFAULT_FPS from avatar_nb.flame"):
        assert protocol.DEFAULT_FPS is flame.DEFAULT_FPS  # the old door still opens, with a warning
