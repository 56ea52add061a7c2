# LLM Engineering: The Hard Way — two commands:
#   make lab    set up .venv (once) and open the curriculum in JupyterLab
#   make test   set up .venv (once) and run the whole test suite (unit tests + every notebook; 10-20 min on 2 cores)
#
# Override the torch build if you need a different one, e.g.
#   make lab TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup lab test lint starters check-starters bench dashboard clean

setup: $(STAMP)

$(PY):
	$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

# Reinstalled only when pyproject.toml changes; torch is installed first (and kept if already present)
# so that the package's torch>=2.2 requirement never pulls a second, different build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

# Containers often run as root, where Jupyter refuses to start without --allow-root.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)

lab: setup
	$(VENV)/bin/jupyter lab $(LAB_ARGS)

test: setup
	$(PY) -m pytest -n auto --dist loadfile $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

# Maintainers: regenerate every starter from its solution. A starter that holds edits (differs from the
# committed one) is copied to .hardway/backups/ first; learners use `hardway reset NN` instead.
starters: setup
	$(PY) -m shared.tooling.notebooks sync

check-starters: setup
	$(PY) -m shared.tooling.notebooks sync --check

# Side-by-side speed benchmarks (training, decoding, BPE) against Hugging Face and naive baselines.
bench: setup
	$(PY) benchmarks/run_all.py

# Project 07's Streamlit sampling dashboard.
dashboard: setup
	$(VENV)/bin/streamlit run 07_entropy_plotter/app.py --browser.gatherUsageStats false

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
