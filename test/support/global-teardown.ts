// Jest global teardown: stops the FerretDB that global-setup.ts started (if it started one) and
// removes its directory. A MONGODB_URI given from outside is left alone.

import { rmSync } from "node:fs";

import { FERRET_DIR_ENV, ferretScript } from "./mongo";

export default async function globalTeardown(): Promise<void> {
  const dir = process.env[FERRET_DIR_ENV];
  if (!dir) return;
  try {
    await ferretScript("stop", dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    delete process.env[FERRET_DIR_ENV];
    delete process.env.MONGODB_URI;
  }
}
