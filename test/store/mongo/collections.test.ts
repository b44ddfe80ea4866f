// The collections' indexes: one for every query, created at connect, idempotently.

import type { Document } from "mongodb";

import { MongoSessionStore, SESSION_INDEXES } from "../../../src/store/mongo";
import { freshDatabase, type FreshDatabase } from "../../support/mongo";

describe("MongoSessionStore: indexes", () => {
  let db: FreshDatabase;
  let store: MongoSessionStore;

  beforeEach(async () => {
    db = await freshDatabase();
    store = await MongoSessionStore.connect({ uri: db.uri, database: db.dbName });
  });

  afterEach(async () => {
    await store.close();
    await db.drop();
  });

  it("creates an index for every query, idempotently", async () => {
    const sessions = db.client.db(db.dbName).collection("sessions");
    const byName = (list: Document[]) => Object.fromEntries(list.map((i) => [i.name, i.key]));
    const first = byName(await sessions.listIndexes().toArray());
    for (const index of SESSION_INDEXES) expect(first[index.name!]).toEqual(index.key);
    expect(first.profile_insert).toEqual({ "profile.id": 1, "metadata.time.insert": -1, _id: -1 });
    expect(first.request_id).toEqual({ request_id: 1 });
    const unique = (await sessions.listIndexes().toArray()).find((i) => i.name === "request_id");
    expect(unique?.unique).toBe(true);

    // A second process starting on the same database changes nothing.
    const again = await MongoSessionStore.connect({ uri: db.uri, database: db.dbName });
    await again.close();
    expect(byName(await sessions.listIndexes().toArray())).toEqual(first);
  });
});
