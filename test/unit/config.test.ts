import { ConfigError, deprecatedVariables, loadConfig, parseDurationMs, warnDeprecatedVariables } from "../../src/config";

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`loadConfig(${JSON.stringify(env)}) did not throw`);
}

/** The connection and concurrency limits' defaults (README configuration table). */
const LIMIT_DEFAULTS = {
  maxConcurrentCalls: 512,
  maxConnections: 4096,
  headersTimeoutMs: 10_000,
  maxHeaderBytes: 16_384,
  grpcMaxConcurrentStreams: 1000,
  grpcIdleTimeoutMs: 300_000,
  grpcKeepaliveTimeMs: 60_000,
  grpcKeepaliveTimeoutMs: 20_000,
  httpRequestTimeoutMs: 30_000,
  httpKeepAliveTimeoutMs: 5000,
};

/** The security settings' defaults: loopback, plaintext, no keys (README configuration table). */
const SECURITY_DEFAULTS = {
  tls: undefined,
  authKeysFile: undefined,
  rateLimitPerAddress: undefined,
  reflectionRequiresKey: false,
  allowInsecure: false,
};

/**
 * Names deprecated by the naming rule (durations: the unit in the value, not the name): each
 * old name with a value in its old unit, the new name and the same duration written with a unit.
 */
const OLD_NAMES: Record<string, [oldValue: string, name: string, value: string]> = {
  MONGODB_RETENTION_DAYS: ["90", "SESSION_RETENTION", "90d"],
  MONGODB_RETENTION: ["36h", "SESSION_RETENTION", "36h"],
  STORE_TIMEOUT_MS: ["250", "STORE_TIMEOUT", "250ms"],
  HEALTH_PROBE_INTERVAL_MS: ["200", "HEALTH_PROBE_INTERVAL", "200ms"],
  HEALTH_PROBE_TIMEOUT_MS: ["300", "HEALTH_PROBE_TIMEOUT", "300ms"],
  SHUTDOWN_GRACE_MS: ["1500", "SHUTDOWN_GRACE", "1500ms"],
  WATCH_POLL_MS: ["50", "WATCH_POLL_INTERVAL", "50ms"],
  WATCH_RETENTION_HOURS: ["2", "WATCH_RETENTION", "2h"],
  HEADERS_TIMEOUT_MS: ["250", "HEADERS_TIMEOUT", "250ms"],
  GRPC_IDLE_TIMEOUT_MS: ["1500", "GRPC_IDLE_TIMEOUT", "1500ms"],
  GRPC_KEEPALIVE_TIME_MS: ["2000", "GRPC_KEEPALIVE_TIME", "2s"],
  GRPC_KEEPALIVE_TIMEOUT_MS: ["500", "GRPC_KEEPALIVE_TIMEOUT", "500ms"],
  HTTP_REQUEST_TIMEOUT_MS: ["45000", "HTTP_REQUEST_TIMEOUT", "45s"],
  HTTP_KEEP_ALIVE_TIMEOUT_MS: ["300", "HTTP_KEEP_ALIVE_TIMEOUT", "300ms"],
};

describe("loadConfig", () => {
  it("gives the documented defaults for an empty environment", () => {
    expect(loadConfig({})).toEqual({
      host: "127.0.0.1",
      grpcPort: 50051,
      httpPort: 8080,
      metricsPort: undefined,
      dashboard: true,
      dataDir: "./data",
      mongodbUri: undefined,
      mongodbDatabase: "sessions",
      mongodbWriteConcern: "majority",
      sessionRetentionMs: undefined,
      storeTimeoutMs: 5000,
      sqliteReaders: 2,
      sqliteQueueLimit: 10000,
      healthProbeIntervalMs: 1000,
      healthProbeTimeoutMs: 1000,
      logLevel: "info",
      maxMessageBytes: 1024 * 1024,
      shutdownGraceMs: 10000,
      corsOrigins: [],
      watchPollMs: 100,
      watchBufferSize: 4096,
      watchBufferBytes: 64 * 1024 * 1024,
      watchRetentionMs: 24 * 3600_000,
      maxWatchers: 10_000,
      watchStallTimeoutMs: 30_000,
      maxStatsWatchers: 1000,
      eraseBatchSize: 200,
      sessionIdleTimeoutMs: 30 * 60_000,
      sessionMaxDurationMs: 24 * 3600_000,
      sessionExpiryIntervalMs: 60_000,
      ...LIMIT_DEFAULTS,
      ...SECURITY_DEFAULTS,
      maxSessionBytes: 256 * 1024,
      maxMaskPaths: 1000,
      maxStringLength: 8192,
      maxFreeFormKeys: 10_000,
      geoipCityDb: undefined,
      ipAnonymization: "off",
      ownDomains: [],
    });
    expect(loadConfig({}).mongodbUri).toBeUndefined();
  });

  it("treats empty values as unset", () => {
    const empty = Object.fromEntries(
      [
        "HOST",
        "GRPC_PORT",
        "HTTP_PORT",
        "DATA_DIR",
        "MONGODB_URI",
        "MONGODB_DATABASE",
        "MONGODB_WRITE_CONCERN",
        "SESSION_RETENTION",
        "MONGODB_RETENTION",
        "STORE_TIMEOUT",
        "SQLITE_READERS",
        "SQLITE_QUEUE_LIMIT",
        "HEALTH_PROBE_INTERVAL",
        "HEALTH_PROBE_TIMEOUT",
        "LOG_LEVEL",
        "MAX_MESSAGE_BYTES",
        "SHUTDOWN_GRACE",
        "WATCH_POLL_INTERVAL",
        "WATCH_BUFFER_SIZE",
        "WATCH_BUFFER_BYTES",
        "WATCH_RETENTION",
        "MAX_WATCHERS",
        "MAX_STATS_WATCHERS",
        "ERASE_BATCH_SIZE",
        ...Object.keys(OLD_NAMES),
        "SESSION_IDLE_TIMEOUT",
        "SESSION_MAX_DURATION",
        "SESSION_EXPIRY_INTERVAL",
        "MAX_SESSION_BYTES",
        "MAX_MASK_PATHS",
        "MAX_STRING_LENGTH",
        "MAX_FREE_FORM_KEYS",
        "CORS_ORIGINS",
        "TLS_CERT_FILE",
        "TLS_KEY_FILE",
        "TLS_CLIENT_CA_FILE",
        "AUTH_KEYS_FILE",
        "RATE_LIMIT_PER_ADDRESS",
        "REFLECTION_REQUIRES_KEY",
        "ALLOW_INSECURE",
        "METRICS_PORT",
        "DASHBOARD",
        "GEOIP_CITY_DB",
        "IP_ANONYMIZATION",
        "OWN_DOMAINS",
      ].map((k) => [k, ""]),
    );
    expect(loadConfig(empty)).toEqual(loadConfig({}));
  });

  it("reads every variable", () => {
    const cfg = loadConfig({
      HOST: "0.0.0.0",
      GRPC_PORT: "6000",
      HTTP_PORT: "0",
      METRICS_PORT: "9464",
      DASHBOARD: "false",
      DATA_DIR: "/var/lib/sessions",
      MONGODB_URI: "mongodb://db:27017/?replicaSet=rs0",
      MONGODB_DATABASE: "my_sessions-2",
      MONGODB_WRITE_CONCERN: "2",
      SESSION_RETENTION: "90d",
      STORE_TIMEOUT: "250ms",
      SQLITE_READERS: "4",
      SQLITE_QUEUE_LIMIT: "100",
      HEALTH_PROBE_INTERVAL: "200ms",
      HEALTH_PROBE_TIMEOUT: "300ms",
      LOG_LEVEL: "debug",
      MAX_MESSAGE_BYTES: "65536",
      MAX_SESSION_BYTES: "16384",
      MAX_MASK_PATHS: "50",
      MAX_STRING_LENGTH: "2048",
      MAX_FREE_FORM_KEYS: "500",
      SHUTDOWN_GRACE: "0",
      CORS_ORIGINS: "https://a.example, https://b.example,,",
      WATCH_POLL_INTERVAL: "50ms",
      WATCH_BUFFER_SIZE: "16",
      WATCH_BUFFER_BYTES: "1048576",
      MAX_WATCHERS: "7",
      WATCH_STALL_TIMEOUT: "45s",
      MAX_STATS_WATCHERS: "9",
      ERASE_BATCH_SIZE: "25",
      WATCH_RETENTION: "2h",
      SESSION_IDLE_TIMEOUT: "45m",
      SESSION_MAX_DURATION: "12h",
      SESSION_EXPIRY_INTERVAL: "1500ms",
      TLS_CERT_FILE: "/etc/sessions/tls.crt",
      TLS_KEY_FILE: "/etc/sessions/tls.key",
      TLS_CLIENT_CA_FILE: "/etc/sessions/clients-ca.crt",
      AUTH_KEYS_FILE: "/etc/sessions/keys.json",
      RATE_LIMIT_PER_ADDRESS: "200",
      REFLECTION_REQUIRES_KEY: "true",
      GEOIP_CITY_DB: "/var/lib/geo/GeoLite2-City.mmdb",
      IP_ANONYMIZATION: "truncate",
      OWN_DOMAINS: "shop.example,example.org",
    });
    expect(cfg).toEqual({
      host: "0.0.0.0",
      grpcPort: 6000,
      httpPort: 0,
      metricsPort: 9464,
      dashboard: false,
      dataDir: "/var/lib/sessions",
      mongodbUri: "mongodb://db:27017/?replicaSet=rs0",
      mongodbDatabase: "my_sessions-2",
      mongodbWriteConcern: 2,
      sessionRetentionMs: 90 * 86_400_000,
      storeTimeoutMs: 250,
      sqliteReaders: 4,
      sqliteQueueLimit: 100,
      healthProbeIntervalMs: 200,
      healthProbeTimeoutMs: 300,
      logLevel: "debug",
      maxMessageBytes: 65536,
      maxSessionBytes: 16384,
      maxMaskPaths: 50,
      maxStringLength: 2048,
      maxFreeFormKeys: 500,
      ownDomains: ["shop.example", "example.org"],
      shutdownGraceMs: 0,
      corsOrigins: ["https://a.example", "https://b.example"],
      watchPollMs: 50,
      watchBufferSize: 16,
      watchBufferBytes: 1048576,
      maxWatchers: 7,
      watchStallTimeoutMs: 45_000,
      maxStatsWatchers: 9,
      eraseBatchSize: 25,
      watchRetentionMs: 2 * 3600_000,
      sessionIdleTimeoutMs: 45 * 60_000,
      sessionMaxDurationMs: 12 * 3600_000,
      sessionExpiryIntervalMs: 1500,
      ...LIMIT_DEFAULTS,
      tls: { certFile: "/etc/sessions/tls.crt", keyFile: "/etc/sessions/tls.key", clientCaFile: "/etc/sessions/clients-ca.crt" },
      authKeysFile: "/etc/sessions/keys.json",
      rateLimitPerAddress: 200,
      reflectionRequiresKey: true,
      allowInsecure: false,
      geoipCityDb: "/var/lib/geo/GeoLite2-City.mmdb",
      ipAnonymization: "truncate",
    });
  });

  it.each([
    ["30m", 1_800_000],
    ["90s", 90_000],
    ["90", 90_000],
    ["1.5h", 5_400_000],
    ["250ms", 250],
    ["2d", 172_800_000],
    [" 10s ", 10_000],
  ])("reads the duration %j as %d ms", (raw, ms) => {
    expect(parseDurationMs(raw)).toBe(ms);
    expect(loadConfig({ SESSION_IDLE_TIMEOUT: raw }).sessionIdleTimeoutMs).toBe(ms);
  });

  it.each(["", "m", "-5m", "5 m", "5min", "1e3s", "0x10s", "PT5M"])("does not read %j as a duration", (raw) => {
    expect(parseDurationMs(raw)).toBeUndefined();
  });

  it("keeps MAX_SESSION_BYTES at most half of MAX_MESSAGE_BYTES, and derives its default from it", () => {
    expect(loadConfig({ MAX_MESSAGE_BYTES: "8388608", MAX_SESSION_BYTES: "4194304" }).maxSessionBytes).toBe(4194304);
    const err = configError({ MAX_MESSAGE_BYTES: "8388608", MAX_SESSION_BYTES: "4194305" });
    expect(err.message).toContain("MAX_SESSION_BYTES");
    expect(err.message).toContain("MAX_MESSAGE_BYTES");
    expect(configError({ MAX_SESSION_BYTES: String(600 * 1024) }).message).toContain("MAX_SESSION_BYTES");
    // A smaller message limit lowers the default instead of failing.
    expect(loadConfig({ MAX_MESSAGE_BYTES: "65536" }).maxSessionBytes).toBe(32768);
  });

  it("accepts the ends of the port range and mongodb+srv URIs", () => {
    expect(loadConfig({ GRPC_PORT: "65535" }).grpcPort).toBe(65535);
    expect(loadConfig({ GRPC_PORT: "0" }).grpcPort).toBe(0);
    expect(loadConfig({ MONGODB_URI: "mongodb+srv://cluster.example.net" }).mongodbUri).toBe("mongodb+srv://cluster.example.net");
    expect(loadConfig({ LOG_LEVEL: "silent" }).logLevel).toBe("silent");
    expect(loadConfig({ MONGODB_WRITE_CONCERN: "majority" }).mongodbWriteConcern).toBe("majority");
  });

  it.each([
    ["GRPC_PORT", "abc"],
    ["GRPC_PORT", "70000"],
    ["GRPC_PORT", "65536"],
    ["GRPC_PORT", "-1"],
    ["GRPC_PORT", "80.5"],
    ["GRPC_PORT", "1e3"],
    ["GRPC_PORT", "0x50"],
    ["HTTP_PORT", "abc"],
    ["HTTP_PORT", "99999"],
    ["STORE_TIMEOUT", "99ms"],
    ["STORE_TIMEOUT", "soon"],
    ["STORE_TIMEOUT", "11m"],
    ["SQLITE_READERS", "0"],
    ["SQLITE_READERS", "65"],
    ["SQLITE_QUEUE_LIMIT", "0"],
    ["HEALTH_PROBE_INTERVAL", "9ms"],
    ["HEALTH_PROBE_TIMEOUT", "soon"],
    ["MAX_MESSAGE_BYTES", "1023"],
    ["MAX_SESSION_BYTES", "4095"],
    ["MAX_SESSION_BYTES", "big"],
    ["MAX_MASK_PATHS", "0"],
    ["MAX_STRING_LENGTH", "100"],
    ["MAX_FREE_FORM_KEYS", "-1"],
    ["SHUTDOWN_GRACE", "-5s"],
    ["WATCH_POLL_INTERVAL", "4ms"],
    ["WATCH_RETENTION", "30m"],
    ["WATCH_RETENTION", "366d"],
    ["LOG_LEVEL", "loud"],
    ["LOG_LEVEL", "INFO"],
    ["MONGODB_URI", "http://x"],
    ["MONGODB_URI", "localhost:27017"],
    ["MONGODB_WRITE_CONCERN", "foo"],
    ["MONGODB_WRITE_CONCERN", "-1"],
    ["MONGODB_DATABASE", "a.b"],
    ["MONGODB_DATABASE", "with space"],
    ["MONGODB_DATABASE", "x".repeat(64)],
    ["SESSION_RETENTION", "0"],
    ["SESSION_RETENTION", "59m"],
    ["SESSION_RETENTION", "forever"],
    ["MONGODB_RETENTION", "59m"],
    ["SESSION_IDLE_TIMEOUT", "soon"],
    ["SESSION_IDLE_TIMEOUT", "10ms"],
    ["SESSION_MAX_DURATION", "400d"],
    ["SESSION_EXPIRY_INTERVAL", "2h"],
  ])("rejects %s=%j with a ConfigError naming the variable", (name, value) => {
    const err = configError({ [name]: value });
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain(name);
  });

  it("reads process.env by default", () => {
    const saved = process.env.GRPC_PORT;
    process.env.GRPC_PORT = "6123";
    try {
      expect(loadConfig().grpcPort).toBe(6123);
    } finally {
      if (saved === undefined) delete process.env.GRPC_PORT;
      else process.env.GRPC_PORT = saved;
    }
  });
});

describe("loadConfig: connection and concurrency limits", () => {
  const LIMIT_VARS = {
    MAX_CONCURRENT_CALLS: "8",
    MAX_CONNECTIONS: "100",
    HEADERS_TIMEOUT: "250ms",
    MAX_HEADER_BYTES: "4096",
    GRPC_MAX_CONCURRENT_STREAMS: "16",
    GRPC_IDLE_TIMEOUT: "1500ms",
    GRPC_KEEPALIVE_TIME: "2s",
    GRPC_KEEPALIVE_TIMEOUT: "500ms",
    HTTP_REQUEST_TIMEOUT: "750ms",
    HTTP_KEEP_ALIVE_TIMEOUT: "300ms",
  };

  it("reads every limit", () => {
    expect(loadConfig(LIMIT_VARS)).toMatchObject({
      maxConcurrentCalls: 8,
      maxConnections: 100,
      headersTimeoutMs: 250,
      maxHeaderBytes: 4096,
      grpcMaxConcurrentStreams: 16,
      grpcIdleTimeoutMs: 1500,
      grpcKeepaliveTimeMs: 2000,
      grpcKeepaliveTimeoutMs: 500,
      httpRequestTimeoutMs: 750,
      httpKeepAliveTimeoutMs: 300,
    });
  });

  it("treats empty limit values as unset", () => {
    const empty = Object.fromEntries(Object.keys(LIMIT_VARS).map((k) => [k, ""]));
    expect(loadConfig(empty)).toMatchObject(LIMIT_DEFAULTS);
  });

  it.each([
    ["MAX_CONCURRENT_CALLS", "0"],
    ["MAX_CONCURRENT_CALLS", "many"],
    ["MAX_CONNECTIONS", "0"],
    ["HEADERS_TIMEOUT", "99ms"],
    ["MAX_HEADER_BYTES", "1023"],
    ["MAX_HEADER_BYTES", "2097152"],
    ["GRPC_MAX_CONCURRENT_STREAMS", "0"],
    ["GRPC_MAX_CONCURRENT_STREAMS", "1.5"],
    ["GRPC_IDLE_TIMEOUT", "10ms"],
    ["GRPC_KEEPALIVE_TIME", "-1s"],
    ["GRPC_KEEPALIVE_TIMEOUT", "0"],
    ["HTTP_REQUEST_TIMEOUT", "forever"],
    ["HTTP_KEEP_ALIVE_TIMEOUT", "0"],
  ])("rejects %s=%j naming the variable", (name, value) => {
    expect(configError({ [name]: value }).message).toContain(name);
  });

  it("rejects a headers timeout longer than the request timeout, naming both", () => {
    const err = configError({ HEADERS_TIMEOUT: "20s", HTTP_REQUEST_TIMEOUT: "10s" });
    expect(err.message).toContain("HEADERS_TIMEOUT");
    expect(err.message).toContain("HTTP_REQUEST_TIMEOUT");
    expect(loadConfig({ HEADERS_TIMEOUT: "10s", HTTP_REQUEST_TIMEOUT: "10s" }).httpRequestTimeoutMs).toBe(10_000);
    // Under a deprecated name, the message names the variable as it was set.
    expect(configError({ HEADERS_TIMEOUT_MS: "20000", HTTP_REQUEST_TIMEOUT: "10s" }).message).toMatch(
      /HEADERS_TIMEOUT_MS .*HTTP_REQUEST_TIMEOUT\b/,
    );
  });
});

describe("loadConfig: watch limits", () => {
  it("reads MAX_WATCHERS and WATCH_STALL_TIMEOUT (a duration)", () => {
    expect(loadConfig({ MAX_WATCHERS: "5", WATCH_STALL_TIMEOUT: "1500ms" })).toMatchObject({ maxWatchers: 5, watchStallTimeoutMs: 1500 });
    expect(loadConfig({ WATCH_STALL_TIMEOUT: "2m" }).watchStallTimeoutMs).toBe(120_000);
  });

  it("reads MAX_STATS_WATCHERS (WatchSessionStats streams per process)", () => {
    expect(loadConfig({}).maxStatsWatchers).toBe(1000);
    expect(loadConfig({ MAX_STATS_WATCHERS: "25" }).maxStatsWatchers).toBe(25);
  });

  it.each([
    ["MAX_WATCHERS", "0"],
    ["MAX_WATCHERS", "lots"],
    ["MAX_STATS_WATCHERS", "0"],
    ["MAX_STATS_WATCHERS", "100001"],
    ["MAX_STATS_WATCHERS", "-3"],
    ["WATCH_STALL_TIMEOUT", "50ms"],
    ["WATCH_STALL_TIMEOUT", "2h"],
    ["WATCH_STALL_TIMEOUT", "soon"],
  ])("rejects %s=%j naming the variable", (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(name);
  });
});

describe("loadConfig: MONGODB_URI is parsed by the driver at start", () => {
  it.each([
    ["mongodb://db:27017/?replicaSet=rs0"],
    ["mongodb+srv://cluster.example.net/sessions?retryWrites=true"],
    ["mongodb://app:pa%40ss%2Fword@db1:27017,db2:27017/sessions?authSource=admin&tls=true"],
  ])("accepts %s", (uri) => {
    expect(loadConfig({ MONGODB_URI: uri }).mongodbUri).toBe(uri);
  });

  it.each([
    ["a raw @ in the password", "mongodb://app:p@ss-s3cret@db:27017/", ["p@ss-s3cret", "ss-s3cret"]],
    ["a raw / in the password", "mongodb://app:s3cret/x@db:27017/", ["s3cret/x"]],
    ["an unknown option", "mongodb://app:hunter22@db:27017/?tlsCertificateKeyFilePassword=k3yp4ss&bogusOption=1", ["hunter22", "k3yp4ss"]],
    ["a bad option value", "mongodb://db:27017/?tls=s3cretvalue", []],
    ["a bad port", "mongodb://db:99999/", []],
    ["no host", "mongodb://", []],
  ])("refuses a URI with %s, naming MONGODB_URI and no secret", (_what, uri, secrets) => {
    const err = configError({ MONGODB_URI: uri });
    expect(err.message).toContain("MONGODB_URI");
    for (const secret of secrets) expect(err.message).not.toContain(secret);
  });
});

describe("loadConfig: security (TLS, keys, safe defaults, CORS)", () => {
  const TLS = { TLS_CERT_FILE: "/c.crt", TLS_KEY_FILE: "/c.key" };

  it("reads TLS with and without a client CA", () => {
    expect(loadConfig(TLS).tls).toEqual({ certFile: "/c.crt", keyFile: "/c.key" });
    expect(loadConfig({ ...TLS, TLS_CLIENT_CA_FILE: "/ca.crt" }).tls).toEqual({
      certFile: "/c.crt",
      keyFile: "/c.key",
      clientCaFile: "/ca.crt",
    });
  });

  it.each([
    [{ TLS_CERT_FILE: "/c.crt" }, "TLS_KEY_FILE"],
    [{ TLS_KEY_FILE: "/c.key" }, "TLS_CERT_FILE"],
    [{ TLS_CLIENT_CA_FILE: "/ca.crt" }, "TLS_CLIENT_CA_FILE"],
  ])("refuses incomplete TLS settings %j, naming %s", (env, name) => {
    expect(configError(env).message).toContain(name);
  });

  it.each(["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"])("runs open and plaintext on the loopback host %s", (host) => {
    expect(loadConfig({ HOST: host })).toMatchObject({ host, tls: undefined, authKeysFile: undefined });
  });

  it.each([
    [{}, ["TLS_CERT_FILE", "TLS_KEY_FILE", "AUTH_KEYS_FILE", "ALLOW_INSECURE=true"]],
    [{ AUTH_KEYS_FILE: "/k.json" }, ["TLS_CERT_FILE", "TLS_KEY_FILE", "ALLOW_INSECURE=true"]],
    [TLS, ["AUTH_KEYS_FILE", "ALLOW_INSECURE=true"]],
  ])("refuses a non-loopback HOST without TLS and keys (%j), saying what to set", (env, words) => {
    for (const host of ["0.0.0.0", "10.1.2.3", "::", "sessions.internal"]) {
      const message = configError({ HOST: host, ...env }).message;
      expect(message).toContain(`HOST=${host}`);
      for (const w of words) expect(message).toContain(w);
    }
  });

  it("starts on a non-loopback HOST with TLS and keys, or with ALLOW_INSECURE=true", () => {
    expect(loadConfig({ HOST: "0.0.0.0", ...TLS, AUTH_KEYS_FILE: "/k.json" }).allowInsecure).toBe(false);
    expect(loadConfig({ HOST: "0.0.0.0", ALLOW_INSECURE: "true" })).toMatchObject({ host: "0.0.0.0", allowInsecure: true, tls: undefined });
    expect(loadConfig({ ALLOW_INSECURE: "false" }).allowInsecure).toBe(false);
  });

  it("reads CORS_ORIGINS: none by default, listed origins, or * alone", () => {
    expect(loadConfig({}).corsOrigins).toEqual([]);
    expect(loadConfig({ CORS_ORIGINS: "https://app.example, http://localhost:3000" }).corsOrigins).toEqual([
      "https://app.example",
      "http://localhost:3000",
    ]);
    expect(loadConfig({ CORS_ORIGINS: "*" }).corsOrigins).toEqual(["*"]);
  });

  it.each([
    ["CORS_ORIGINS", "*, https://app.example"],
    ["CORS_ORIGINS", "https://app.example/"],
    ["CORS_ORIGINS", "https://app.example/path"],
    ["CORS_ORIGINS", "app.example"],
    ["CORS_ORIGINS", "ftp://app.example"],
    ["ALLOW_INSECURE", "yes"],
    ["ALLOW_INSECURE", "TRUE"],
    ["REFLECTION_REQUIRES_KEY", "1"],
    ["RATE_LIMIT_PER_ADDRESS", "0"],
    ["RATE_LIMIT_PER_ADDRESS", "fast"],
  ])("rejects %s=%j naming the variable", (name, value) => {
    expect(configError({ [name]: value }).message).toContain(name);
  });
});

describe("loadConfig: deprecated names (a unit in the name)", () => {
  it.each(Object.entries(OLD_NAMES))("reads %s in its old unit, as the new name with a unit", (old, [oldValue, name, value]) => {
    expect(loadConfig({ [old]: oldValue })).toEqual(loadConfig({ [name]: value }));
    expect(loadConfig({ [old]: oldValue })).not.toEqual(loadConfig({}));
    expect(deprecatedVariables({ [old]: oldValue })).toEqual([
      {
        old,
        name,
        value: /[a-z]$/.test(oldValue) ? oldValue : `${oldValue}${old.endsWith("_DAYS") ? "d" : old.endsWith("_HOURS") ? "h" : "ms"}`,
      },
    ]);
    expect(deprecatedVariables({ [name]: value })).toEqual([]);
  });

  it("refuses two names of one setting, naming both", () => {
    expect(configError({ MONGODB_RETENTION: "30d", SESSION_RETENTION: "30d" }).message).toBe(
      "MONGODB_RETENTION and SESSION_RETENTION are both set: MONGODB_RETENTION is a deprecated name of SESSION_RETENTION, remove it",
    );
    expect(configError({ MONGODB_RETENTION: "30d", MONGODB_RETENTION_DAYS: "30" }).message).toBe(
      "MONGODB_RETENTION and MONGODB_RETENTION_DAYS are both set: MONGODB_RETENTION is a deprecated name of SESSION_RETENTION, remove it",
    );
  });

  it("logs one warning per deprecated name set, naming the old and the new variable", () => {
    const warnings: Array<[string, Record<string, unknown> | undefined]> = [];
    const env = { STORE_TIMEOUT_MS: "5000", WATCH_RETENTION_HOURS: " 48 ", WATCH_POLL_INTERVAL: "50ms", HEALTH_PROBE_TIMEOUT_MS: "" };
    warnDeprecatedVariables({ warn: (msg, fields) => warnings.push([msg, fields]) }, env);
    expect(warnings).toEqual([
      ["STORE_TIMEOUT_MS is deprecated: set STORE_TIMEOUT=5000ms instead", { variable: "STORE_TIMEOUT_MS", replacement: "STORE_TIMEOUT" }],
      [
        "WATCH_RETENTION_HOURS is deprecated: set WATCH_RETENTION=48h instead",
        { variable: "WATCH_RETENTION_HOURS", replacement: "WATCH_RETENTION" },
      ],
    ]);
    expect(loadConfig(env)).toMatchObject({ storeTimeoutMs: 5000, watchRetentionMs: 48 * 3600_000, watchPollMs: 50 });
  });

  it.each(Object.entries(OLD_NAMES))("refuses %s set together with its new name, naming both", (old, [oldValue, name, value]) => {
    const message = configError({ [old]: oldValue, [name]: value }).message;
    expect(message).toContain(old);
    expect(message).toContain(name);
  });

  it.each([
    ["STORE_TIMEOUT_MS", "99"],
    ["STORE_TIMEOUT_MS", "5s"],
    ["STORE_TIMEOUT_MS", "1500.5"],
    ["SHUTDOWN_GRACE_MS", "-5"],
    ["WATCH_RETENTION_HOURS", "0"],
    ["WATCH_RETENTION_HOURS", "1.5"],
    ["MONGODB_RETENTION_DAYS", "0"],
    ["MONGODB_RETENTION_DAYS", "forever"],
    ["HTTP_KEEP_ALIVE_TIMEOUT_MS", "0"],
  ])("rejects %s=%j (a whole number in the old unit, in the old range) naming the old variable", (name, value) => {
    expect(configError({ [name]: value }).message).toContain(`${name}=`);
  });

  it("reads a bare number under a new name as seconds, and says the accepted range with units", () => {
    expect(loadConfig({ SHUTDOWN_GRACE: "3" }).shutdownGraceMs).toBe(3000);
    expect(loadConfig({ SESSION_RETENTION: "36h" }).sessionRetentionMs).toBe(36 * 3600_000);
    expect(configError({ STORE_TIMEOUT: "5000" }).message).toBe(
      'STORE_TIMEOUT="5000" is invalid: expected a duration such as "500ms", "30s", "15m" or "24h", from 100ms to 10m',
    );
  });
});

describe("loadConfig: OWN_DOMAINS", () => {
  it("reads a comma list of domains, normalized, none by default", () => {
    expect(loadConfig({}).ownDomains).toEqual([]);
    expect(loadConfig({ OWN_DOMAINS: " Shop.Example, www.blog.example ,," }).ownDomains).toEqual(["shop.example", "blog.example"]);
  });

  it.each(["https://shop.example", "shop.example/", "shop.example:443", "*.shop.example"])("refuses %s, naming the variable", (value) => {
    expect(() => loadConfig({ OWN_DOMAINS: value })).toThrow(ConfigError);
    expect(() => loadConfig({ OWN_DOMAINS: value })).toThrow(/^OWN_DOMAINS is invalid: .* is not a domain name/);
  });

  it("refuses more than 1000 domains", () => {
    const many = Array.from({ length: 1001 }, (_, i) => `d${i}.example`).join(",");
    expect(() => loadConfig({ OWN_DOMAINS: many })).toThrow(/^OWN_DOMAINS is invalid: at most 1000 domains, got 1001/);
  });
});

describe("loadConfig: DASHBOARD", () => {
  it("is on unless set to false", () => {
    expect(loadConfig({}).dashboard).toBe(true);
    expect(loadConfig({ DASHBOARD: "true" }).dashboard).toBe(true);
    expect(loadConfig({ DASHBOARD: "false" }).dashboard).toBe(false);
  });

  it.each(["no", "0", "TRUE"])("rejects DASHBOARD=%j", (raw) => {
    expect(configError({ DASHBOARD: raw }).message).toBe(`DASHBOARD=${JSON.stringify(raw)} is invalid: expected true or false`);
  });
});

describe("loadConfig: METRICS_PORT", () => {
  it("is off unless set; 0 picks a free port", () => {
    expect(loadConfig({}).metricsPort).toBeUndefined();
    expect(loadConfig({ METRICS_PORT: " " }).metricsPort).toBeUndefined();
    expect(loadConfig({ METRICS_PORT: "9464" }).metricsPort).toBe(9464);
    expect(loadConfig({ METRICS_PORT: "0", GRPC_PORT: "0", HTTP_PORT: "0" }).metricsPort).toBe(0);
    expect(loadConfig({ METRICS_PORT: "65535" }).metricsPort).toBe(65535);
  });

  it.each(["-1", "65536", "abc", "9464.5", "0x10"])("rejects METRICS_PORT=%j", (raw) => {
    expect(configError({ METRICS_PORT: raw }).message).toBe(
      `METRICS_PORT=${JSON.stringify(raw)} is invalid: expected a whole number from 0 to 65535`,
    );
  });

  it("rejects the port of the gRPC or HTTP port, naming both", () => {
    expect(configError({ METRICS_PORT: "50051" }).message).toBe(
      "METRICS_PORT=50051 is invalid: it must differ from GRPC_PORT (50051) and HTTP_PORT (8080)",
    );
    expect(configError({ METRICS_PORT: "9000", HTTP_PORT: "9000" }).message).toBe(
      "METRICS_PORT=9000 is invalid: it must differ from GRPC_PORT (50051) and HTTP_PORT (9000)",
    );
  });
});

describe("loadConfig: GEOIP_CITY_DB and IP_ANONYMIZATION", () => {
  it("reads the city database's path (checked when the service opens it) and the anonymization mode", () => {
    expect(loadConfig({ GEOIP_CITY_DB: " /geo/city.mmdb " }).geoipCityDb).toBe("/geo/city.mmdb");
    expect(loadConfig({ GEOIP_CITY_DB: " " }).geoipCityDb).toBeUndefined();
    for (const mode of ["off", "truncate", "drop"]) expect(loadConfig({ IP_ANONYMIZATION: mode }).ipAnonymization).toBe(mode);
  });

  it.each(["on", "Truncate", "true", "hash"])("rejects IP_ANONYMIZATION=%j, naming the accepted values", (raw) => {
    expect(configError({ IP_ANONYMIZATION: raw }).message).toBe(
      `IP_ANONYMIZATION=${JSON.stringify(raw)} is invalid: expected one of off, truncate, drop`,
    );
  });
});

describe("loadConfig: erasure", () => {
  it("reads ERASE_BATCH_SIZE (sessions per store write of EraseProfile)", () => {
    expect(loadConfig({}).eraseBatchSize).toBe(200);
    expect(loadConfig({ ERASE_BATCH_SIZE: "1" }).eraseBatchSize).toBe(1);
    expect(loadConfig({ ERASE_BATCH_SIZE: "10000" }).eraseBatchSize).toBe(10_000);
  });

  it.each([["0"], ["10001"], ["-1"], ["many"], ["2.5"]])("rejects ERASE_BATCH_SIZE=%j naming the variable", (value) => {
    expect(() => loadConfig({ ERASE_BATCH_SIZE: value })).toThrow("ERASE_BATCH_SIZE");
  });
});
