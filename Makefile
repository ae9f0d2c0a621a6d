# Set-up and the two README commands. Every install step lives here so a fresh clone works.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0

.PHONY: venv test demo bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# Pin torch first so that resolving the package's `torch>=2.4` range installs nothing more.
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -q

demo: venv
	$(VENV)/bin/longssm demo

bench: venv
	$(VENV)/bin/longssm bench kernels

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
