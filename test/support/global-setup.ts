// Jest global setup: gives every test worker a MongoDB-wire database in MONGODB_URI.
// When MONGODB_URI is already set, that server is used as is. Otherwise a private FerretDB
// (SQLite backend) is started with scripts/ferretdb.sh in a temporary directory; workers inherit
// process.env from here, and global-teardown.ts stops it and removes the directory.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { FERRET_DIR_ENV, ferretScript } from "./mongo";

export default async function globalSetup(): Promise<void> {
  if (process.env.MONGODB_URI) return;
  const dir = mkdtempSync(join(tmpdir(), "session-ferretdb-"));
  let uri: string;
  try {
    uri = await ferretScript("start", dir);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  process.env.MONGODB_URI = uri;
  process.env[FERRET_DIR_ENV] = dir;
}
