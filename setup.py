"""Build script for avatar_nb's compiled core, ``avatar_nb._pcm``.

Metadata lives in pyproject.toml; this file only declares the Cython extension.

The release build turns Cython's per-index bounds and wraparound checks off for the
whole module: every read of input bytes in ``_pcm`` is checked by hand against the
buffer's length before it happens (a decoder is fed hostile bytes), and array indices
come from loops whose bounds were validated first.

Set ``AVATAR_NB_CHECKED_BUILD=1`` to compile with those checks switched back on,
``-O1 -g`` and AddressSanitizer (``-fsanitize=address``): the fuzz tests are run
against such a build as well as against the release one, so an index the code forgot
to check shows up as an IndexError or an ASan report instead of a silent read.
Running it needs the ASan runtime preloaded, see tests/README.md.
"""

import os

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

extensions = [
    Extension(
        "avatar_nb._pcm",
        ["src/avatar_nb/_pcm.pyx"],
        include_dirs=[np.get_include(), "src/avatar_nb"],
        depends=["src/avatar_nb/_kernels.h"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        # force=True under the checked build, so switching modes always recompiles
        force=checked,
    ),
)
