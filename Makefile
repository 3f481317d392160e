# isrinject developer commands.  `make test` and `make demo` build their own
# virtualenv from PyPI (pinned in requirements*.txt) on a fresh machine.
PYTHON_BOOTSTRAP ?= $(shell PYENV_VERSION=3.12.1 command -v python3.12 >/dev/null 2>&1 && echo "env PYENV_VERSION=3.12.1 python3.12" || echo python3.12)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast lint demo figure bench docs clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt requirements-docs.txt pyproject.toml
	test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt -r requirements-docs.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The end-to-end tests spend much of their time waiting on pipetask, bps,
# parsl and Slurm subprocesses, so three workers keep two cores busy; one
# worker per test file keeps each file's module fixtures (repositories,
# servers) in one process.  PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 3

test: $(STAMP)
	$(PY) -m pytest -q -ra -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow" $(PYTEST_ARGS)

# ruff and mypy as configured in pyproject.toml (the lsst/images rule set).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The README / documentation figure is drawn by code; tests/test_readme_figure.py fails when the
# committed doc/_static/forum_cutout_u.png is not what it draws.
figure: $(STAMP)
	$(PY) -m isrinject.demo.figure doc/_static/forum_cutout_u.png

demo: $(STAMP) figure
	$(VENV)/bin/isrinject demo $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) bench/run_bench.py $(BENCH_ARGS)

# The documentation site (doc/README.md): warnings are errors, every cross-reference checked.
docs: $(STAMP) figure
	$(PY) -m sphinx -b html -W --keep-going -n -d doc/_build/doctrees $(SPHINXOPTS) doc doc/_build/html

clean:
	rm -rf $(VENV) demo_output .pytest_cache doc/_build doc/isrinject/api doc/isrinject/_generated
