// One typed configuration, read from environment variables and validated at start.
// Every variable is documented in the README's configuration table.

import { redactUri, scrubUriParts, type LogLevel } from "./log";
import { tlsFilesFromEnv, TlsConfigError, type TlsFiles } from "./security/tls";
import { DEFAULT_ERASURE_OPTIONS } from "./domain/erasure";
import { DEFAULT_LIFECYCLE } from "./domain/lifecycle";
import { DEFAULT_FEED_OPTIONS } from "./domain/watch/feed";
import { DEFAULT_MAX_STATS_WATCHERS } from "./domain/watch/stats";
import { DEFAULT_SQLITE_QUEUE_LIMIT, DEFAULT_SQLITE_READERS } from "./store/sqlite";
import { DEFAULT_LIMITS, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_SESSION_BYTES } from "./domain/limits";
import { IP_ANONYMIZATION_MODES, type IpAnonymization } from "./domain/ip";
import { bool, ConfigError, DAY_MS, duration, formatDuration, int, isSet, nameSet, oneOf, type Env } from "./env";

export { ConfigError, deprecatedVariables, parseDurationMs, warnDeprecatedVariables, type DeprecatedVariable } from "./env";
import { parseOwnDomains } from "./domain/traffic";

export interface Config {
  host: string;
  grpcPort: number;
  httpPort: number;
  /** Prometheus metrics (GET /metrics, plain HTTP) on this port of HOST; undefined: off. */
  metricsPort: number | undefined;
  /** Serve the dashboard at `/` of the HTTP port (DASHBOARD, default true). */
  dashboard: boolean;
  dataDir: string;
  mongodbUri?: string;
  mongodbDatabase: string;
  /** MongoDB write concern "w": a number or "majority". */
  mongodbWriteConcern: number | "majority";
  /** MongoDB store: sessions inserted more than this many days ago are deleted; unset = kept. */
  /** SESSION_RETENTION: sessions inserted longer ago are deleted by a sweep; undefined keeps them. */
  sessionRetentionMs?: number;
  /** Bound on each MongoDB call when the client sets no deadline. */
  storeTimeoutMs: number;
  /** SQLite store: reader threads at most (started on demand). */
  sqliteReaders: number;
  /** SQLite store: calls waiting for a store thread at most; more fail with UNAVAILABLE. */
  sqliteQueueLimit: number;
  /** Health: how often the store is probed. */
  healthProbeIntervalMs: number;
  /** Health: a probe without an answer this long makes the status NOT_SERVING. */
  healthProbeTimeoutMs: number;
  logLevel: LogLevel | "silent";
  maxMessageBytes: number;
  shutdownGraceMs: number;
  corsOrigins: string[];
  /** How often the watch feed polls the change log for other processes' changes. */
  watchPollMs: number;
  /** Recent changes kept in memory for watchers. */
  watchBufferSize: number;
  watchBufferBytes: number;
  /** How long the change log keeps changes: the resume window of WatchSessions. */
  watchRetentionMs: number;
  /** Open WatchSessions streams per process; more are refused with RESOURCE_EXHAUSTED (RetryInfo). */
  maxWatchers: number;
  /** A watch stream whose writes stay blocked this long ends with RESOURCE_EXHAUSTED (WATCHER_TOO_SLOW). */
  watchStallTimeoutMs: number;
  /** Open WatchSessionStats streams per process; more are refused with RESOURCE_EXHAUSTED (RetryInfo). */
  maxStatsWatchers: number;
  /** EraseProfile: sessions per store write (and traces per cleanup step). */
  eraseBatchSize: number;
  /** A session without activity for this long ends (idle expiry). */
  sessionIdleTimeoutMs: number;
  /** A session ends this long after it started, whatever its activity. */
  sessionMaxDurationMs: number;
  /** How often this process runs an expiry pass. */
  sessionExpiryIntervalMs: number;
  /** Largest stored session document (see src/domain/limits.ts); at most half of maxMessageBytes. */
  maxSessionBytes: number;
  /** Distinct paths in one update_mask. */
  maxMaskPaths: number;
  /** Characters of user_agent, page_url, filters and each string field of a session. */
  maxStringLength: number;
  /** Keys plus array items of one free-form object (context, properties, ...), at all levels. */
  maxFreeFormKeys: number;
  /** OWN_DOMAINS, normalized: referrers there (subdomains included) are internal (docs/traffic.md). */
  ownDomains: string[];
  /** Unary calls in flight at once, both ports together; more fail fast with RESOURCE_EXHAUSTED. */
  maxConcurrentCalls: number;
  /** Open TCP connections per port; more are closed as they are accepted. */
  maxConnections: number;
  /** A new connection must send its HTTP/2 preface (gRPC port) or request headers (HTTP port) within this. */
  headersTimeoutMs: number;
  /** Largest request header block (gRPC metadata, HTTP/1.1 headers), in bytes. */
  maxHeaderBytes: number;
  /** gRPC port: concurrent streams per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS). */
  grpcMaxConcurrentStreams: number;
  /** gRPC port: a connection without an open stream for this long is closed (GOAWAY). */
  grpcIdleTimeoutMs: number;
  /** gRPC port: the server pings each connection this often, and closes it when no answer comes within grpcKeepaliveTimeoutMs. */
  grpcKeepaliveTimeMs: number;
  grpcKeepaliveTimeoutMs: number;
  /** HTTP port: a whole request (headers and body) must arrive within this. */
  httpRequestTimeoutMs: number;
  /** HTTP port: an idle keep-alive connection is closed after this. */
  httpKeepAliveTimeoutMs: number;
  /** TLS on both ports (and mTLS with clientCaFile); undefined: plaintext. */
  tls: TlsFiles | undefined;
  /** The API keys file; undefined: every method open to every caller. */
  authKeysFile: string | undefined;
  /** Calls a second per client address (token bucket); undefined: no per-address limit. */
  rateLimitPerAddress: number | undefined;
  /** Reflection needs an API key (any scope) like the service's methods. */
  reflectionRequiresKey: boolean;
  /** Start on a non-loopback HOST without TLS or without keys (with a warning). */
  allowInsecure: boolean;
  /** GEOIP_CITY_DB: a city database (MaxMind DB format) for device.geo; undefined: country only. */
  geoipCityDb: string | undefined;
  /** IP_ANONYMIZATION: what is kept of a visitor's address (device.ip, audit lines). */
  ipAnonymization: IpAnonymization;
}

/** Whether `host` only accepts connections from this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h) || /^::ffff:127\.\d+\.\d+\.\d+$/.test(h);
}

/**
 * CORS_ORIGINS: browser origins ("https://app.example", "http://localhost:3000") allowed on the
 * HTTP port, or "*" alone for any origin. Unset or empty: no cross-origin access at all. Each
 * entry must be exactly an origin (scheme, host, port): a path or a trailing slash would never
 * equal a browser's Origin header and silently allow nothing.
 */
function corsOrigins(env: Record<string, string | undefined>): string[] {
  const list = (env.CORS_ORIGINS ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (list.includes("*")) {
    if (list.length > 1)
      throw new ConfigError(`CORS_ORIGINS=${JSON.stringify(env.CORS_ORIGINS)} is invalid: "*" allows every origin, give it alone`);
    return list;
  }
  for (const origin of list) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(origin);
    } catch {
      parsed = undefined;
    }
    if (!parsed || !/^https?:$/.test(parsed.protocol) || parsed.origin !== origin) {
      throw new ConfigError(
        `CORS_ORIGINS: ${JSON.stringify(origin)} is not an origin: expected scheme://host[:port], e.g. https://app.example`,
      );
    }
  }
  return list;
}

/**
 * TLS, keys and their safe defaults. On loopback the service may run open and in plaintext (as
 * easy as ever for development); bound to any other address it refuses to start without both
 * TLS and keys, unless ALLOW_INSECURE=true says so explicitly (startServer then warns).
 */
function security(env: Record<string, string | undefined>, host: string) {
  let tls: TlsFiles | undefined;
  try {
    tls = tlsFilesFromEnv(env);
  } catch (err) {
    if (err instanceof TlsConfigError) throw new ConfigError(err.message);
    throw err;
  }
  const authKeysFile = env.AUTH_KEYS_FILE?.trim() || undefined;
  const allowInsecure = bool(env, "ALLOW_INSECURE");
  if (!isLoopbackHost(host) && !allowInsecure) {
    const missing = [...(tls ? [] : ["TLS_CERT_FILE and TLS_KEY_FILE"]), ...(authKeysFile ? [] : ["AUTH_KEYS_FILE"])];
    if (missing.length > 0) {
      throw new ConfigError(
        `HOST=${host} is not a loopback address, and ${missing.join(" and ")} ${missing.length > 1 || !tls ? "are" : "is"} not set: ` +
          `set them to serve other hosts over TLS with API keys, or set ALLOW_INSECURE=true to accept an open or plaintext service`,
      );
    }
  }
  return {
    tls,
    authKeysFile,
    rateLimitPerAddress: env.RATE_LIMIT_PER_ADDRESS ? int(env, "RATE_LIMIT_PER_ADDRESS", 0, 1, 1_000_000) : undefined,
    reflectionRequiresKey: bool(env, "REFLECTION_REQUIRES_KEY"),
    allowInsecure,
  };
}

/**
 * Parses MONGODB_URI with the driver's own parser (the MongoClient constructor parses and
 * validates synchronously and connects nothing), so a URI the driver cannot use stops the service
 * at start instead of being retried for ever. The driver's message is kept, minus any part of
 * the URI that could be secret. The driver is loaded only when MONGODB_URI is set.
 */
function checkMongoUri(uri: string): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the driver is loaded only when MONGODB_URI is set
  const { MongoClient } = require("mongodb") as typeof import("mongodb");
  try {
    new MongoClient(uri);
  } catch (err) {
    const message = scrubUriParts(err instanceof Error ? err.message : String(err), uri);
    throw new ConfigError(`MONGODB_URI is invalid (${redactUri(uri)}): ${message}`);
  }
}

export function loadConfig(env: Env = process.env): Config {
  const uri = env.MONGODB_URI || undefined;
  if (uri !== undefined && !/^mongodb(\+srv)?:\/\//.test(uri)) {
    throw new ConfigError("MONGODB_URI is invalid: expected a mongodb:// or mongodb+srv:// connection string");
  }
  if (uri !== undefined) checkMongoUri(uri);
  const wc = env.MONGODB_WRITE_CONCERN || "majority";
  if (wc !== "majority" && (!/^\d{1,2}$/.test(wc) || Number(wc) > 50)) {
    throw new ConfigError(`MONGODB_WRITE_CONCERN=${JSON.stringify(wc)} is invalid: expected "majority" or a number of nodes`);
  }
  const database = env.MONGODB_DATABASE || "sessions";
  if (!/^[A-Za-z0-9_-]{1,63}$/.test(database)) {
    throw new ConfigError(`MONGODB_DATABASE=${JSON.stringify(database)} is invalid: use letters, digits, "_" or "-" (at most 63)`);
  }
  const host = env.HOST || "127.0.0.1";
  const grpcPort = int(env, "GRPC_PORT", 50051, 0, 65535);
  const httpPort = int(env, "HTTP_PORT", 8080, 0, 65535);
  return {
    host,
    grpcPort,
    httpPort,
    metricsPort: metricsPort(env, grpcPort, httpPort),
    dashboard: isSet(env, "DASHBOARD") ? bool(env, "DASHBOARD") : true,
    dataDir: env.DATA_DIR || "./data",
    mongodbUri: uri,
    mongodbDatabase: database,
    mongodbWriteConcern: wc === "majority" ? "majority" : Number(wc),
    sessionRetentionMs: isSet(env, "SESSION_RETENTION") ? duration(env, "SESSION_RETENTION", 0, 3600_000, 36_500 * DAY_MS) : undefined,
    storeTimeoutMs: duration(env, "STORE_TIMEOUT", 5000, 100, 600000),
    sqliteReaders: int(env, "SQLITE_READERS", DEFAULT_SQLITE_READERS, 1, 64),
    sqliteQueueLimit: int(env, "SQLITE_QUEUE_LIMIT", DEFAULT_SQLITE_QUEUE_LIMIT, 1, 1_000_000),
    healthProbeIntervalMs: duration(env, "HEALTH_PROBE_INTERVAL", 1000, 10, 600000),
    healthProbeTimeoutMs: duration(env, "HEALTH_PROBE_TIMEOUT", 1000, 10, 600000),
    logLevel: oneOf(env, "LOG_LEVEL", "info", ["debug", "info", "warn", "error", "silent"] as const),
    maxMessageBytes: int(env, "MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES, 1024, 64 * 1024 * 1024),
    shutdownGraceMs: duration(env, "SHUTDOWN_GRACE", 10000, 0, 600000),
    watchPollMs: duration(env, "WATCH_POLL_INTERVAL", DEFAULT_FEED_OPTIONS.pollIntervalMs, 5, 60000),
    watchBufferSize: int(env, "WATCH_BUFFER_SIZE", DEFAULT_FEED_OPTIONS.bufferSize, 1, 1_000_000),
    watchBufferBytes: int(env, "WATCH_BUFFER_BYTES", DEFAULT_FEED_OPTIONS.bufferBytes, 0, 16 * 1024 * 1024 * 1024),
    watchRetentionMs: duration(env, "WATCH_RETENTION", 24 * 3600_000, 3600_000, 365 * DAY_MS),
    maxWatchers: int(env, "MAX_WATCHERS", DEFAULT_FEED_OPTIONS.maxWatchers, 1, 1_000_000),
    watchStallTimeoutMs: duration(env, "WATCH_STALL_TIMEOUT", DEFAULT_FEED_OPTIONS.stallTimeoutMs, 100, 3600_000),
    maxStatsWatchers: int(env, "MAX_STATS_WATCHERS", DEFAULT_MAX_STATS_WATCHERS, 1, 100_000),
    eraseBatchSize: int(env, "ERASE_BATCH_SIZE", DEFAULT_ERASURE_OPTIONS.batchSize, 1, 10_000),
    sessionIdleTimeoutMs: duration(env, "SESSION_IDLE_TIMEOUT", DEFAULT_LIFECYCLE.idleMs, 100, 30 * 86_400_000),
    sessionMaxDurationMs: duration(env, "SESSION_MAX_DURATION", DEFAULT_LIFECYCLE.maxDurationMs, 100, 365 * 86_400_000),
    sessionExpiryIntervalMs: duration(env, "SESSION_EXPIRY_INTERVAL", 60_000, 10, 3600_000),
    ...inputLimits(env),
    ownDomains: parseOwnDomains(env.OWN_DOMAINS ?? "", (why) => new ConfigError(`OWN_DOMAINS is invalid: ${why}`)),
    corsOrigins: corsOrigins(env),
    ...limits(env),
    ...security(env, host),
    geoipCityDb: env.GEOIP_CITY_DB?.trim() || undefined,
    ipAnonymization: oneOf(env, "IP_ANONYMIZATION", "off", IP_ANONYMIZATION_MODES),
  };
}

/**
 * METRICS_PORT: unset or empty, no metrics; 0 picks a free port (tests). A port of its own, not a
 * path of the HTTP port: a scraper needs neither the API's keys nor its TLS, and operators can
 * open it to the monitoring network only.
 */
function metricsPort(env: Env, grpcPort: number, httpPort: number): number | undefined {
  if (env.METRICS_PORT === undefined || env.METRICS_PORT.trim() === "") return undefined;
  const port = int(env, "METRICS_PORT", 0, 0, 65535);
  if (port !== 0 && (port === grpcPort || port === httpPort)) {
    throw new ConfigError(`METRICS_PORT=${port} is invalid: it must differ from GRPC_PORT (${grpcPort}) and HTTP_PORT (${httpPort})`);
  }
  return port;
}

/**
 * Limits on the input of a call (src/domain/limits.ts). A stored session must fit in an answer
 * on both protocols with room to spare, so MAX_SESSION_BYTES is at most half of
 * MAX_MESSAGE_BYTES; its default is 256 KiB, or that half when the message limit is smaller.
 */
function inputLimits(env: Env) {
  const maxMessageBytes = int(env, "MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES, 1024, 64 * 1024 * 1024);
  const half = Math.floor(maxMessageBytes / 2);
  const maxSessionBytes = int(env, "MAX_SESSION_BYTES", Math.min(DEFAULT_MAX_SESSION_BYTES, half), 4096, 32 * 1024 * 1024);
  if (maxSessionBytes > half) {
    throw new ConfigError(`MAX_SESSION_BYTES=${maxSessionBytes} is invalid: it must be at most half of MAX_MESSAGE_BYTES (${half})`);
  }
  return {
    maxSessionBytes,
    maxMaskPaths: int(env, "MAX_MASK_PATHS", DEFAULT_LIMITS.maxMaskPaths, 1, 100_000),
    maxStringLength: int(env, "MAX_STRING_LENGTH", DEFAULT_LIMITS.maxStringLength, 256, 1024 * 1024),
    maxFreeFormKeys: int(env, "MAX_FREE_FORM_KEYS", DEFAULT_LIMITS.maxFreeFormKeys, 10, 1_000_000),
  };
}

/** Connection and concurrency limits of both ports (docs: README configuration table). */
function limits(env: Env) {
  const headersTimeoutMs = duration(env, "HEADERS_TIMEOUT", 10_000, 100, 600_000);
  const httpRequestTimeoutMs = duration(env, "HTTP_REQUEST_TIMEOUT", 30_000, 100, 3_600_000);
  // node:http refuses a headers timeout longer than the whole request's.
  if (headersTimeoutMs > httpRequestTimeoutMs) {
    throw new ConfigError(
      `${nameSet(env, "HEADERS_TIMEOUT")} (${formatDuration(headersTimeoutMs)}) is invalid: it must not exceed ` +
        `${nameSet(env, "HTTP_REQUEST_TIMEOUT")} (${formatDuration(httpRequestTimeoutMs)})`,
    );
  }
  return {
    maxConcurrentCalls: int(env, "MAX_CONCURRENT_CALLS", 512, 1, 1_000_000),
    maxConnections: int(env, "MAX_CONNECTIONS", 4096, 1, 1_000_000),
    headersTimeoutMs,
    maxHeaderBytes: int(env, "MAX_HEADER_BYTES", 16_384, 1024, 1024 * 1024),
    grpcMaxConcurrentStreams: int(env, "GRPC_MAX_CONCURRENT_STREAMS", 1000, 1, 1_000_000),
    grpcIdleTimeoutMs: duration(env, "GRPC_IDLE_TIMEOUT", 300_000, 100, 86_400_000),
    grpcKeepaliveTimeMs: duration(env, "GRPC_KEEPALIVE_TIME", 60_000, 100, 86_400_000),
    grpcKeepaliveTimeoutMs: duration(env, "GRPC_KEEPALIVE_TIMEOUT", 20_000, 100, 600_000),
    httpRequestTimeoutMs,
    httpKeepAliveTimeoutMs: duration(env, "HTTP_KEEP_ALIVE_TIMEOUT", 5000, 100, 600_000),
  };
}
