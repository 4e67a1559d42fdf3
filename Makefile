# TikTok Service — developer entry points. `make dev` runs the product locally, `make test` tests it.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CACHE_DIR ?= $(HOME)/.cache/tiktok-service

.PHONY: venv deps controlplane kubelet helm prebuild prebuild-k8s manifests dev test unit bench chaos lint fmt schemas clean image image-dev standins kind-up kind-down

# The product (`tiktok_service`) and, beside it, the developer tooling (`dev/`: `tiktok-service-dev`),
# which the product's wheel and image never contain.
$(VENV)/.installed: pyproject.toml dev/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]' -e ./dev
	touch $@

venv: $(VENV)/.installed

# Debian packages the local stack and the tests run: PostgreSQL and Redis servers.
deps:
	@bash scripts/install-deps.sh

# Kubernetes control plane binaries (etcd, kube-apiserver, ...), built once from Go modules into $(CACHE_DIR).
controlplane:
	@bash scripts/build-controlplane.sh

# Helm, pinned in scripts/helm.env, built once from Go modules into $(CACHE_DIR) (HELM=helm to use your own).
HELM_VERSION := $(shell sed -n 's/^HELM_VERSION=//p' scripts/helm.env)
HELM ?= $(CACHE_DIR)/helm/$(HELM_VERSION)/bin/helm

helm:
	@bash scripts/build-helm.sh

# The plain manifests in deploy/ are rendered from charts/tiktok-service (values-manifests.yaml).
manifests:
	@command -v $(HELM) >/dev/null || bash scripts/build-helm.sh
	HELM=$(HELM) $(PYTHON) scripts/render_manifests.py

# A real node for the end-to-end tests: kubelet (same Go module setup as the control plane) and the
# pods' sandbox (pause) image, built once into $(CACHE_DIR). containerd and runc come from `make deps`.
kubelet: deps
	@CACHE_DIR=$(CACHE_DIR) bash scripts/build-kubelet.sh

dev: venv deps controlplane
	$(PY) -m tiktok_service_dev dev

# --- For users with Docker: the same stack on a kind cluster -----------------------------
KIND_CLUSTER ?= tiktok-service
IMAGE ?= tiktok-service:dev
IMAGE_DEV ?= tiktok-service-dev:dev

# The product image: Docker where a daemon answers, podman otherwise (a local stand-in for the
# base image is made from Debian packages when no registry is reachable). See scripts/build-image.sh.
image:
	IMAGE=$(IMAGE) CACHE_DIR=$(CACHE_DIR) bash scripts/build-image.sh

# The simulator image (Dockerfile.dev): the product image plus the dev distribution, same engine.
image-dev: image
	TARGET=dev IMAGE=$(IMAGE_DEV) PRODUCT_IMAGE=$(IMAGE) CACHE_DIR=$(CACHE_DIR) bash scripts/build-image.sh

# Where no registry is reachable (podman): stand-ins for the dev install's redis and postgres
# images, made from Debian packages and tagged with the official names (scripts/build-standins.sh).
standins:
	CACHE_DIR=$(CACHE_DIR) bash scripts/build-standins.sh

# The chart with values-dev.yaml: Redis, PostgreSQL and the TikTok LIVE simulator in the cluster
# (scripts/dev-install.sh, which the dev install's test runs on a real kubelet node too).
kind-up: image image-dev
	@command -v $(HELM) >/dev/null || bash scripts/build-helm.sh
	kind get clusters | grep -qx $(KIND_CLUSTER) || kind create cluster --name $(KIND_CLUSTER) --config deploy/kind/cluster.yaml
	kind load docker-image $(IMAGE) $(IMAGE_DEV) --name $(KIND_CLUSTER)
	HELM=$(HELM) IMAGE=$(IMAGE) IMAGE_DEV=$(IMAGE_DEV) KUBE_CONTEXT=kind-$(KIND_CLUSTER) bash scripts/dev-install.sh

kind-down:
	kind delete cluster --name $(KIND_CLUSTER)

# The kubelet is built with the control plane (one `go build`) when `make test` builds both.
test: export WITH_KUBELET := 1
test: venv deps controlplane kubelet helm
	$(PY) -m pytest

# Everything `make test` uses, built side by side (CI runs it first, .ci/run): the Go builds are
# CPU-bound, the images, the stand-ins and the venv mostly wait on the network and the disk, so
# they overlap. Each job's output is printed whole when it ends (-O); any failure fails the run.
# The tests then find the images' layers built (same Dockerfiles: podman reuses every layer).
PREBUILD_JOBS ?= 5
prebuild: export WITH_KUBELET := 1
prebuild: deps
	@$(MAKE) --no-print-directory -j$(PREBUILD_JOBS) -O venv prebuild-k8s helm image-dev standins

# One after the other (the kubelet comes out of the control plane's `go build`; the pause image follows).
prebuild-k8s:
	@$(MAKE) --no-print-directory controlplane
	@$(MAKE) --no-print-directory kubelet

unit: venv
	$(PY) -m pytest tests/unit

bench: venv deps
	$(PY) -m benchmarks

# The whole stack under one fault at a time (about 15 minutes; `CHAOS_ARGS=--quick`, `--only <scenario>`).
chaos: venv deps controlplane
	$(PY) -m benchmarks.chaos $(CHAOS_ARGS)

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
	$(PY) -m tiktok_service_dev schemas

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
