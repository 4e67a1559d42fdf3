#!/usr/bin/env bash
# Builds the product image (the Dockerfile at the repository root) as ${IMAGE:-tiktok-service:dev},
# or with TARGET=dev the simulator image (Dockerfile.dev: the product image PRODUCT_IMAGE plus the
# dev distribution) as ${IMAGE:-tiktok-service-dev:dev}. `build-image.sh base` only makes sure the
# base image (or its stand-in) is present, for other images built on it (scripts/build-standins.sh).
#
# * With Docker where a Docker daemon answers; with podman (buildah) otherwise.
# * podman never pulls (--pull=never): when the base image (BASE_IMAGE, the Dockerfile's default)
#   is not in local storage and cannot be pulled, a stand-in is made from Debian packages:
#   `debootstrap --variant=minbase` + python3 + a venv at /usr/local, so `pip install --prefix`
#   lays files out as in the official image. The stand-in's root filesystem is cached under
#   ${CACHE_DIR:-~/.cache/tiktok-service}/image-base/ and imported under the base's own name.
# * The host's pip configuration (index, trusted hosts, timeout, proxy) and CA bundle are passed
#   to the build as secrets when present, as behind any corporate proxy.
# * podman runs with runc (crun refuses hybrid cgroup hosts) and ulimits within common hard
#   limits (podman's defaults can exceed them).
#
# Environment: TARGET (product|dev), IMAGE, PRODUCT_IMAGE, BASE_IMAGE, CACHE_DIR, DEBIAN_MIRROR,
# CONTAINER_ENGINE (docker|podman).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${TARGET:-product}"
PRODUCT_IMAGE="${PRODUCT_IMAGE:-tiktok-service:dev}"
case "$TARGET" in
  product) IMAGE="${IMAGE:-tiktok-service:dev}" DOCKERFILE="$ROOT/Dockerfile" ;;
  dev) IMAGE="${IMAGE:-tiktok-service-dev:dev}" DOCKERFILE="$ROOT/Dockerfile.dev" ;;
  *) echo "error: unknown TARGET=$TARGET (product|dev)" >&2; exit 1 ;;
esac
BASE_IMAGE="${BASE_IMAGE:-$(sed -n 's/^ARG BASE_IMAGE=//p' "$ROOT/Dockerfile")}"
CACHE_DIR="${CACHE_DIR:-$HOME/.cache/tiktok-service}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ULIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=4096:4096)

SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT

log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

engine() {
  if [ -n "${CONTAINER_ENGINE:-}" ]; then
    echo "$CONTAINER_ENGINE"
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo docker
  elif command -v podman >/dev/null; then
    echo podman
  else
    echo "error: neither a Docker daemon nor podman is available (make deps installs podman)" >&2
    exit 1
  fi
}

# The official image's fully qualified name, so that `FROM python:...` resolves to the stand-in.
qualified() {
  case "$1" in
    */*/*) echo "$1" ;;
    */*) echo "docker.io/$1" ;;
    *) echo "docker.io/library/$1" ;;
  esac
}

# Debian release and Python version the base names (python:3.11-slim-bookworm -> bookworm 3.11).
base_release() {
  case "$BASE_IMAGE" in
    *-bookworm) echo bookworm ;;
    *-trixie) echo trixie ;;
    *) echo bookworm ;;
  esac
}

make_standin() {
  local name release dir tarball work
  name="$(qualified "$BASE_IMAGE")"
  release="$(base_release)"
  dir="$CACHE_DIR/image-base"
  tarball="$dir/$(echo "$BASE_IMAGE" | tr '/:' '__')-standin-v2.tar"
  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  flock 9
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || { echo "error: debootstrap missing (run: make deps)" >&2; exit 1; }
    log "making a stand-in for $BASE_IMAGE from Debian $release packages (no registry reachable)"
    rm -rf "$dir"/.build.*  # left by a run that was killed (we hold the lock)
    work="$(mktemp -d "$dir/.build.XXXXXX")"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,netbase,tzdata \
      "$release" "$work/rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 \
      || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    # A venv at /usr/local: `pip install --prefix=/install` then `COPY /install /usr/local`
    # lands in its site-packages, exactly as in the official image (Python under /usr/local).
    local wanted got
    wanted="$(echo "$BASE_IMAGE" | sed -n 's/.*python:\([0-9]*\.[0-9]*\).*/\1/p')"
    got="$(chroot "$work/rootfs" /usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [ -n "$wanted" ] && [ "$wanted" != "$got" ]; then
      echo "error: Debian $release has Python $got, $BASE_IMAGE needs $wanted: no stand-in possible" >&2
      exit 1
    fi
    chroot "$work/rootfs" /usr/bin/python3 -m venv /usr/local
    ln -sf python3 "$work/rootfs/usr/local/bin/python"
    # What debian:bookworm-slim (under the official image) leaves out: package caches, docs, translations.
    find "$work/rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    rm -rf "$work/rootfs"/var/lib/apt/lists/* "$work/rootfs"/var/cache/apt/archives/*.deb \
      "$work/rootfs"/var/cache/apt/*.bin "$work/rootfs"/usr/share/doc/* "$work/rootfs"/usr/share/man/* \
      "$work/rootfs"/usr/share/info/*
    tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" .
    mv "$work/rootfs.tar" "$tarball"
    rm -rf "$work"
  fi
  log "importing the stand-in base as $name"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$tarball" "$name" >/dev/null
  flock -u 9
}

# The host's pip settings as one pip.conf, with `cert` pointing at the mounted CA bundle.
pip_secrets() {
  local out="$1" python ca=""
  python="$(command -v python3 || true)"
  [ -n "$python" ] || return 0
  "$python" -m pip config list 2>/dev/null >"$out/pip.list" || true
  ca="$(sed -n "s/^[^.]*\.cert='\(.*\)'$/\1/p" "$out/pip.list" | tail -1)"
  [ -n "$ca" ] || ca="${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-}}"
  {
    echo "[global]"
    # Host paths (find-links, cert) mean nothing inside the build; the CA bundle is mounted instead.
    sed -n "s/^[^.]*\.\(index-url\|extra-index-url\|trusted-host\|timeout\|default-timeout\|proxy\|retries\)='\(.*\)'$/\1 = \2/p" \
      "$out/pip.list"
    if [ -n "$ca" ] && [ -s "$ca" ]; then
      cp "$ca" "$out/ca-bundle.pem"
      echo "cert = /run/secrets/ca-bundle.pem"
    fi
  } >"$out/pip.conf"
  rm -f "$out/pip.list"
}

main() {
  local engine_name secrets="$SCRATCH"
  engine_name="$(engine)"
  if [ "${1:-}" = base ]; then
    [ "$engine_name" = podman ] || return 0  # Docker pulls the base itself
    podman image exists "$(qualified "$BASE_IMAGE")" || make_standin
    return 0
  fi
  pip_secrets "$secrets"
  local args=(-f "$DOCKERFILE" -t "$IMAGE" --secret "id=pip.conf,src=$secrets/pip.conf")
  if [ "$TARGET" = dev ]; then
    args+=(--build-arg "PRODUCT_IMAGE=$PRODUCT_IMAGE")
  else
    args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
  fi
  [ -s "$secrets/ca-bundle.pem" ] && args+=(--secret "id=ca-bundle.pem,src=$secrets/ca-bundle.pem")
  local started=$SECONDS
  case "$engine_name" in
    docker)
      log "building $IMAGE with Docker"
      # BuildKit reads Dockerfile.dev.dockerignore next to Dockerfile.dev by itself.
      DOCKER_BUILDKIT=1 docker build "${args[@]}" "$ROOT"
      ;;
    podman)
      if [ "$TARGET" = dev ]; then
        podman image exists "$PRODUCT_IMAGE" \
          || { echo "error: $PRODUCT_IMAGE not built (run: make image)" >&2; exit 1; }
        args+=(--ignorefile "$DOCKERFILE.dockerignore")
      else
        podman image exists "$(qualified "$BASE_IMAGE")" || make_standin
      fi
      log "building $IMAGE with podman ($TARGET)"
      podman --runtime runc build --pull=never "${ULIMITS[@]}" --layers "${args[@]}" "$ROOT"
      ;;
    *)
      echo "error: unknown CONTAINER_ENGINE=$engine_name" >&2
      exit 1
      ;;
  esac
  log "built $IMAGE in $((SECONDS - started)) s"
}

main "$@"
