#!/usr/bin/env bash
# The dev install: the chart with values-dev.yaml (Redis, PostgreSQL and the TikTok LIVE simulator
# in the cluster), the product image and the simulator image named as they were loaded into the
# nodes. `make kind-up` runs it against its kind cluster; the dev install's test
# (tests/integration/test_dev_install_kubelet.py) runs it against a real kubelet node.
#
# Environment: HELM (default: the pinned build), IMAGE (tiktok-service:dev), IMAGE_DEV
# (tiktok-service-dev:dev), KUBE_CONTEXT (none: the current context), TIMEOUT (5m).
# Extra arguments go to Helm (e.g. --kubeconfig=...).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELM_VERSION="$(sed -n 's/^HELM_VERSION=//p' "$ROOT/scripts/helm.env")"
HELM="${HELM:-${CACHE_DIR:-$HOME/.cache/tiktok-service}/helm/$HELM_VERSION/bin/helm}"
IMAGE="${IMAGE:-tiktok-service:dev}"
IMAGE_DEV="${IMAGE_DEV:-tiktok-service-dev:dev}"

command -v "$HELM" >/dev/null || bash "$ROOT/scripts/build-helm.sh"
context=()
[ -z "${KUBE_CONTEXT:-}" ] || context=(--kube-context "$KUBE_CONTEXT")

# `--wait-for-jobs`: the access Job (migrations, each component's Redis user and login) has run.
exec "$HELM" upgrade --install tiktok-service "$ROOT/charts/tiktok-service" \
  --namespace tiktok-service --create-namespace "${context[@]}" \
  --values "$ROOT/charts/tiktok-service/values-dev.yaml" \
  --set "image.repository=${IMAGE%:*}" --set "image.tag=${IMAGE##*:}" --set "dev.simulator.image=$IMAGE_DEV" \
  --wait --wait-for-jobs --timeout "${TIMEOUT:-5m}" "$@"
