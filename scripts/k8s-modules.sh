#!/usr/bin/env bash
# Shared by the scripts that build Kubernetes commands from Go modules (sourced, not run):
# scripts/build-controlplane.sh and scripts/build-kubelet.sh.
#
# k8s.io/kubernetes is not meant to be imported: its go.mod points the staging modules at
# ./staging/... directories. A consumer module must therefore replace each of them with the
# matching published v0.X.Y module. The list is read from the upstream go.mod so a version
# bump needs no edit here.
#
# Expects GO (the toolchain) and KUBERNETES_VERSION (from controlplane.env) to be set, and a
# `log` function.

# k8s_module_init DIR MODULE_NAME CMD...: a Go module in DIR that builds k8s.io/kubernetes/cmd/CMD
# for each CMD, with its dependencies resolved (go mod tidy).
k8s_module_init() {
  local dir="$1" module="$2"
  shift 2
  local minor_patch="${KUBERNETES_VERSION#v1.}"   # 37.2
  local staging_version="v0.${minor_patch}"       # v0.37.2
  local upstream_gomod go_directive staging_modules m cmd
  mkdir -p "$dir"
  log "fetching k8s.io/kubernetes@$KUBERNETES_VERSION go.mod"
  upstream_gomod="$(cd "$dir" && "$GO" mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [ -f "$upstream_gomod" ] || { echo "error: could not download k8s.io/kubernetes go.mod" >&2; return 1; }
  go_directive="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$upstream_gomod")"
  staging_modules="$(sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$upstream_gomod")"
  log "$(echo "$staging_modules" | wc -l) staging modules -> $staging_version"
  {
    echo "module $module"
    echo
    echo "go ${go_directive:-1.26.0}"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    for m in $staging_modules; do echo "	$m => $m $staging_version"; done
    echo ")"
  } >"$dir/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "// Package tools pins the commands we build so \`go mod tidy\` resolves their deps."
    echo "package tools"
    echo
    echo "import ("
    for cmd in "$@"; do echo "	_ \"k8s.io/kubernetes/cmd/$cmd\""; done
    echo ")"
  } >"$dir/tools.go"
  log "go mod tidy ($*)"
  (cd "$dir" && "$GO" mod tidy)
}

# k8s_ldflags: linker flags stamping the version that `<cmd> --version` and the API report.
k8s_ldflags() {
  local minor_patch="${KUBERNETES_VERSION#v1.}"
  local flags="-s -w"
  flags+=" -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
  flags+=" -X k8s.io/component-base/version.gitMajor=1"
  flags+=" -X k8s.io/component-base/version.gitMinor=${minor_patch%%.*}"
  flags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  echo "$flags"
}

# find_go: the Go toolchain (GO, go on PATH, or /usr/local/go), or exit with a clear error.
find_go() {
  GO="${GO:-$(command -v go || true)}"
  [ -n "$GO" ] || GO=/usr/local/go/bin/go
  if ! [ -x "$GO" ]; then
    echo "error: Go toolchain not found (install Go or set GO=/path/to/go)" >&2
    exit 1
  fi
}
