# Two entry points: `make demo` (set up, then run the smoke study) and `make test` (set up, then run pytest).
# Everything is installed into .venv by these rules; nothing is assumed to be on the machine but Python 3.11.

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCHATTACKS_VERSION ?= 3.5.1
# Where the CPU build of torch comes from when no local wheel is found (see README, "Installing torch").
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
STUDY ?= experiments/smoke.toml
# pytest workers (pytest-xdist): the suite is mostly one-threaded, so CI's two cores run it in two processes,
# each with one torch thread (tests/conftest.py)
TEST_WORKERS ?= 2

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test install install-test lint clean

demo: install
	$(BIN)/sparsity-latency study $(STUDY)

test: install-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

lint: install-test
	$(BIN)/python -m ruff check src tests benchmarks

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, so that the project's open `torch>=2.2` never pulls a CUDA build onto a CPU-only machine:
# with an NVIDIA GPU, the registry's default (CUDA) build; without one, a local CPU wheel if pip can find
# one offline, else the CPU build from TORCH_CPU_INDEX.
$(VENV)/.torch: | $(BIN)/python
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: installing torch==$(TORCH_VERSION) (CUDA build)"; \
		$(PIP) install -q torch==$(TORCH_VERSION); \
	elif $(PIP) install -q --no-index --no-deps torch==$(TORCH_VERSION) 2>/dev/null; then \
		echo "no GPU: installed the local CPU build of torch==$(TORCH_VERSION)"; \
	else \
		echo "no GPU: installing the CPU build of torch==$(TORCH_VERSION) from $(TORCH_CPU_INDEX)"; \
		$(PIP) install -q --no-deps --index-url $(TORCH_CPU_INDEX) torch==$(TORCH_VERSION); \
	fi
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -q torch==$(TORCH_VERSION) -e .
	touch $@

# torchattacks (the tests' reference attacks) goes in without its dependencies: installed normally it pins an
# old requests and pulls torchvision with a CUDA build of torch. It needs only numpy, scipy and tqdm.
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	$(PIP) install -q --no-deps torchattacks==$(TORCHATTACKS_VERSION)
	touch $@

clean:
	rm -rf $(VENV)
