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

command -v apt-get >/dev/null 2>&1 || { echo "chromium.sh: chromium not found and no apt-get: install Chromium so \`chromium\` is on PATH" >&2; exit 1; }
if [[ "$(id -u)" == 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo -n)
else
  echo "chromium.sh: installing the chromium package needs root (or sudo)" >&2
  exit 1
fi
echo "chromium.sh: installing Debian's chromium package, once" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
  || { "${sudo[@]}" apt-get update -qq >&2 && "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >&2; }
find_chromium || { echo "chromium.sh: the chromium package is installed but no chromium executable was found" >&2; exit 1; }
