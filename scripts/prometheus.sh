#!/usr/bin/env bash
# Makes Prometheus's own tools available for the metrics test: `promtool` (checks an exposition)
# and `prometheus` (scrapes the service), from Debian's `prometheus` package.
# Idempotent and quiet: prints nothing but errors when both are on PATH already; otherwise installs
# the package with apt-get (as root, or through sudo), once.
set -euo pipefail

have() { command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; }
have && exit 0

command -v apt-get >/dev/null 2>&1 || { echo "prometheus.sh: promtool/prometheus not found and no apt-get: install Prometheus (>= 2.x) so both are on PATH" >&2; exit 1; }
if [[ "$(id -u)" == 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo -n)
else
  echo "prometheus.sh: installing the prometheus package needs root (or sudo)" >&2
  exit 1
fi
echo "prometheus.sh: installing Debian's prometheus package, once" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
  || { "${sudo[@]}" apt-get update -qq >&2 && "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus >&2; }
have || { echo "prometheus.sh: the prometheus package is installed but promtool/prometheus are not on PATH" >&2; exit 1; }
