// Retention: with retentionDays, the sweep deletes the sessions inserted before the window, each
// deletion taking a revision (so watchers see it); without it, nothing is deleted.

import { NotFoundError } from "../../../src/domain/errors";
import { MongoSessionStore } from "../../../src/store/mongo";
import { freshDatabase, type FreshDatabase } from "../../support/mongo";
import { fullDoc, rejection } from "../conformance/support";

describe("MongoSessionStore: retention", () => {
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

  it("purges sessions older than retentionDays, each deletion taking a revision", async () => {
    const retained = await MongoSessionStore.connect({ uri: db.uri, database: db.dbName, retentionDays: 30 });
    try {
      const now = new Date(Date.UTC(2024, 6, 1));
      const old = await retained.create(fullDoc("old", new Date(now.getTime() - 31 * 86_400_000)));
      await retained.create(fullDoc("recent", new Date(now.getTime() - 29 * 86_400_000)));
      expect(await retained.purgeRetained(now)).toBe(1);
      expect(await rejection(retained.get("old"))).toBeInstanceOf(NotFoundError);
      expect((await retained.get("recent")).id).toBe("recent");
      expect((await retained.create(fullDoc("later"))).session.revision).toBeGreaterThan(old.session.revision + 2);
      expect(await store.purgeRetained(now)).toBe(0); // no retentionDays: keeps everything
    } finally {
      await retained.close();
    }
  });
});
