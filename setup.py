"""Build script for avatar_nb's compiled core: ``_pcm`` (audio), ``_envelope`` (the
Message walker), ``_flame`` (the FLAME payload) and ``_wire`` (Message decode/encode).

Metadata lives in pyproject.toml; this file only declares the Cython extensions. Their
shared declarations are ``.pxd`` files next to them (``_reader``, ``_writer``,
``_wire_numbers``, ``_flame_layout``), found through ``include_path``.

The release build turns Cython's per-index bounds and wraparound checks off for the
whole core: every read of input bytes is checked by hand (``_reader.pxd``) against the
buffer's length before it happens (a decoder is fed hostile bytes), and array indices
come from loops whose bounds were validated first.

Set ``AVATAR_NB_CHECKED_BUILD=1`` to compile with those checks switched back on,
``-O1 -g`` and AddressSanitizer (``-fsanitize=address``): the fuzz tests are run
against such a build as well as against the release one, so an index the code forgot
to check shows up as an IndexError or an ASan report instead of a silent read.
Running it needs the ASan runtime preloaded, see tests/README.md.
"""

import os
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

checked = os.environ.get("AVATAR_NB_CHECKED_BUILD", "") not in ("", "0")

directives = {
    "language_level": "3",
    "embedsignature": True,
    "cdivision": True,
    "initializedcheck": False,
    "boundscheck": False,
    "wraparound": False,
}
if checked:
    directives.update(boundscheck=True, wraparound=True, initializedcheck=True, cdivision=False)

compile_args = ["-O1", "-g", "-UNDEBUG", "-fsanitize=address", "-fno-omit-frame-pointer"] if checked else ["-O3"]
link_args = ["-fsanitize=address"] if checked else []

PACKAGE = Path("src/avatar_nb")
SHARED = [str(p) for p in sorted(PACKAGE.glob("*.pxd")) + sorted(PACKAGE.glob("*.h"))]

extensions = [
    Extension(
        f"avatar_nb.{name}",
        [str(PACKAGE / f"{name}.pyx")],
        include_dirs=[np.get_include(), str(PACKAGE)],
        depends=SHARED,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    for name in ("_pcm", "_envelope", "_flame", "_wire", "_pyramid")
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        include_path=["src"],  # `from avatar_nb._reader cimport ...` finds src/avatar_nb/*.pxd
        # force=True under the checked build, so switching modes always recompiles; its C
        # files go to build/checked, so the release build's own are never replaced by them
        force=checked,
        build_dir="build/checked" if checked else None,
    ),
    # enables the Jupyter server extension avatar_nb.jupyter_server (kernel websockets
    # without Nagle's delay) for Jupyter servers of the environment a wheel of avatar_nb is
    # installed in (an editable install leaves data files out: the Makefile copies it)
    data_files=[("etc/jupyter/jupyter_server_config.d", ["jupyter-config/jupyter_server_config.d/avatar_nb.json"])],
)
