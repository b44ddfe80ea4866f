#!/usr/bin/env bash
# The whole test suite (`npm test`): type check, build, then every jest test — unit, store
# conformance on the embedded store and on a MongoDB-wire database, end to end. The jest global
# setup starts FerretDB itself (built once with Go) unless MONGODB_URI points at a server.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -d node_modules ]]; then
  npm ci --no-audit --no-fund
fi
npx tsc -p tsconfig.json --noEmit
npm run build --silent
report="$(mktemp)"
set +e
npx jest --ci --json --outputFile="$report" "$@"
rc=$?
set -e
# A plain closing line for CI: "jest: N passed, N failed".
node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(`jest: ${r.numPassedTests} passed, ${r.numFailedTests} failed`)' "$report" || true
rm -f "$report"
exit "$rc"
