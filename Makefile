# isrinject developer commands.  `make test` and `make demo` build their own
# virtualenv from PyPI (pinned in requirements*.txt) on a fresh machine;
# `make demo` installs only the runtime requirements.
PYTHON_BOOTSTRAP ?= $(shell PYENV_VERSION=3.12.1 command -v python3.12 >/dev/null 2>&1 && echo "env PYENV_VERSION=3.12.1 python3.12" || echo python3.12)
VENV ?= .venv
PY := $(VENV)/bin/python
# Two stamps: `make demo` needs only the runtime requirements (requirements.txt
# and isrinject itself); `make test`, `lint`, `bench` and `docs` add the test
# and documentation requirements on top.  Each stamp is remade when its files change.
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: venv venv-runtime venv-size test test-fast lint demo figure bench docs docs-check clean

venv: $(DEV_STAMP)
venv-runtime: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(RUNTIME_STAMP)

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-test.txt requirements-docs.txt
	$(PY) -m pip install --quiet -r requirements-test.txt -r requirements-docs.txt
	touch $(DEV_STAMP)

# Disk used by the virtualenv (the README quotes it for `make demo`).
venv-size:
	@du -sh $(VENV)

# The end-to-end tests spend much of their time waiting on pipetask, bps,
# parsl and Slurm subprocesses, so three workers keep two cores busy; one
# worker per test file keeps each file's module fixtures (repositories,
# servers) in one process.  PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 3

test: $(DEV_STAMP)
	$(PY) -m pytest -q -ra -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: $(DEV_STAMP)
	$(PY) -m pytest -q -ra -m "not slow" $(PYTEST_ARGS)

# ruff and mypy as configured in pyproject.toml (the lsst/images rule set).
lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The README / documentation figures are drawn by code; tests/test_readme_figure.py fails when the
# committed doc/_static/forum_cutout_u.png or doc/_static/bright_stars.png is not what it draws.
figure: $(RUNTIME_STAMP)
	$(PY) -m isrinject.demo.figure doc/_static/forum_cutout_u.png doc/_static/bright_stars.png

demo: $(RUNTIME_STAMP) figure
	$(VENV)/bin/isrinject demo $(DEMO_ARGS)

bench: $(DEV_STAMP)
	$(PY) bench/run_bench.py $(BENCH_ARGS)

# The documentation site (doc/README.md): warnings are errors, every cross-reference checked.
docs: $(DEV_STAMP) figure
	$(PY) -m sphinx -b html -W --keep-going -n -d doc/_build/doctrees $(SPHINXOPTS) doc doc/_build/html

# The built site as a reader sees it, in headless Chromium (Debian's chromium,
# installed here when missing and possible, as .ci/run does): screenshots of
# the index, pixel model, task, tutorial and one API page in
# doc/_build/screenshots/ to look at, and a check that MathJax typeset every
# equation from the site's own copy (no raw \( or \[ TeX left).
docs-check: docs
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	    && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	    || echo "warning: chromium missing and cannot be installed here" >&2
	$(PY) doc/check_site.py doc/_build/html doc/_build/screenshots

clean:
	rm -rf $(VENV) demo_output .pytest_cache doc/_build doc/isrinject/api doc/isrinject/_generated
