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
# An annotation tool's export trains too: DATA=export.json TRAIN_ARGS='--images MEDIA' (it is
# converted into $(RUN)/data, which the evaluation then reads: docs/labelling.md).
# Epochs, input size, batch size...: `petseg train --help` holds the defaults.
RUN        ?= runs/train
TRAIN_ARGS ?=
# Containers (`.venv/bin/python -m deploy.images --help`): the images' tag, the pod's name and
# its page's port on 127.0.0.1; more build options, e.g. IMAGE_ARGS='--flavour cpu'.
IMAGE_TAG  ?= latest
POD        ?= petseg
POD_PORT   ?= 5080
IMAGE_ARGS ?=
# The archive is the handler package, whole: any change in it rebuilds the .mar; the operator's
# tools (petseg/) and the web app do not.
HANDLER_FILES := $(shell find handler -type f -not -path '*/__pycache__/*')

.PHONY: help setup run train-demo train evaluate archive serve stop bench browser prometheus containers \
	image image-run image-stop kubectl k8s-config manifests balancer cluster cluster-stop lint format test-packages test \
	test-fast clean

help:
	@echo "make run          the demo: model (trained if missing), TorchServe and the web page"
	@echo "make setup        create $(VENV) and install everything"
	@echo "make train-demo   synthetic data + demo model, exported to $(EXPORT_DIR)"
	@echo "make train DATA=PATH [RUN=runs/NAME TRAIN_ARGS='--epochs 30 ...']"
	@echo "make evaluate MODEL=PATH DATA=PATH [OUT=folder]"
	@echo "make archive      build model_store/petseg.mar from $(EXPORT_DIR) (trains the demo if missing)"
	@echo "make serve        start TorchServe on 127.0.0.1:8080-8082 with petseg loaded"
	@echo "make stop         stop it"
	@echo "make cluster N=2  N instances behind nginx on 127.0.0.1:$(CLUSTER_PORT); make cluster-stop"
	@echo "make cluster MIN=1 MAX=4   as many as the load asks for, between the two"
	@echo "make bench [BENCH_ARGS=--long]  pipeline limit vs a naive server vs TorchServe"
	@echo "make image        the model-server and web images (podman), from $(EXPORT_DIR)"
	@echo "make image-run    both in a pod, the page on 127.0.0.1:$(POD_PORT); make image-stop"
	@echo "make manifests [OVERLAY=gpu]  the Kubernetes manifests, rendered (deploy/k8s)"
	@echo "make k8s-config  copy config/ into deploy/k8s/base/config (manifests does it first)"
	@echo "make test         run the test suite"
	@echo "make test-fast    unit and model tests (no TorchServe, browser or containers)"
	@echo "make lint         ruff check + format check"

setup: $(STAMP)

# pip byte-compiles one file at a time; compileall uses every core (the install: 81 -> 61 s on
# 2 cores). Like pip's, it passes over what it cannot compile (a Python 3.12-only file of
# torch's tests), so its status is not the setup's.
$(STAMP): requirements.txt requirements-dev.txt handler/requirements.txt \
		frontend_server/requirements.txt deploy/model-server/requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -r requirements-dev.txt
	$(PY) -m compileall -qq -j 0 $(VENV)/lib || true
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $@

$(DEMO_DATA)/annotations/test.txt: | $(STAMP)
	$(PETSEG) synth $(DEMO_DATA) --n $(DEMO_IMAGES) --seed $(DEMO_SEED)

train-demo: $(DEMO_DATA)/annotations/test.txt
	$(PETSEG) train --data $(DEMO_DATA) --out $(DEMO_RUN) \
		--epochs $(DEMO_EPOCHS) --input-size $(DEMO_INPUT_SIZE) \
		--batch-size $(DEMO_BATCH_SIZE) --lr $(DEMO_LR) --seed $(DEMO_SEED) \
		--progress $(DEMO_PROGRESS)
	$(PETSEG) evaluate --model $(DEMO_RUN)/best.pt --data $(DEMO_DATA) \
		--seed $(DEMO_SEED) --out $(DEMO_RUN)/eval
	$(PETSEG) export --checkpoint $(DEMO_RUN)/best.pt \
		--metrics $(DEMO_RUN)/eval/metrics.json --out $(EXPORT_DIR) --version 1.0

train: | $(STAMP)
	@test -n "$(DATA)" || { echo "usage: make train DATA=/path/to/dataset"; exit 2; }
	$(PETSEG) train --data $(DATA) --out $(RUN) $(TRAIN_ARGS)
	$(PETSEG) evaluate --model $(RUN)/best.pt --out $(RUN)/eval --data \
		$$(test -f $(RUN)/data/petseg-export.json && echo $(RUN)/data || echo $(DATA))
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

# The page at once; meanwhile `make archive` (the demo model trained first if there is none, its
# progress on the page), then TorchServe, and the page segments.
run: | $(STAMP)
	$(PETSEG) run --prepare '$(MAKE) --no-print-directory archive' --progress $(DEMO_PROGRESS)

serve: model_store/petseg.mar
	$(PETSEG) serve

# Throughput and latency of two models, ~8 minutes: results in bench/results/ (JSON + PNG chart).
bench: $(EXPORT_DIR)/model_spec.json | $(STAMP)
	$(PY) -m bench.run --export-dir $(EXPORT_DIR) $(BENCH_ARGS)

stop: | $(STAMP)
	$(PETSEG) stop

# N instances (TorchServe + web proxy each) behind nginx on 127.0.0.1:$(CLUSTER_PORT).
N ?= 2
CLUSTER_PORT ?= 8000
# MAX=4 (and MIN=1): the keeper scales the fleet on its load between the two (docs/several-instances.md)
MIN ?=
MAX ?=
cluster: model_store/petseg.mar balancer
	$(PETSEG) cluster start --port $(CLUSTER_PORT) \
		$(if $(MAX),$(if $(MIN),--min $(MIN)) --max $(MAX),--count $(N))

cluster-stop: | $(STAMP)
	$(PETSEG) cluster stop

lint: | $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: | $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The Debian packages the tests use, each installed when its command is missing (as root).
APT_INSTALL := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq

# Debian's Chromium and its matching driver for the real-browser tests (test tools cannot
# download browsers here).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ $(APT_INSTALL) \
		  chromium chromium-driver >/dev/null; }

# Debian's Prometheus (2.42) and promtool: the monitoring tests scrape TorchServe and the proxy
# with it, and check and unit-test the alert rules (config/prometheus/).
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
		{ $(APT_INSTALL) \
		  --no-install-recommends prometheus >/dev/null; }

# podman, the runtime it needs here (crun refuses this kind of VM's cgroups) and debootstrap for a
# base image where no image registry answers: for the images and their tests.
containers:
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null || \
		{ $(APT_INSTALL) \
		  podman runc debootstrap >/dev/null; }

# Layers are reused while their inputs are unchanged: a rebuild with nothing new takes seconds.
image: $(EXPORT_DIR)/model_spec.json containers | $(STAMP)
	$(PY) -m deploy.images build --tag $(IMAGE_TAG) --export-dir $(EXPORT_DIR) $(IMAGE_ARGS)

image-run: image
	$(PY) -m deploy.images run --tag $(IMAGE_TAG) --name $(POD) --port $(POD_PORT)

image-stop: containers | $(STAMP)
	$(PY) -m deploy.images stop --name $(POD)

# kubectl for `kubectl kustomize` (kustomize v5; no cluster needed): the machine's, else the
# upstream binary from PyPI into $(VENV). Debian's kubernetes-client (1.20) is too old to read
# deploy/k8s, and Google's apt repository is not reachable here.
KUBECTL = $(if $(wildcard $(VENV)/bin/kubectl),$(VENV)/bin/kubectl,kubectl)
kubectl: | $(STAMP)
	@$(KUBECTL) version --client 2>/dev/null | grep -q '^Kustomize Version: v5' || \
		$(PY) -m pip install --quiet --require-hashes -r deploy/k8s/kubectl-requirements.txt

# The ConfigMap's files: copies of config/ beside the base kustomization, which kustomize reads
# only from its own folder (deploy/k8s/base/kustomization.yaml says why). Copied when they
# differ, with a note on stderr: stdout is the manifests.
K8S_CONFIG := $(wildcard deploy/k8s/base/config/*)
k8s-config:
	@for copy in $(K8S_CONFIG); do \
		source=config/$${copy##*/}; \
		cmp -s $$source $$copy || { cp $$source $$copy && echo "$$copy: copied from $$source" >&2; }; \
	done

# make manifests OVERLAY=gpu | kubectl apply -f -   (or, with the copies up to date, kubectl
# apply -k deploy/k8s/overlays/gpu)
OVERLAY ?= cpu
manifests: kubectl k8s-config
	@$(KUBECTL) kustomize deploy/k8s/overlays/$(OVERLAY)

# Debian's nginx: the balancer of `make cluster` and of the cluster tests.
balancer:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
		{ $(APT_INSTALL) \
		  nginx-light >/dev/null; }

# pytest's own per-test timeout (pyproject.toml) catches a hung test; the kill is the last
# resort for a hung session and stays well inside CI's 90 minutes on a slow machine.
# The suite runs on two processes (pytest-xdist; TEST_JOBS=0 for one), each given one test
# module at a time, so a module's servers start once for its tests (docs/development.md has
# the fresh-clone figures). test-fast, whose modules start no server, deals out single tests:
# 81-85 s on two processes against 98 s on one, on 2 cores.
TEST_JOBS ?= 2
XDIST := $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS))
PYTEST_JOBS := $(if $(XDIST),$(XDIST) --dist loadfile --no-loadscope-reorder)

# One after another (apt holds one lock), while pip fills the venv beside them (make test): on a
# fresh machine each side takes minutes.
test-packages:
	@for packages in browser prometheus containers balancer; do \
		$(MAKE) --no-print-directory $$packages || exit 1; done

test:
	@$(MAKE) --no-print-directory -j2 test-packages setup
	@$(MAKE) --no-print-directory kubectl
	$(MAKE) lint
	timeout -s KILL 4500 $(PY) -m pytest $(PYTEST_JOBS)

# The inner loop: the unit tests and the model's (a tiny model trained in-process); no
# TorchServe, no browser, no containers.
test-fast: | $(STAMP)
	$(PY) -m pytest -q $(XDIST) tests/unit tests/model

clean:
	rm -rf runs data exported logs model_store/*.mar .pytest_cache
