# petseg: train, package, serve and show a cats-and-dogs segmentation model.
#   make run    the whole demo       make test   the test suite (what CI runs)
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
PETSEG := $(VENV)/bin/petseg
STAMP  := $(VENV)/.installed
EXPORT_DIR ?= exported/petseg

include config/train-demo.mk

# Real-data training: make train DATA=/path/to/oxford-iiit-pet [RUN=runs/oxford TRAIN_ARGS='...']
# Epochs, input size, batch size...: `petseg train --help` holds the defaults.
RUN        ?= runs/train
TRAIN_ARGS ?=
# The archive is the handler package, whole: any change in it rebuilds the .mar; the operator's
# tools (petseg/) and the web app do not.
HANDLER_FILES := $(shell find handler -type f -not -path '*/__pycache__/*')

.PHONY: help setup run train-demo train evaluate archive serve stop bench browser lint format test clean

help:
	@echo "make run          the demo: model (trained if missing), TorchServe and the web page"
	@echo "make setup        create $(VENV) and install everything"
	@echo "make train-demo   synthetic data + demo model, exported to $(EXPORT_DIR)"
	@echo "make train DATA=PATH [RUN=runs/NAME TRAIN_ARGS='--epochs 30 ...']"
	@echo "make evaluate MODEL=PATH DATA=PATH [OUT=folder]"
	@echo "make archive      build model_store/petseg.mar from $(EXPORT_DIR) (trains the demo if missing)"
	@echo "make serve        start TorchServe on 127.0.0.1:8080-8082 with petseg loaded"
	@echo "make stop         stop it"
	@echo "make bench [BENCH_ARGS=--long]  the model's limit vs a naive server vs TorchServe"
	@echo "make test         run the test suite"
	@echo "make lint         ruff check + format check"

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt handler/requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $@

$(DEMO_DATA)/annotations/test.txt: | $(STAMP)
	$(PETSEG) synth $(DEMO_DATA) --n $(DEMO_IMAGES) --seed $(DEMO_SEED)

train-demo: $(DEMO_DATA)/annotations/test.txt
	$(PETSEG) train --data $(DEMO_DATA) --out $(DEMO_RUN) \
		--epochs $(DEMO_EPOCHS) --input-size $(DEMO_INPUT_SIZE) \
		--batch-size $(DEMO_BATCH_SIZE) --lr $(DEMO_LR) --seed $(DEMO_SEED)
	$(PETSEG) evaluate --model $(DEMO_RUN)/best.pt --data $(DEMO_DATA) \
		--seed $(DEMO_SEED) --out $(DEMO_RUN)/eval
	$(PETSEG) export --checkpoint $(DEMO_RUN)/best.pt \
		--metrics $(DEMO_RUN)/eval/metrics.json --out $(EXPORT_DIR) --version 1.0

train: | $(STAMP)
	@test -n "$(DATA)" || { echo "usage: make train DATA=/path/to/dataset"; exit 2; }
	$(PETSEG) train --data $(DATA) --out $(RUN) $(TRAIN_ARGS)
	$(PETSEG) evaluate --model $(RUN)/best.pt --data $(DATA) --out $(RUN)/eval
	$(PETSEG) export --checkpoint $(RUN)/best.pt \
		--metrics $(RUN)/eval/metrics.json --out $(EXPORT_DIR)

evaluate: | $(STAMP)
	@test -n "$(MODEL)" -a -n "$(DATA)" || { echo "usage: make evaluate MODEL=PATH DATA=PATH"; exit 2; }
	$(PETSEG) evaluate --model $(MODEL) --data $(DATA) --out $(or $(OUT),$(MODEL:.pt=)-eval)

# No exported model yet: train the offline demo one.
$(EXPORT_DIR)/model_spec.json:
	$(MAKE) train-demo

archive: model_store/petseg.mar

model_store/petseg.mar: $(EXPORT_DIR)/model_spec.json \
		$(HANDLER_FILES) config/model-config.yaml | $(STAMP)
	$(PETSEG) archive --export-dir $(EXPORT_DIR) --out model_store

run: model_store/petseg.mar
	$(PETSEG) run

serve: model_store/petseg.mar
	$(PETSEG) serve

# Throughput and latency, ~5 minutes: results in bench/results/ (JSON + PNG chart).
bench: $(EXPORT_DIR)/model_spec.json | $(STAMP)
	$(PY) -m bench.run --export-dir $(EXPORT_DIR) $(BENCH_ARGS)

stop: | $(STAMP)
	$(PETSEG) stop

lint: | $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: | $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Debian's Chromium and its matching driver for the real-browser tests (test tools cannot
# download browsers here).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		  chromium chromium-driver >/dev/null; }

test: browser | $(STAMP)
	$(MAKE) lint
	timeout -s KILL 1200 $(PY) -m pytest

clean:
	rm -rf runs data exported logs model_store/*.mar .pytest_cache
