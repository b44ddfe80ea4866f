// Chooses the store from the configuration: MongoDB when MONGODB_URI is set, else the
// embedded SQLite store under DATA_DIR.

import type { Config } from "../config";
import { redactUri, type Logger } from "../log";
import type { SessionStore } from "../domain/store";
import { openInBackground } from "./retrying";
import { SqliteSessionStore } from "./sqlite";

export async function openStore(config: Config, log: Logger): Promise<SessionStore> {
  if (config.mongodbUri) {
    log.info("opening store", { kind: "mongodb", uri: redactUri(config.mongodbUri), database: config.mongodbDatabase });
    // Loaded on demand: the embedded default does not pay for the MongoDB driver. Opened in the
    // background, so the service starts (answering UNAVAILABLE) while the database is down.
    const { MongoSessionStore } = await import("./mongo");
    const uri = config.mongodbUri;
    return openInBackground(
      "mongodb",
      () =>
        MongoSessionStore.connect({
          uri,
          database: config.mongodbDatabase,
          writeConcern: { w: config.mongodbWriteConcern, journal: true },
          timeoutMs: config.storeTimeoutMs,
          log,
        }),
      log,
    );
  }
  log.info("opening store", { kind: "sqlite", data_dir: config.dataDir });
  return SqliteSessionStore.open(config.dataDir, { readers: config.sqliteReaders, queueLimit: config.sqliteQueueLimit });
}
