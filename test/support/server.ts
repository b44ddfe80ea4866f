// Starts the real service on free loopback ports for end-to-end tests, on a given store.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, type Config } from "../../src/config";
import { createLogger } from "../../src/log";
import { startServer, type RunningServer, type StartOptions } from "../../src/server";

export type StoreKind = "sqlite" | "mongodb";

export interface TestServer extends RunningServer {
  config: Config;
  /** Removes what the server left on disk (after close). */
  cleanup(): Promise<void>;
}

let counter = 0;

/** Environment for a server on `kind`; mongodb gets a fresh database per server. */
export function testEnv(kind: StoreKind, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {
    HOST: "127.0.0.1",
    GRPC_PORT: "0",
    HTTP_PORT: "0",
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
    ...extra,
  };
  if (kind === "mongodb") {
    const uri = extra.MONGODB_URI ?? process.env.MONGODB_URI;
    if (!uri) throw new Error("MONGODB_URI is not set: the jest global setup starts FerretDB; run the suite with `npm test`");
    env.MONGODB_URI = uri;
    env.MONGODB_DATABASE = env.MONGODB_DATABASE ?? `e2e_${process.pid}_${Date.now().toString(36)}_${counter++}`;
  }
  return env;
}

export async function startTestServer(
  kind: StoreKind,
  extra: Record<string, string> = {},
  options: StartOptions = {},
): Promise<TestServer> {
  const dataDir = extra.DATA_DIR ?? mkdtempSync(join(tmpdir(), "session-e2e-"));
  const config = loadConfig({ DATA_DIR: dataDir, ...testEnv(kind, extra) });
  const server = await startServer(config, createLogger(config.logLevel), undefined, options);
  return {
    ...server,
    config,
    cleanup: async () => rmSync(dataDir, { recursive: true, force: true }),
  };
}
