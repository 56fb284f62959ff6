#!/usr/bin/env bash
# Build avatar_nb's compiled core (_pcm, _envelope, _flame, _wire, _pyramid) with Cython's bounds checks and AddressSanitizer, then run the
# decoder's fuzz, property and contract tests against that build.
#
#   tools/checked_fuzz.sh            # uses .venv/bin/python
#   PYTHON=python3 tools/checked_fuzz.sh
#
# The checked module is built into a temporary folder next to a copy of the package
# (PYTHONPATH puts it ahead of the editable install); the checkout's own modules are not
# touched (setup.py writes the checked build's C files under build/checked). Python's allocator is switched to malloc so that every bytes object is its
# own heap block with ASan red zones around it: a read past the end of an input buffer
# aborts the run with an ASan report.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/pkg"
cp -r src/avatar_nb "$work/pkg/avatar_nb"
rm -f "$work"/pkg/avatar_nb/_*.so "$work"/pkg/avatar_nb/_*.c
AVATAR_NB_CHECKED_BUILD=1 "$PY" setup.py -q build_ext --build-lib "$work/lib" --build-temp "$work/tmp" >/dev/null
cp "$work"/lib/avatar_nb/_*.so "$work/pkg/avatar_nb/"
# libstdc++ right after ASan: C++ extensions (matplotlib's) throw exceptions that ASan
# must be able to intercept
asan="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
echo "checked build:" "$work"/pkg/avatar_nb/_*.so
PYTHONPATH="$work/pkg" PYTHONMALLOC=malloc LD_PRELOAD="$asan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  "$PY" -X faulthandler -m pytest -q -s -p no:cacheprovider -o addopts="" \
  tests/test_fuzz.py tests/test_core_pcm.py tests/test_core_wire.py tests/test_core_flame.py tests/test_pcm_properties.py tests/test_layout.py \
  tests/test_pyramid.py "$@"
