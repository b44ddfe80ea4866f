import { ConfigError, loadConfig, parseDurationMs } from "../../src/config";

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`loadConfig(${JSON.stringify(env)}) did not throw`);
}

describe("loadConfig", () => {
  it("gives the documented defaults for an empty environment", () => {
    expect(loadConfig({})).toEqual({
      host: "127.0.0.1",
      grpcPort: 50051,
      httpPort: 8080,
      dataDir: "./data",
      mongodbUri: undefined,
      mongodbDatabase: "sessions",
      mongodbWriteConcern: "majority",
      mongodbRetentionDays: undefined,
      storeTimeoutMs: 5000,
      logLevel: "info",
      maxMessageBytes: 1024 * 1024,
      shutdownGraceMs: 10000,
      corsOrigins: ["*"],
      watchPollMs: 100,
      watchBufferSize: 4096,
      watchRetentionMs: 24 * 3600_000,
      sessionIdleTimeoutMs: 30 * 60_000,
      sessionMaxDurationMs: 24 * 3600_000,
      sessionExpiryIntervalMs: 60_000,
    });
    expect(loadConfig({}).mongodbUri).toBeUndefined();
  });

  it("treats empty values as unset", () => {
    const empty = Object.fromEntries(
      ["HOST", "GRPC_PORT", "HTTP_PORT", "DATA_DIR", "MONGODB_URI", "MONGODB_DATABASE", "MONGODB_WRITE_CONCERN", "MONGODB_RETENTION_DAYS",
        "STORE_TIMEOUT_MS", "LOG_LEVEL", "MAX_MESSAGE_BYTES", "SHUTDOWN_GRACE_MS", "WATCH_POLL_MS", "WATCH_BUFFER_SIZE", "WATCH_RETENTION_HOURS",
        "SESSION_IDLE_TIMEOUT", "SESSION_MAX_DURATION", "SESSION_EXPIRY_INTERVAL"].map((k) => [k, ""]),
    );
    const { corsOrigins: _ignored, ...rest } = loadConfig(empty);
    const { corsOrigins: _ignored2, ...defaults } = loadConfig({});
    expect(rest).toEqual(defaults);
  });

  it("reads every variable", () => {
    const cfg = loadConfig({
      HOST: "0.0.0.0",
      GRPC_PORT: "6000",
      HTTP_PORT: "0",
      DATA_DIR: "/var/lib/sessions",
      MONGODB_URI: "mongodb://db:27017/?replicaSet=rs0",
      MONGODB_DATABASE: "my_sessions-2",
      MONGODB_WRITE_CONCERN: "2",
      MONGODB_RETENTION_DAYS: "90",
      STORE_TIMEOUT_MS: "250",
      LOG_LEVEL: "debug",
      MAX_MESSAGE_BYTES: "4096",
      SHUTDOWN_GRACE_MS: "0",
      CORS_ORIGINS: "https://a.example, https://b.example,,",
      WATCH_POLL_MS: "50",
      WATCH_BUFFER_SIZE: "16",
      WATCH_RETENTION_HOURS: "2",
      SESSION_IDLE_TIMEOUT: "45m",
      SESSION_MAX_DURATION: "12h",
      SESSION_EXPIRY_INTERVAL: "1500ms",
    });
    expect(cfg).toEqual({
      host: "0.0.0.0",
      grpcPort: 6000,
      httpPort: 0,
      dataDir: "/var/lib/sessions",
      mongodbUri: "mongodb://db:27017/?replicaSet=rs0",
      mongodbDatabase: "my_sessions-2",
      mongodbWriteConcern: 2,
      mongodbRetentionDays: 90,
      storeTimeoutMs: 250,
      logLevel: "debug",
      maxMessageBytes: 4096,
      shutdownGraceMs: 0,
      corsOrigins: ["https://a.example", "https://b.example"],
      watchPollMs: 50,
      watchBufferSize: 16,
      watchRetentionMs: 2 * 3600_000,
      sessionIdleTimeoutMs: 45 * 60_000,
      sessionMaxDurationMs: 12 * 3600_000,
      sessionExpiryIntervalMs: 1500,
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
    ["STORE_TIMEOUT_MS", "99"],
    ["STORE_TIMEOUT_MS", "soon"],
    ["MAX_MESSAGE_BYTES", "1023"],
    ["SHUTDOWN_GRACE_MS", "-5"],
    ["LOG_LEVEL", "loud"],
    ["LOG_LEVEL", "INFO"],
    ["MONGODB_URI", "http://x"],
    ["MONGODB_URI", "localhost:27017"],
    ["MONGODB_WRITE_CONCERN", "foo"],
    ["MONGODB_WRITE_CONCERN", "-1"],
    ["MONGODB_DATABASE", "a.b"],
    ["MONGODB_DATABASE", "with space"],
    ["MONGODB_DATABASE", "x".repeat(64)],
    ["MONGODB_RETENTION_DAYS", "0"],
    ["MONGODB_RETENTION_DAYS", "forever"],
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
