#!/usr/bin/env bash
# Makes Prometheus's own tools available for the metrics test: `promtool` (checks an exposition)
# and `prometheus` (scrapes the service), from Debian's `prometheus` package.
# Idempotent and quiet: prints nothing but errors when both are on PATH already; otherwise installs
# the package with apt-get (as root, or through sudo), once.
set -euo pipefail

have() { command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; }
have && exit 0

# shellcheck source=apt-package.sh
source "$(dirname "$0")/apt-package.sh"
apt_install prometheus.sh prometheus
have || { echo "prometheus.sh: the prometheus package is installed but promtool/prometheus are not on PATH" >&2; exit 1; }
