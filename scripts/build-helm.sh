#!/usr/bin/env bash
# Builds the Helm CLI from Go modules, once, and caches it under
#   ${CACHE_DIR:-$HOME/.cache/tiktok-service}/helm/<version>/bin/helm
# The version is pinned in scripts/helm.env. Only a Go toolchain is required.
#
# Why build from modules: release tarballs are not reachable from the build environment,
# but the Go module proxy is (same reason as scripts/build-controlplane.sh). A cold build
# takes a few minutes on 2 cores; a warm run (binary present) returns immediately.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=helm.env
source "$SCRIPT_DIR/helm.env"

DEST="${CACHE_DIR:-$HOME/.cache/tiktok-service}/helm/${HELM_VERSION}"
BIN_DIR="$DEST/bin"

log() { printf '[helm %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# Fast path: the bin dir only ever appears through an atomic rename of a complete build.
if [ -x "$BIN_DIR/helm" ]; then
  log "helm $HELM_VERSION up to date in $BIN_DIR"
  exit 0
fi

GO="${GO:-$(command -v go || true)}"
[ -n "$GO" ] || GO=/usr/local/go/bin/go
if ! [ -x "$GO" ]; then
  echo "error: Go toolchain not found (install Go or set GO=/path/to/go)" >&2
  exit 1
fi

mkdir -p "$DEST"
# Serialise concurrent builds (e.g. `make test` in two terminals).
exec 9>"$DEST/.lock"
if command -v flock >/dev/null; then
  flock 9
  if [ -x "$BIN_DIR/helm" ]; then
    log "helm built by a concurrent run in $BIN_DIR"
    exit 0
  fi
  # We hold the lock, so any leftover work dir is from a build that was SIGKILLed.
  rm -rf "$DEST"/.build.*
fi

WORK="$(mktemp -d "$DEST/.build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/bin"
mkdir -p "$STAGE"

START=$SECONDS
log "building helm $HELM_VERSION with $("$GO" version)"
# -mod=mod: resolve from the module's own go.mod (no vendor dir in the module zip).
# The version string is stamped so `helm version` reports the pinned release.
(
  cd "$WORK"
  GOFLAGS=-mod=mod CGO_ENABLED=0 GOBIN="$STAGE" nice "$GO" install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}" \
    "helm.sh/helm/v4/cmd/helm@${HELM_VERSION}"
)

# --- publish atomically -------------------------------------------------------------
"$STAGE/helm" version
rm -rf "$BIN_DIR"   # only reachable if a previous publish was incomplete by hand
mv "$STAGE" "$BIN_DIR"
log "done in $((SECONDS - START))s: $BIN_DIR/helm"
