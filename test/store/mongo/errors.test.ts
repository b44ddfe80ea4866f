// When the database goes away: calls fail fast with StoreUnavailableError (never anything else)
// and work again once it is back; connecting to nothing fails the same way.

import { StoreUnavailableError } from "../../../src/domain/errors";
import { MongoSessionStore } from "../../../src/store/mongo";
import { startFerret } from "../../support/mongo";
import { fullDoc, rejection } from "../conformance/support";

describe("MongoSessionStore: when the database goes away", () => {
  it("fails fast with StoreUnavailableError while it is down and works again after it is back", async () => {
    const ferret = await startFerret();
    const store = await MongoSessionStore.connect({
      uri: ferret.uri,
      database: "restart",
      timeoutMs: 1_000,
      serverSelectionTimeoutMs: 1_000,
    });
    try {
      const { session } = await store.create(fullDoc("r-1"));
      await ferret.stop();

      const started = Date.now();
      expect(await rejection(store.get("r-1"))).toBeInstanceOf(StoreUnavailableError);
      expect(await rejection(store.update("r-1", { set: [], unset: [] }, { deadline: new Date(Date.now() + 300) }))).toBeInstanceOf(
        StoreUnavailableError,
      );
      expect(await rejection(store.ping())).toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(6_000);

      await ferret.restart();
      expect(await store.get("r-1")).toStrictEqual(session);
      const next = await store.create(fullDoc("r-2"));
      expect(next.session.revision).toBeGreaterThan(session.revision);
    } finally {
      await store.close();
      await ferret.dispose();
    }
  });

  it("connect rejects with StoreUnavailableError when nothing listens", async () => {
    const ferret = await startFerret();
    const uri = ferret.uri;
    await ferret.dispose();
    const err = await rejection(MongoSessionStore.connect({ uri, database: "nothing", serverSelectionTimeoutMs: 500 }));
    expect(err).toBeInstanceOf(StoreUnavailableError);
  });
});
