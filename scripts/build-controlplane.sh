#!/usr/bin/env bash
# Builds a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) from Go modules, once, and caches the binaries under
#   ${CACHE_DIR:-$HOME/.cache/tiktok-service}/controlplane/<version-key>/bin/
# Versions are pinned in scripts/controlplane.env (shared with the Python side, which
# computes the same <version-key>). Only a Go toolchain is required.
#
# With WITH_KUBELET=1 (set by `make test`, which needs both) the kubelet is built in the same
# `go build` and published where scripts/build-kubelet.sh caches it.
#
# Why build from modules: upstream release tarballs are not reachable from the build
# environment, but the Go module proxy is. The Kubernetes commands share one module setup and
# one `go build` (scripts/k8s-modules.sh); etcd, its own module, builds beside them. Cold, kubelet
# included: ~15 minutes on 2 cores under load (README); warm (binaries present): a no-op.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=controlplane.env
source "$SCRIPT_DIR/controlplane.env"
# shellcheck source=k8s-modules.sh
source "$SCRIPT_DIR/k8s-modules.sh"

BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)
VERSION_KEY="kubernetes-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}"
CACHE="${CACHE_DIR:-$HOME/.cache/tiktok-service}"
DEST="$CACHE/controlplane/${VERSION_KEY}"
KUBELET_DEST="$CACHE/kubelet/kubernetes-${KUBERNETES_VERSION}"
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
ETCD_PID=""
trap '[ -z "$ETCD_PID" ] || kill "$ETCD_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
STAGE="$WORK/bin"
mkdir -p "$STAGE" "$WORK/k8s" "$WORK/etcd"

export CGO_ENABLED=0
START=$SECONDS
log "building control plane $VERSION_KEY with $("$GO" version)"

COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
if [ "${WITH_KUBELET:-0}" = 1 ] && ! [ -x "$KUBELET_DEST/bin/kubelet" ]; then
  COMMANDS+=(kubelet)
fi

# --- etcd (its own module), beside the Kubernetes build: its download overlaps their compile ----
(
  t=$SECONDS
  cd "$WORK/etcd"
  "$GO" mod init tiktok-service.local/etcd-build >/dev/null 2>&1
  "$GO" get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" 2>&1 | tail -3
  nice -n 5 "$GO" build -trimpath -ldflags "-s -w" -o "$STAGE/etcd" go.etcd.io/etcd/server/v3
  log "built etcd $ETCD_VERSION in $((SECONDS - t))s"
) &
ETCD_PID=$!

# --- Kubernetes: one module setup (shared with the kubelet build), one `go build` ------------
k8s_module_init "$WORK/k8s"
t=$SECONDS
log "building ${COMMANDS[*]} with -p $(k8s_build_jobs) ..."
k8s_build "$WORK/k8s" "$WORK/k8s-bin" "${COMMANDS[@]}"
log "built ${COMMANDS[*]} in $((SECONDS - t))s"
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  mv "$WORK/k8s-bin/$cmd" "$STAGE/$cmd"
done
wait "$ETCD_PID" || { ETCD_PID=""; echo "error: the etcd build failed" >&2; exit 1; }
ETCD_PID=""

# --- the kubelet, published as scripts/build-kubelet.sh would (under its lock) ----------------
if [ -x "$WORK/k8s-bin/kubelet" ]; then
  "$WORK/k8s-bin/kubelet" --version
  mkdir -p "$KUBELET_DEST"
  (
    flock 8
    if ! [ -x "$KUBELET_DEST/bin/kubelet" ]; then
      rm -rf "$KUBELET_DEST/bin"
      mkdir -p "$WORK/kubelet-bin"
      mv "$WORK/k8s-bin/kubelet" "$WORK/kubelet-bin/kubelet"
      mv "$WORK/kubelet-bin" "$KUBELET_DEST/bin"
      log "kubelet: $KUBELET_DEST/bin/kubelet"
    fi
  ) 8>"$KUBELET_DEST/.lock"
fi

# --- publish atomically -------------------------------------------------------------
"$STAGE/kube-apiserver" --version
"$STAGE/etcd" --version | sed -n 1p  # sed reads it all: no SIGPIPE under pipefail
rm -rf "$BIN_DIR"   # only reachable if a previous publish was incomplete by hand
mv "$STAGE" "$BIN_DIR"
log "done in $((SECONDS - START))s: $BIN_DIR"
