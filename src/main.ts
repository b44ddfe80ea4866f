// Entry point: `npm start`. Reads the configuration from the environment, starts the service
// and shuts it down gracefully on SIGTERM / SIGINT.

import { ConfigError, loadConfig, warnDeprecatedVariables } from "./config";
import { createLogger } from "./log";
import { KeysFileError } from "./security/keys";
import { TlsConfigError } from "./security/tls";
import { GeoDatabaseError } from "./geo/mmdb";
import { startServer } from "./server";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  warnDeprecatedVariables(log);
  let server;
  try {
    server = await startServer(config, log);
  } catch (err) {
    // A bad TLS, keys or geo database file is a configuration error like a bad variable: same exit code.
    if (err instanceof TlsConfigError || err instanceof KeysFileError || err instanceof GeoDatabaseError) {
      process.stderr.write(`configuration error: ${err.message}\n`);
      process.exit(2);
    }
    log.error("cannot start", { error: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  }
  const stop = (signal: string) => {
    log.info("signal received", { signal });
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error("shutdown failed", { error: String(err) });
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}

main().catch((err: unknown) => {
  process.stderr.write(`fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
