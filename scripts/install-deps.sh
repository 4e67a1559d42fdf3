#!/usr/bin/env bash
# Installs the Debian packages the local stack and the tests need, only when they are missing:
# PostgreSQL and Redis servers; tinyproxy (HTTP CONNECT proxy) and microsocks (SOCKS5 proxy),
# which the connection-option tests start on loopback ports with their own configuration;
# promtool, which checks the alerting rules; openssl (keys and test certificates);
# podman, buildah and runc to build and run the product image where no Docker daemon runs
# (crun, podman's default runtime, refuses this kind of host's hybrid cgroups), and debootstrap
# for the local stand-in of the base image when no registry is reachable.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v tinyproxy >/dev/null || [ -x /usr/bin/tinyproxy ] || need+=(tinyproxy)
command -v microsocks >/dev/null || need+=(microsocks)
# promtool checks the alerting rules in deploy/monitoring (from Debian's Prometheus package).
command -v promtool >/dev/null || need+=(prometheus)
# openssl makes the control plane's keys and the CA + certificate of the TLS Redis tests.
command -v openssl >/dev/null || need+=(openssl)
if ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; }; then
  command -v podman >/dev/null || need+=(podman)
  command -v buildah >/dev/null || need+=(buildah)
  command -v runc >/dev/null || need+=(runc)
  command -v debootstrap >/dev/null || need+=(debootstrap)
fi
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
