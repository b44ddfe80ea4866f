import { MongoSessionStore } from "../../src/store/mongo";
import { freshDatabase } from "../support/mongo";
import { runStoreConformance } from "./conformance";

runStoreConformance("mongodb", async () => {
  const db = await freshDatabase();
  const store = await MongoSessionStore.connect({ uri: db.uri, database: db.dbName });
  return {
    store,
    openAnother: () => MongoSessionStore.connect({ uri: db.uri, database: db.dbName }),
    dump: async () => {
      const collections = await store.database.listCollections({}, { nameOnly: true }).toArray();
      const all = await Promise.all(
        collections.map(async (c) => JSON.stringify(await store.database.collection(c.name).find({}).toArray())),
      );
      return all.join("\n");
    },
    cleanup: async () => {
      await store.close();
      await db.drop();
    },
  };
});
