# Two commands on a fresh machine: `make demo` (train + evaluate on Fashion-MNIST), `make test`.
# Both create .venv; afterwards `source .venv/bin/activate` puts slimgan-train & co. on the PATH.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: setup data demo test lint format bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]"
	@touch $@

data:
	@bash scripts/ensure_fashion_mnist.sh

demo: setup data
	$(VENV)/bin/slimgan-train experiment=fmnist_demo

test: setup data
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup data
	$(PY) experiments/benchmarks/train_step.py

clean:
	rm -rf outputs multirun .pytest_cache
