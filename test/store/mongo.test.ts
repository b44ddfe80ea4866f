import { MongoSessionStore } from "../../src/store/mongo";
import { freshDatabase } from "../support/mongo";
import { runStoreConformance } from "./conformance";

runStoreConformance("mongodb", async () => {
  const db = await freshDatabase();
  const store = await MongoSessionStore.connect({ uri: db.uri, database: db.dbName });
  return {
    store,
    openAnother: () => MongoSessionStore.connect({ uri: db.uri, database: db.dbName }),
    cleanup: async () => {
      await store.close();
      await db.drop();
    },
  };
});
