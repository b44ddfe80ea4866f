#!/usr/bin/env bash
# The whole test suite (`npm test`): type check, lint and format (ESLint, Prettier: `npm run
# format` fixes most), contract compatibility (buf breaking), build,
# then every jest test — unit, store conformance on the embedded store and on a MongoDB-wire
# database, end to end. The jest global
# setup starts FerretDB itself (built once with Go) unless MONGODB_URI points at a server; the
# MongoDB store's suites then run once more on stock FerretDB (see below).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -d node_modules ]]; then
  npm ci --no-audit --no-fund
fi
npx tsc -p tsconfig.json --noEmit
npx tsc -p web/tsconfig.json
npm run lint --silent
# The contract must stay compatible with the last released one: proto/released.binpb is a buf
# image of proto/ as released (`npx buf build --exclude-source-info -o proto/released.binpb`),
# rewritten on purpose at a release only. `buf lint` runs in test/contract.test.ts.
npx buf breaking --against proto/released.binpb
npm run build --silent
report="$(mktemp)"
stock_report="$(mktemp)"
set +e
npx jest --ci --json --outputFile="$report" "$@"
rc=$?
# The suite's FerretDB carries a one-line fix that lets SQLite use its `_id` index
# (scripts/ferretdb.sh). The MongoDB store's own suites run once more on FerretDB v1.24.2 exactly
# as `go install` builds it, with SQLite's default durability, so the code stays proven on the
# stock server too. Skipped with arguments (a partial run) or with MONGODB_URI (another server).
stock_rc=0
if [[ $# -eq 0 && -z "${MONGODB_URI:-}" ]]; then
  FERRETDB_STOCK=1 FERRETDB_SYNCHRONOUS=FULL npx jest --ci --json --outputFile="$stock_report" \
    test/store/mongo.test.ts test/store/mongo/ test/e2e/mongo-faults.test.ts
  stock_rc=$?
fi
set -e
# A plain closing line for CI: "jest: N passed, N failed" (both runs together).
node -e '
  const fs = require("fs");
  let passed = 0, failed = 0;
  for (const file of process.argv.slice(1)) {
    if (fs.statSync(file).size === 0) continue;
    const r = JSON.parse(fs.readFileSync(file, "utf8"));
    passed += r.numPassedTests;
    failed += r.numFailedTests;
  }
  console.log(`jest: ${passed} passed, ${failed} failed`);
' "$report" "$stock_report" || true
rm -f "$report" "$stock_report"
[[ $rc -eq 0 ]] || exit "$rc"
exit "$stock_rc"
