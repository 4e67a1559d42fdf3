# TikTok Service — developer entry points. `make dev` runs the product locally, `make test` tests it.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CACHE_DIR ?= $(HOME)/.cache/tiktok-service

.PHONY: venv deps controlplane kubelet dev test unit bench lint fmt schemas clean image kind-up kind-down

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# Debian packages the local stack and the tests run: PostgreSQL and Redis servers.
deps:
	@bash scripts/install-deps.sh

# Kubernetes control plane binaries (etcd, kube-apiserver, ...), built once from Go modules into $(CACHE_DIR).
controlplane:
	@bash scripts/build-controlplane.sh

# A real node for the end-to-end tests: kubelet (same Go module setup as the control plane) and the
# pods' sandbox (pause) image, built once into $(CACHE_DIR). containerd and runc come from `make deps`.
kubelet: deps
	@CACHE_DIR=$(CACHE_DIR) bash scripts/build-kubelet.sh

dev: venv deps controlplane
	$(PY) -m tiktok_service dev

# --- For users with Docker: the same stack on a kind cluster -----------------------------
KIND_CLUSTER ?= tiktok-service
IMAGE ?= tiktok-service:dev

# The product image: Docker where a daemon answers, podman otherwise (a local stand-in for the
# base image is made from Debian packages when no registry is reachable). See scripts/build-image.sh.
image:
	IMAGE=$(IMAGE) CACHE_DIR=$(CACHE_DIR) bash scripts/build-image.sh

kind-up: image
	kind get clusters | grep -qx $(KIND_CLUSTER) || kind create cluster --name $(KIND_CLUSTER) --config deploy/kind/cluster.yaml
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)
	kubectl apply -f crds/
	kubectl apply -f deploy/

kind-down:
	kind delete cluster --name $(KIND_CLUSTER)

test: venv deps controlplane kubelet
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest tests/unit

bench: venv deps
	$(PY) -m benchmarks

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

fmt: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The event contract: JSON Schema files, the README's event table and the CRD's type list.
schemas: venv
	$(PY) -m tiktok_service.schemas

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
