"""``import avatar_nb`` loads every compiled core module and names the one that is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

import avatar_nb

BLOCK = """
import sys
class Missing:
    def find_spec(self, name, path=None, target=None):
        if name == {name!r}:
            raise ImportError("No module named " + repr(name))
sys.meta_path.insert(0, Missing())
try:
    import avatar_nb
except ImportError as exc:
    print(exc)
else:
    print("imported")
"""


def test_every_compiled_module_is_loaded_with_the_package():
    assert avatar_nb._CORE_MODULES == ("_pcm", "_envelope", "_flame", "_wire", "_pyramid")
    for name in avatar_nb._CORE_MODULES:
        assert f"avatar_nb.{name}" in sys.modules


@pytest.mark.parametrize("name", ["_pcm", "_flame", "_wire", "_pyramid"])
def test_a_missing_compiled_module_is_named(name):
    code = BLOCK.format(name=f"avatar_nb.{name}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert f"compiled core module avatar_nb.{name} is missing or does not load" in out
    assert "_pcm, _envelope, _flame, _wire" in out and "build_ext --inplace" in out
