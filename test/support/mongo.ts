// Database helpers for tests on MongoDB or FerretDB.
//  - freshDatabase(): a database of its own for one test, on the server in MONGODB_URI.
//  - startFerret(): a FerretDB process of its own (scripts/ferretdb.sh) that a test can stop and
//    restart on the same port and data directory.

import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { MongoClient } from "mongodb";

/** Where global-setup.ts keeps the directory of the FerretDB it started (for the teardown). */
export const FERRET_DIR_ENV = "SESSION_TEST_FERRETDB_DIR";

const SCRIPT = resolve(__dirname, "../../scripts/ferretdb.sh");

/** Runs scripts/ferretdb.sh; resolves with what it printed (the URI for `start`). */
export function ferretScript(command: "start" | "stop", dir: string, port?: number): Promise<string> {
  const args = [SCRIPT, command, dir, ...(port === undefined ? [] : [String(port)])];
  return new Promise((resolvePromise, reject) => {
    // FerretDB stops by itself when this process is gone (a killed test run leaves none behind).
    const env = { ...process.env, FERRETDB_OWNER_PID: String(process.pid) };
    execFile("bash", args, { timeout: 600_000, env }, (err, stdout, stderr) => {
      if (err) reject(new Error(`scripts/ferretdb.sh ${command} failed: ${stderr.trim() || err.message}`));
      else resolvePromise(stdout.trim());
    });
  });
}

/** The server the test suite runs against (set by the jest global setup). */
export function mongoUri(): string {
  const uri = process.env.MONGODB_URI;
  if (!uri) throw new Error("MONGODB_URI is not set: the jest global setup starts FerretDB; run the tests with jest");
  return uri;
}

let counter = 0;

/**
 * A database name no other test uses, short and valid everywhere: FerretDB allows only
 * [a-zA-Z0-9_-]{1,63} without the "_ferretdb_" prefix; MongoDB also forbids /\. "$ and case-only
 * differences (so lowercase only).
 */
export function uniqueDatabaseName(prefix = "t"): string {
  const rand = Math.floor(Math.random() * 36 ** 4).toString(36);
  return `${prefix}_${process.pid.toString(36)}_${Date.now().toString(36)}_${(counter++).toString(36)}${rand}`.toLowerCase();
}

export interface FreshDatabase {
  uri: string;
  dbName: string;
  /** A plain driver client on `uri`, for looking at what a store wrote. */
  client: MongoClient;
  /** Drops the database and closes `client`. */
  drop(): Promise<void>;
}

export async function freshDatabase(uri: string = mongoUri()): Promise<FreshDatabase> {
  const dbName = uniqueDatabaseName();
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10_000 });
  await client.connect();
  return {
    uri,
    dbName,
    client,
    drop: async () => {
      try {
        await client.db(dbName).dropDatabase();
      } finally {
        await client.close();
      }
    },
  };
}

export interface FerretProcess {
  uri: string;
  port: number;
  dir: string;
  /** Stops the process; the data stays. Resolves when it has exited. */
  stop(): Promise<void>;
  /** Stops (if running) and starts it again on the same port and data directory. */
  restart(): Promise<void>;
  /** Stops it and removes the directory if startFerret created it. */
  dispose(): Promise<void>;
}

/** Starts a FerretDB of its own, in `dir` (a new temporary directory by default). */
export async function startFerret(dir?: string, port?: number): Promise<FerretProcess> {
  const ownDir = dir === undefined;
  const dataDir = dir ?? mkdtempSync(join(tmpdir(), "session-ferret-"));
  const uri = await ferretScript("start", dataDir, port);
  const actualPort = Number(new URL(uri).port);
  return {
    uri,
    port: actualPort,
    dir: dataDir,
    stop: async () => {
      await ferretScript("stop", dataDir);
    },
    restart: async () => {
      await ferretScript("stop", dataDir);
      await ferretScript("start", dataDir, actualPort);
    },
    dispose: async () => {
      await ferretScript("stop", dataDir);
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
