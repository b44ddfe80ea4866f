// Shared by the SQLite store's own tests: a directory of its own per test, and the store's
// conformance fixtures.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export { fullDoc, rejection } from "../conformance/support";

/** A new, empty directory for one test's database file. */
export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "sessions-sqlite-"));
}
