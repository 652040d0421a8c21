# Everything a fresh machine needs: `make demo` (main job) and `make test`.
# Both create .venv on first use and install mtakd with a pinned CPU PyTorch.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test install clean-runs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch is pinned here (CPU wheel); a looser pin would pull a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0 -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# runs/demo holds only what the demo itself made: start it afresh each time
demo: $(STAMP)
	rm -rf runs/demo
	$(PY) -m mtakd demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest

clean-runs:
	rm -rf runs/demo
