# Set-up and the two README commands. Every install step lives here so a fresh clone works.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv test demo bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# Pin torch first, then install under constraints.txt (the same pin), so that resolving the
	# package's `torch>=2.4` range or an extra's own torch requirement installs nothing more.
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,bench,hf,eval]'
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -q

demo: venv
	$(VENV)/bin/longssm demo

bench: venv
	$(VENV)/bin/longssm bench kernels --overwrite

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
