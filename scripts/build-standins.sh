#!/usr/bin/env bash
# Local stand-ins for the official images values-dev.yaml runs in the cluster (Redis and
# PostgreSQL), for machines that reach no container registry: the dev install's tests run them on
# a real kubelet. Never part of the product; a kind cluster pulls the real images itself.
#
# For each image (default: the chart's dev.redis.image and dev.postgres.image), nothing is done
# when podman already has it (the real one, or a stand-in made earlier). Otherwise a stand-in is
# loaded from the cache, or built from scripts/standins/<name>/ on the base image's stand-in
# (Debian packages; `scripts/build-image.sh base`), saved to the cache and tagged with the
# official name (`podman rmi` it to use the real image once it can be pulled).
#
# Environment: CACHE_DIR (default ~/.cache/tiktok-service), BASE_IMAGE (the Dockerfile's).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${CACHE_DIR:-$HOME/.cache/tiktok-service}"
BASE_IMAGE="${BASE_IMAGE:-$(sed -n 's/^ARG BASE_IMAGE=//p' "$ROOT/Dockerfile")}"
ULIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=4096:4096)

log() { printf '[standins %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

qualified() {
  case "$1" in
    */*/*) echo "$1" ;;
    */*) echo "docker.io/$1" ;;
    *) echo "docker.io/library/$1" ;;
  esac
}

# The chart's default for `dev.<component>.image` (values.yaml: `    image: redis:7.4-alpine`).
chart_image() {
  sed -n "s/^    image: \($1:[^ ]*\)\$/\1/p" "$ROOT/charts/tiktok-service/values.yaml" | head -1
}

standin() {
  local image="$1" name context key tarball started=$SECONDS
  name="$(qualified "$image")"
  if podman image exists "$name"; then
    log "$name present"
    return 0
  fi
  context="$ROOT/scripts/standins/${image%%:*}"
  [ -f "$context/Dockerfile" ] || { echo "error: no stand-in recipe for $image ($context)" >&2; exit 1; }
  # The recipe and the base decide the content: a changed recipe makes a new stand-in.
  key="$(cat "$context"/* | sha256sum | cut -c1-12)"
  tarball="$CACHE_DIR/image-standins/$(echo "$image" | tr '/:' '__')-$key.tar"
  mkdir -p "$CACHE_DIR/image-standins"
  exec 8>"$CACHE_DIR/image-standins/.lock"
  flock 8
  if [ -s "$tarball" ]; then
    log "loading the cached stand-in for $image"
    podman load --quiet -i "$tarball" >/dev/null
  else
    bash "$ROOT/scripts/build-image.sh" base
    log "making a stand-in for $image from Debian packages (no registry reachable)"
    podman --runtime runc build --pull=never "${ULIMITS[@]}" --layers --quiet \
      --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$name" "$context" >/dev/null
    podman save --quiet -o "$tarball.part" "$name"
    mv "$tarball.part" "$tarball"
  fi
  flock -u 8
  log "$name ready in $((SECONDS - started)) s"
}

main() {
  command -v podman >/dev/null || { echo "error: podman missing (run: make deps)" >&2; exit 1; }
  local images=("$@")
  [ ${#images[@]} -gt 0 ] || images=("$(chart_image redis)" "$(chart_image postgres)")
  for image in "${images[@]}"; do
    standin "$image"
  done
}

main "$@"
