#!/usr/bin/env bash
# Shared by the scripts that build Kubernetes commands from Go modules (sourced, not run):
# scripts/build-controlplane.sh and scripts/build-kubelet.sh.
#
# k8s.io/kubernetes is not meant to be imported: its go.mod points the staging modules at
# ./staging/... directories. A consumer module must therefore replace each of them with the
# matching published v0.X.Y module. The list is read from the upstream go.mod so a version
# bump needs no edit here.
#
# One module setup serves every command we build (K8S_COMMANDS): it is resolved once
# (`go mod tidy`) and its go.mod/go.sum are cached under $CACHE/k8s-module/kubernetes-<version>/,
# so the kubelet built after the control plane (or with it) never resolves the graph again.
#
# Expects GO (the toolchain) and KUBERNETES_VERSION (from controlplane.env) to be set, and a
# `log` function.

# Every Kubernetes command the project builds (the control plane's and the test node's).
K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)

# k8s_module_init DIR: a Go module in DIR that builds k8s.io/kubernetes/cmd/CMD for each of
# K8S_COMMANDS, with its dependencies resolved (go mod tidy, or its cached result).
k8s_module_init() {
  local dir="$1" module=tiktok-service.local/kubernetes-build
  local saved="${CACHE_DIR:-$HOME/.cache/tiktok-service}/k8s-module/kubernetes-${KUBERNETES_VERSION}"
  set -- "${K8S_COMMANDS[@]}"
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
  if [ -s "$saved/go.sum" ] && cmp -s "$dir/tools.go" "$saved/tools.go"; then
    log "module setup from $saved"
    cp "$saved/go.mod" "$saved/go.sum" "$dir/"
    return 0
  fi
  log "go mod tidy ($*)"
  (cd "$dir" && "$GO" mod tidy)
  # Published by an atomic rename: a concurrent or killed run never leaves half a setup.
  mkdir -p "$saved"
  local tmp
  tmp="$(mktemp -d "$saved.XXXXXX")"
  cp "$dir/go.mod" "$dir/go.sum" "$dir/tools.go" "$tmp/"
  rm -rf "$saved" 2>/dev/null || true
  mv -T "$tmp" "$saved" 2>/dev/null || rm -rf "$tmp"
}

# k8s_build_jobs: how many packages `go build` compiles and links at once: the CPUs, but no more
# links than the memory holds (kube-apiserver peaks at ~2.3 GB RSS while linking; 3 GB each).
# K8S_BUILD_JOBS overrides.
k8s_build_jobs() {
  if [ -n "${K8S_BUILD_JOBS:-}" ]; then echo "$K8S_BUILD_JOBS"; return; fi
  local cpus mem_gb
  cpus="$(nproc 2>/dev/null || echo 2)"
  mem_gb="$(awk '/^MemAvailable:/ {print int($2 / 1048576)}' /proc/meminfo 2>/dev/null || echo 4)"
  local by_mem=$((mem_gb / 3))
  [ "$by_mem" -ge 1 ] || by_mem=1
  echo $((cpus < by_mem ? cpus : by_mem))
}

# k8s_build DIR OUT CMD...: one `go build` for every CMD into OUT (shared packages compiled once,
# the link of one overlapping the compile of the next), version-stamped, without DWARF.
# K8S_NICE: the build's niceness (0).
k8s_build() {
  local dir="$1" out="$2" cmd pkgs=()
  shift 2
  for cmd in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
  mkdir -p "$out"
  (cd "$dir" && CGO_ENABLED=0 nice -n "${K8S_NICE:-0}" "$GO" build -p "$(k8s_build_jobs)" -trimpath -ldflags "$(k8s_ldflags)" \
    -o "$out/" "${pkgs[@]}")
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
