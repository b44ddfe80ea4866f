import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";

import { SqliteSessionStore } from "../../src/store/sqlite";
import { runStoreConformance } from "./conformance";
import { tempDir } from "./sqlite/support";

runStoreConformance("sqlite", async () => {
  const dir = tempDir();
  const store = SqliteSessionStore.open(dir);
  return {
    store,
    openAnother: async () => SqliteSessionStore.open(dir),
    dump: async () => {
      // A connection of its own: it sees what the store's writer committed.
      const db = new Database(path.join(dir, "sessions.db"), { readonly: true });
      try {
        const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[];
        return tables.map((t) => JSON.stringify(db.prepare(`SELECT * FROM "${t}"`).all())).join("\n");
      } finally {
        db.close();
      }
    },
    cleanup: async () => {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
});
