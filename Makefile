# avatar_nb developer commands. Each target creates or reuses .venv and installs the
# package (compiling its core: avatar_nb._pcm, _envelope, _flame, _wire) with its test extra
# when the sources changed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.avatar_nb-installed

.PHONY: demo test install build proto bench browser-check clean

demo: $(STAMP)
	$(VENV)/bin/avatar-nb demo

test: $(STAMP)
	$(PY) -m pytest

install: $(STAMP)

CORE_SOURCES := $(wildcard src/avatar_nb/*.pyx src/avatar_nb/*.pxd src/avatar_nb/*.h)

$(STAMP): pyproject.toml setup.py $(CORE_SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

# recompile the compiled core (_pcm, _envelope, _flame, _wire) in place after editing a
# .pyx, .pxd or .h (the editable install picks it up)
build: $(STAMP)
	$(PY) setup.py build_ext --inplace

# regenerate src/avatar_nb/proto/message_pb2.py(+.pyi) from proto/message.proto
proto: $(STAMP)
	$(PY) tools/gen_proto.py

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# notebook 01 in JupyterLab in headless Chromium, screenshots in build/browser-check; then
# notebook 07's microphone panel without a microphone, then fed by a fake one playing a WAV
# file (Start, Interrupt after 2 s, Stop), its captured audio and Timeline checked
# (build/browser-check/microphone)
# (needs Debian's chromium: apt-get install -y chromium; not part of `make test`)
browser-check: $(STAMP)
	$(PY) -m pip install -e '.[browser]'
	$(PY) tools/browser_check.py --out build/browser-check
	$(PY) tools/browser_check.py --notebook notebooks/07_microphone.ipynb --microphone --interrupt-after 2 \
		--out build/browser-check/microphone

clean:
	rm -rf build
	rm -f $(patsubst %.pyx,%.c,$(wildcard src/avatar_nb/*.pyx)) src/avatar_nb/_*.html src/avatar_nb/_*.so
