# One-command set-up: `make demo` and `make test` each create .venv and install everything first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Hub calls must fail fast offline instead of retrying for ~20 s (set before Python starts).
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test bench lint clean

install: $(VENV)/.installed

# torch first, pinned to the CPU build found locally: an unpinned torch pulls a multi-GB CUDA build.
# torchvision is never installed (its only build here is CUDA-linked and breaks transformers).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet 'torch==2.13.*'
	$(PY) -m pip install --quiet -e '.[eval,train,dev]'
	touch $@

demo: install
	$(PY) examples/demo.py

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2 --durations=15

bench: install
	$(PY) bench/build.py
	$(PY) bench/convert.py
	$(PY) bench/eval.py
	$(PY) bench/train.py
	$(PY) bench/audit.py
	$(PY) bench/audit_duplicates.py
	$(PY) bench/benchmark_build.py

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) demo-out .pytest_cache
