#!/usr/bin/env bash
# Builds a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) from Go modules, once, and caches the binaries under
#   ${CACHE_DIR:-$HOME/.cache/tiktok-service}/controlplane/<version-key>/bin/
# Versions are pinned in scripts/controlplane.env (shared with the Python side, which
# computes the same <version-key>). Only a Go toolchain is required.
#
# Why build from modules: upstream release tarballs are not reachable from the build
# environment, but the Go module proxy is. The cold build takes ~7 minutes on 2 cores;
# a warm run (binaries present) is a no-op that returns immediately.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=controlplane.env
source "$SCRIPT_DIR/controlplane.env"
# shellcheck source=k8s-modules.sh
source "$SCRIPT_DIR/k8s-modules.sh"

BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)
VERSION_KEY="kubernetes-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}"
DEST="${CACHE_DIR:-$HOME/.cache/tiktok-service}/controlplane/${VERSION_KEY}"
BIN_DIR="$DEST/bin"

log() { printf '[controlplane %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

all_present() {
  local b
  for b in "${BINARIES[@]}"; do
    [ -x "$BIN_DIR/$b" ] || return 1
  done
}

# Fast path: the bin dir only ever appears through an atomic rename of a complete build.
if all_present; then
  log "binaries up to date in $BIN_DIR"
  exit 0
fi

find_go

mkdir -p "$DEST"
# Serialise concurrent builds (e.g. two terminals running `make controlplane`).
exec 9>"$DEST/.lock"
if command -v flock >/dev/null; then
  flock 9
  if all_present; then
    log "binaries built by a concurrent run in $BIN_DIR"
    exit 0
  fi
  # We hold the lock, so any leftover work dir is from a build that was SIGKILLed.
  rm -rf "$DEST"/.build.*
fi

WORK="$(mktemp -d "$DEST/.build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/bin"
mkdir -p "$STAGE" "$WORK/k8s" "$WORK/etcd"

export CGO_ENABLED=0
START=$SECONDS
log "building control plane $VERSION_KEY with $("$GO" version)"

# --- Kubernetes -------------------------------------------------------------------
# The module setup (staging-module replaces, version stamping) is shared with the kubelet build.
k8s_module_init "$WORK/k8s" tiktok-service.local/controlplane-build \
  kube-apiserver kube-controller-manager kube-scheduler kubectl
LDFLAGS="$(k8s_ldflags)"

# Sequential on purpose: kube-apiserver alone peaks at ~2.3 GB RSS while linking.
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  t=$SECONDS
  log "building $cmd ..."
  (cd "$WORK/k8s" && "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$STAGE/$cmd" "k8s.io/kubernetes/cmd/$cmd")
  log "built $cmd in $((SECONDS - t))s"
done

# --- etcd -------------------------------------------------------------------------
log "building etcd $ETCD_VERSION ..."
t=$SECONDS
(
  cd "$WORK/etcd"
  "$GO" mod init tiktok-service.local/etcd-build >/dev/null 2>&1
  "$GO" get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  "$GO" build -trimpath -ldflags "-s -w" -o "$STAGE/etcd" go.etcd.io/etcd/server/v3
)
log "built etcd in $((SECONDS - t))s"

# --- publish atomically -------------------------------------------------------------
"$STAGE/kube-apiserver" --version
"$STAGE/etcd" --version | head -1
rm -rf "$BIN_DIR"   # only reachable if a previous publish was incomplete by hand
mv "$STAGE" "$BIN_DIR"
log "done in $((SECONDS - START))s: $BIN_DIR"
