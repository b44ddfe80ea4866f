// The real service (startServer) on the embedded SQLite store in a fresh data directory, as
// configured from the environment the bench passes: DATA_DIR, for --secure the TLS files and
// the keys file (TLS and API keys on), for the geo variant IP_ANONYMIZATION (and GEOIP_CITY_DB
// if given). Reports its gRPC port.

import { loadConfig } from "../src/config";
import { createLogger } from "../src/log";
import { startServer } from "../src/server";
import { runChild } from "./child";

runChild("service-server", async () => {
  const dataDir = process.env.BENCH_DATA_DIR;
  if (!dataDir) throw new Error("BENCH_DATA_DIR is not set");
  const config = loadConfig({
    GRPC_PORT: "0",
    HTTP_PORT: "0",
    DATA_DIR: dataDir,
    LOG_LEVEL: "silent",
    SHUTDOWN_GRACE: "1s",
    TLS_CERT_FILE: process.env.BENCH_TLS_CERT_FILE,
    TLS_KEY_FILE: process.env.BENCH_TLS_KEY_FILE,
    AUTH_KEYS_FILE: process.env.BENCH_AUTH_KEYS_FILE,
    IP_ANONYMIZATION: process.env.BENCH_IP_ANONYMIZATION,
    GEOIP_CITY_DB: process.env.BENCH_GEOIP_CITY_DB,
  });
  const running = await startServer(config, createLogger("silent"));
  return { port: running.grpcPort, close: () => running.close() };
});
