#!/usr/bin/env bash
# Makes headless Chromium available for the dashboard's browser test (test/e2e/dashboard.test.ts),
# from Debian's `chromium` package, and prints the path of its executable (the only output).
# Idempotent and quiet: when the package is there already it only prints the path; otherwise it
# installs the package with apt-get (as root, or through sudo), once. Nothing is downloaded by
# playwright: the test points playwright-core at this executable.
#
# The path printed is the browser binary itself (/usr/lib/chromium/chromium) rather than the
# /usr/bin/chromium launcher: the launcher sources /etc/chromium.d (desktop flags, and a shell
# test that prints errors on some machines) before it execs that same binary.
set -euo pipefail

find_chromium() {
  local candidate
  for candidate in /usr/lib/chromium/chromium "$(command -v chromium 2>/dev/null || true)"; do
    if [[ -n "$candidate" && -x "$candidate" ]]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  return 1
}

find_chromium && exit 0

# shellcheck source=apt-package.sh
source "$(dirname "$0")/apt-package.sh"
apt_install chromium.sh chromium
find_chromium || { echo "chromium.sh: the chromium package is installed but no chromium executable was found" >&2; exit 1; }
