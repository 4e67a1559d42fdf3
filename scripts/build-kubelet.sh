#!/usr/bin/env bash
# Builds the node side of the test cluster, once, and caches it under
#   ${CACHE_DIR:-$HOME/.cache/tiktok-service}/kubelet/kubernetes-<version>/bin/kubelet
#   ${CACHE_DIR:-$HOME/.cache/tiktok-service}/pause/<source-hash>/pause.tar
# * kubelet: from Go modules, with the same module setup as the control plane
#   (scripts/k8s-modules.sh: resolved once, cached) and the version pinned in
#   scripts/controlplane.env. `make test` builds it with the control plane in one `go build`
#   (WITH_KUBELET=1 scripts/build-controlplane.sh), which leaves nothing to do here.
# * pause.tar: the pods' sandbox image (scripts/pause/main.go, a static binary), saved as an
#   image archive named $PAUSE_IMAGE for `ctr images import`; containerd is configured with it
#   as `sandbox_image`, so nothing is ever pulled.
# Each is published by an atomic rename under a lock: concurrent runs build once, a killed run
# leaves nothing half-written. Cold on its own: ~5.5 minutes on 2 cores (~1 with the control
# plane's Go build cache and module setup warm); warm: a no-op (0.1 s). Needs a Go toolchain and podman (make deps).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=controlplane.env
source "$SCRIPT_DIR/controlplane.env"
# shellcheck source=k8s-modules.sh
source "$SCRIPT_DIR/k8s-modules.sh"

CACHE="${CACHE_DIR:-$HOME/.cache/tiktok-service}"
KUBELET_DEST="$CACHE/kubelet/kubernetes-${KUBERNETES_VERSION}"
PAUSE_HASH="$(sha256sum "$SCRIPT_DIR/pause/main.go" | cut -c1-12)"
PAUSE_DEST="$CACHE/pause/$PAUSE_HASH"
NICE=(nice -n 10)

log() { printf '[kubelet %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# with_lock DEST CHECK BUILD: run BUILD (which fills $WORK) unless CHECK passes, holding DEST/.lock.
with_lock() {
  local dest="$1" check="$2" build="$3"
  if "$check"; then
    log "up to date in $dest"
    return 0
  fi
  mkdir -p "$dest"
  exec 9>"$dest/.lock"
  flock 9
  if "$check"; then
    log "built by a concurrent run in $dest"
    exec 9>&-
    return 0
  fi
  rm -rf "$dest"/.build.*  # we hold the lock: leftovers are from a killed build
  WORK="$(mktemp -d "$dest/.build.XXXXXX")"
  "$build"
  rm -rf "$WORK"
  exec 9>&-
}

kubelet_present() { [ -x "$KUBELET_DEST/bin/kubelet" ]; }

build_kubelet() {
  local started=$SECONDS
  find_go
  log "building kubelet $KUBERNETES_VERSION with $("$GO" version)"
  k8s_module_init "$WORK/k8s"
  K8S_NICE=10 k8s_build "$WORK/k8s" "$WORK/bin" kubelet
  "$WORK/bin/kubelet" --version
  rm -rf "$KUBELET_DEST/bin"
  mv "$WORK/bin" "$KUBELET_DEST/bin"
  log "built kubelet in $((SECONDS - started))s: $KUBELET_DEST/bin/kubelet"
}

pause_present() { [ -s "$PAUSE_DEST/pause.tar" ]; }

build_pause() {
  find_go
  command -v podman >/dev/null || { echo "error: podman missing (run: make deps)" >&2; exit 1; }
  log "building the pause image $PAUSE_IMAGE"
  mkdir -p "$WORK/src" "$WORK/rootfs"
  cp "$SCRIPT_DIR/pause/main.go" "$WORK/src/"
  (cd "$WORK/src" && "$GO" mod init tiktok-service.local/pause >/dev/null 2>&1 &&
    CGO_ENABLED=0 "${NICE[@]}" "$GO" build -trimpath -ldflags "-s -w" -o "$WORK/rootfs/pause" .)
  tar -C "$WORK/rootfs" --numeric-owner --owner=0 --group=0 -cf "$WORK/rootfs.tar" pause
  podman import --quiet --change 'ENTRYPOINT ["/pause"]' --change 'USER 65535:65535' \
    "$WORK/rootfs.tar" "$PAUSE_IMAGE" >/dev/null
  podman save --quiet --format docker-archive -o "$WORK/pause.tar" "$PAUSE_IMAGE"
  mv "$WORK/pause.tar" "$PAUSE_DEST/pause.tar"
  log "saved $PAUSE_IMAGE to $PAUSE_DEST/pause.tar"
}

with_lock "$KUBELET_DEST" kubelet_present build_kubelet
with_lock "$PAUSE_DEST" pause_present build_pause
