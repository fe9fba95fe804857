# petseg: train, package, serve and show a cats-and-dogs segmentation model.
#   make run    the whole demo       make test   the test suite (what CI runs)
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXPORT_DIR ?= exported/petseg

include config/train-demo.mk

# Real-data training: make train DATA=/path/to/oxford-iiit-pet [RUN=runs/oxford EPOCHS=30 ...]
RUN        ?= runs/train
EPOCHS     ?= 30
INPUT_SIZE ?= 256
BATCH_SIZE ?= 16
TRAIN_ARGS ?=

.PHONY: help setup run train-demo train evaluate archive serve stop bench browser lint format test clean

help:
	@echo "make run          the demo: model (trained if missing), TorchServe and the web page"
	@echo "make setup        create $(VENV) and install everything"
	@echo "make train-demo   synthetic data + demo model, exported to $(EXPORT_DIR)"
	@echo "make train DATA=PATH [RUN=runs/NAME EPOCHS=N INPUT_SIZE=N TRAIN_ARGS='...']"
	@echo "make evaluate MODEL=PATH DATA=PATH [OUT=folder]"
	@echo "make archive      build model_store/petseg.mar from $(EXPORT_DIR) (trains the demo if missing)"
	@echo "make serve        start TorchServe on 127.0.0.1:8080-8082 with petseg loaded"
	@echo "make stop         stop it"
	@echo "make bench [BENCH_ARGS=--long]  the model's limit vs a naive server vs TorchServe"
	@echo "make test         run the test suite"
	@echo "make lint         ruff check + format check"

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(DEMO_DATA)/annotations/test.txt: | $(STAMP)
	$(PY) -m model_training synth $(DEMO_DATA) --n $(DEMO_IMAGES) --seed $(DEMO_SEED)

train-demo: $(DEMO_DATA)/annotations/test.txt
	$(PY) -m model_training train --data $(DEMO_DATA) --out $(DEMO_RUN) \
		--epochs $(DEMO_EPOCHS) --input-size $(DEMO_INPUT_SIZE) \
		--batch-size $(DEMO_BATCH_SIZE) --lr $(DEMO_LR) --seed $(DEMO_SEED)
	$(PY) -m model_training evaluate --model $(DEMO_RUN)/best.pt --data $(DEMO_DATA) \
		--seed $(DEMO_SEED) --out $(DEMO_RUN)/eval
	$(PY) -m model_training export --checkpoint $(DEMO_RUN)/best.pt \
		--metrics $(DEMO_RUN)/eval/metrics.json --out $(EXPORT_DIR) --version 1.0

train: | $(STAMP)
	@test -n "$(DATA)" || { echo "usage: make train DATA=/path/to/dataset"; exit 2; }
	$(PY) -m model_training train --data $(DATA) --out $(RUN) --epochs $(EPOCHS) \
		--input-size $(INPUT_SIZE) --batch-size $(BATCH_SIZE) $(TRAIN_ARGS)
	$(PY) -m model_training evaluate --model $(RUN)/best.pt --data $(DATA) --out $(RUN)/eval
	$(PY) -m model_training export --checkpoint $(RUN)/best.pt \
		--metrics $(RUN)/eval/metrics.json --out $(EXPORT_DIR)

evaluate: | $(STAMP)
	@test -n "$(MODEL)" -a -n "$(DATA)" || { echo "usage: make evaluate MODEL=PATH DATA=PATH"; exit 2; }
	$(PY) -m model_training evaluate --model $(MODEL) --data $(DATA) --out $(or $(OUT),$(MODEL:.pt=)-eval)

# No exported model yet: train the offline demo one.
$(EXPORT_DIR)/model_spec.json:
	$(MAKE) train-demo

archive: model_store/petseg.mar

model_store/petseg.mar: $(EXPORT_DIR)/model_spec.json $(wildcard handler/*.py) \
		model_training/spec.py model_training/imaging.py model_training/model.py \
		config/model-config.yaml handler/requirements.txt | $(STAMP)
	$(PY) -m handler.archive --export-dir $(EXPORT_DIR) --out model_store

run: model_store/petseg.mar
	$(PY) -m frontend_server.run

serve: model_store/petseg.mar
	$(PY) -m handler.server start

# Throughput and latency, ~5 minutes: results in bench/results/ (JSON + PNG chart).
bench: $(EXPORT_DIR)/model_spec.json | $(STAMP)
	$(PY) -m bench.run --export-dir $(EXPORT_DIR) $(BENCH_ARGS)

stop: | $(STAMP)
	$(PY) -m handler.server stop

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
