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

GO="${GO:-$(command -v go || true)}"
[ -n "$GO" ] || GO=/usr/local/go/bin/go
if ! [ -x "$GO" ]; then
  echo "error: Go toolchain not found (install Go or set GO=/path/to/go)" >&2
  exit 1
fi

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
# k8s.io/kubernetes is not meant to be imported: its go.mod points the 33 staging
# modules at ./staging/... directories. A consumer module must therefore replace each
# of them with the matching published v0.X.Y module. The list is read from the
# upstream go.mod so a version bump needs no edit here.
K8S_MINOR_PATCH="${KUBERNETES_VERSION#v1.}"      # 37.2
STAGING_VERSION="v0.${K8S_MINOR_PATCH}"          # v0.37.2
K8S_MINOR="${K8S_MINOR_PATCH%%.*}"               # 37

log "fetching k8s.io/kubernetes@$KUBERNETES_VERSION go.mod"
UPSTREAM_GOMOD="$(cd "$WORK/k8s" && "$GO" mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
[ -f "$UPSTREAM_GOMOD" ] || { echo "error: could not download k8s.io/kubernetes go.mod" >&2; exit 1; }
GO_DIRECTIVE="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$UPSTREAM_GOMOD")"
STAGING_MODULES="$(sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$UPSTREAM_GOMOD")"
log "$(echo "$STAGING_MODULES" | wc -l) staging modules -> $STAGING_VERSION"

{
  echo "module tiktok-service.local/controlplane-build"
  echo
  echo "go ${GO_DIRECTIVE:-1.26.0}"
  echo
  echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
  echo
  echo "replace ("
  for m in $STAGING_MODULES; do echo "	$m => $m $STAGING_VERSION"; done
  echo ")"
} >"$WORK/k8s/go.mod"

cat >"$WORK/k8s/tools.go" <<'EOF'
//go:build tools

// Package tools pins the commands we build so `go mod tidy` resolves their deps.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF

log "go mod tidy (kubernetes)"
(cd "$WORK/k8s" && "$GO" mod tidy)

LDFLAGS="-s -w"
LDFLAGS+=" -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
LDFLAGS+=" -X k8s.io/component-base/version.gitMajor=1"
LDFLAGS+=" -X k8s.io/component-base/version.gitMinor=$K8S_MINOR"
LDFLAGS+=" -X k8s.io/component-base/version.gitTreeState=clean"

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
