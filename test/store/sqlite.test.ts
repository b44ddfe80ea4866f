import fs from "node:fs";

import { SqliteSessionStore } from "../../src/store/sqlite";
import { runStoreConformance } from "./conformance";
import { tempDir } from "./sqlite/support";

runStoreConformance("sqlite", async () => {
  const dir = tempDir();
  const store = SqliteSessionStore.open(dir);
  return {
    store,
    openAnother: async () => SqliteSessionStore.open(dir),
    cleanup: async () => {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
});
