# avatar_nb developer commands. Each target creates or reuses .venv and installs what it
# needs there when the sources changed: `demo` the package alone (compiling the Cython
# core: _pcm, _envelope, _flame, _wire, _pyramid), `test` the package with its test extra, `docs`,
# `lint` and `lab` their own dependency groups on top.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --quiet --disable-pip-version-check
BASE_STAMP := $(VENV)/.avatar_nb-installed
TEST_STAMP := $(VENV)/.avatar_nb-test-installed

.PHONY: demo test install docs lint lab build proto bench browser-check clean

demo: $(BASE_STAMP)
	$(VENV)/bin/avatar-nb demo

test: $(TEST_STAMP)
	$(PY) -m pytest

install: $(BASE_STAMP)

# what a wheel's data files do and an editable install does not: enable the Jupyter
# server extension avatar_nb.jupyter_server for servers run from the venv
JUPYTER_CONFIG = install -D -m 644 jupyter-config/jupyter_server_config.d/avatar_nb.json \
	$(VENV)/etc/jupyter/jupyter_server_config.d/avatar_nb.json

CORE_SOURCES := $(wildcard src/avatar_nb/*.pyx src/avatar_nb/*.pxd src/avatar_nb/*.h)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(BASE_STAMP): pyproject.toml setup.py $(CORE_SOURCES) jupyter-config/jupyter_server_config.d/avatar_nb.json | $(PY)
	@echo "installing avatar_nb into $(VENV) (compiles the Cython core; about a minute the first time)"
	$(PIP) install -e .
	$(JUPYTER_CONFIG)
	touch $(BASE_STAMP)

$(TEST_STAMP): pyproject.toml setup.py $(CORE_SOURCES) jupyter-config/jupyter_server_config.d/avatar_nb.json | $(PY)
	@echo "installing avatar_nb with its test extra into $(VENV)"
	$(PIP) install -e '.[test]'
	$(JUPYTER_CONFIG)
	touch $(BASE_STAMP) $(TEST_STAMP)

# the documentation site (Sphinx, pydata-sphinx-theme, myst-nb executing the notebooks),
# offline, every warning an error; open build/docs/index.html
docs: $(BASE_STAMP)
	$(PIP) install --group docs
	$(PY) -m sphinx -b html -W --keep-going -q docs build/docs
	@echo "documentation: build/docs/index.html"

lint: $(PY)
	$(PIP) install --group lint
	$(PY) -m ruff check .

# JupyterLab on notebooks/, in the venv (the notebooks use the embedded local service)
lab: $(BASE_STAMP)
	$(PIP) install --group lab
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

# recompile the compiled core in place after editing a .pyx, .pxd or .h
# (the editable install picks it up)
build: $(BASE_STAMP)
	$(PY) setup.py build_ext --inplace

# regenerate src/avatar_nb/proto/message_pb2.py(+.pyi) from proto/message.proto
proto: $(TEST_STAMP)
	$(PY) tools/gen_proto.py

bench: $(TEST_STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# notebook 01 in JupyterLab in headless Chromium, screenshots in build/browser-check; then
# notebook 07's microphone panel without a microphone, then fed by a fake one playing a WAV
# file (Start, Interrupt after 2 s, Stop), its captured audio and Timeline checked
# (build/browser-check/microphone); then the explorer on a synthetic 1-hour run, 200 scripted
# zooms, pans, clicks and keys timed in the page (build/browser-check/explorer); then show() of
# a 1-hour run, its audio player seeking and playing across the windows it asks the kernel for
# (build/browser-check/player)
# (needs Debian's chromium: apt-get install -y chromium; not part of `make test`)
browser-check: $(TEST_STAMP)
	$(PIP) install -e '.[browser]'
	$(PY) tools/browser_check.py --out build/browser-check
	$(PY) tools/browser_check.py --notebook notebooks/07_microphone.ipynb --microphone --interrupt-after 2 \
		--out build/browser-check/microphone
	$(PY) tools/browser_check.py --explorer --out build/browser-check/explorer
	$(PY) tools/browser_check.py --player --out build/browser-check/player

clean:
	rm -rf build
	rm -f $(patsubst %.pyx,%.c,$(wildcard src/avatar_nb/*.pyx)) src/avatar_nb/_*.html src/avatar_nb/_*.so
