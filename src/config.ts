// One typed configuration, read from environment variables and validated at start.
// Every variable is documented in the README's configuration table.

import type { LogLevel } from "./log";

export interface Config {
  host: string;
  grpcPort: number;
  httpPort: number;
  dataDir: string;
  mongodbUri?: string;
  mongodbDatabase: string;
  /** MongoDB write concern "w": a number or "majority". */
  mongodbWriteConcern: number | "majority";
  /** MongoDB store: sessions inserted more than this many days ago are deleted; unset = kept. */
  mongodbRetentionDays?: number;
  /** Bound on each MongoDB call when the client sets no deadline. */
  storeTimeoutMs: number;
  logLevel: LogLevel | "silent";
  maxMessageBytes: number;
  shutdownGraceMs: number;
  corsOrigins: string[];
  /** How often the watch feed polls the change log for other processes' changes. */
  watchPollMs: number;
  /** Recent changes kept in memory for watchers. */
  watchBufferSize: number;
  /** How long the change log keeps changes: the resume window of WatchSessions. */
  watchRetentionMs: number;
  /** A session without activity for this long ends (idle expiry). */
  sessionIdleTimeoutMs: number;
  /** A session ends this long after it started, whatever its activity. */
  sessionMaxDurationMs: number;
  /** How often this process runs an expiry pass. */
  sessionExpiryIntervalMs: number;
}

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return def;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)} is invalid: expected a whole number from ${min} to ${max}`);
  }
  return n;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 };

/** A duration: a number with a unit (ms, s, m, h, d), e.g. "30m", "1500ms", "24h"; a bare number is seconds. */
export function parseDurationMs(raw: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(raw.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * UNIT_MS[m[2] ?? "s"];
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

function duration(env: Env, name: string, defMs: number, minMs: number, maxMs: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return defMs;
  const ms = parseDurationMs(raw);
  if (ms === undefined || ms < minMs || ms > maxMs) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)} is invalid: expected a duration such as "30m", "90s" or "24h", from ${minMs} ms to ${maxMs / 3600_000} h`);
  }
  return ms;
}

function oneOf<T extends string>(env: Env, name: string, def: T, allowed: readonly T[]): T {
  const raw = env[name];
  if (raw === undefined || raw === "") return def;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)} is invalid: expected one of ${allowed.join(", ")}`);
  }
  return raw as T;
}

export function loadConfig(env: Env = process.env): Config {
  const uri = env.MONGODB_URI || undefined;
  if (uri !== undefined && !/^mongodb(\+srv)?:\/\//.test(uri)) {
    throw new ConfigError("MONGODB_URI is invalid: expected a mongodb:// or mongodb+srv:// connection string");
  }
  const wc = env.MONGODB_WRITE_CONCERN || "majority";
  if (wc !== "majority" && (!/^\d{1,2}$/.test(wc) || Number(wc) > 50)) {
    throw new ConfigError(`MONGODB_WRITE_CONCERN=${JSON.stringify(wc)} is invalid: expected "majority" or a number of nodes`);
  }
  const database = env.MONGODB_DATABASE || "sessions";
  if (!/^[A-Za-z0-9_-]{1,63}$/.test(database)) {
    throw new ConfigError(`MONGODB_DATABASE=${JSON.stringify(database)} is invalid: use letters, digits, "_" or "-" (at most 63)`);
  }
  return {
    host: env.HOST || "127.0.0.1",
    grpcPort: int(env, "GRPC_PORT", 50051, 0, 65535),
    httpPort: int(env, "HTTP_PORT", 8080, 0, 65535),
    dataDir: env.DATA_DIR || "./data",
    mongodbUri: uri,
    mongodbDatabase: database,
    mongodbWriteConcern: wc === "majority" ? "majority" : Number(wc),
    mongodbRetentionDays: env.MONGODB_RETENTION_DAYS ? int(env, "MONGODB_RETENTION_DAYS", 0, 1, 36_500) : undefined,
    storeTimeoutMs: int(env, "STORE_TIMEOUT_MS", 5000, 100, 600000),
    logLevel: oneOf(env, "LOG_LEVEL", "info", ["debug", "info", "warn", "error", "silent"] as const),
    maxMessageBytes: int(env, "MAX_MESSAGE_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024),
    shutdownGraceMs: int(env, "SHUTDOWN_GRACE_MS", 10000, 0, 600000),
    watchPollMs: int(env, "WATCH_POLL_MS", 100, 5, 60000),
    watchBufferSize: int(env, "WATCH_BUFFER_SIZE", 4096, 1, 1_000_000),
    watchRetentionMs: int(env, "WATCH_RETENTION_HOURS", 24, 1, 24 * 365) * 3600_000,
    sessionIdleTimeoutMs: duration(env, "SESSION_IDLE_TIMEOUT", 30 * 60_000, 100, 30 * 86_400_000),
    sessionMaxDurationMs: duration(env, "SESSION_MAX_DURATION", 24 * 3600_000, 100, 365 * 86_400_000),
    sessionExpiryIntervalMs: duration(env, "SESSION_EXPIRY_INTERVAL", 60_000, 10, 3600_000),
    corsOrigins: (env.CORS_ORIGINS ?? "*").split(",").map((s) => s.trim()).filter(Boolean),
  };
}
