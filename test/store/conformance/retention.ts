// Retention: the domain's sweep (src/domain/retention.ts) over this store deletes the sessions
// inserted before the window and nothing else, in bounded batches, each deletion a normal delete
// that takes a revision and is in the change log (watchers see it). The sweep uses only list()
// with an insert-time bound and conditional deletes, so every adapter must give the same outcome.

import { NotFoundError } from "../../../src/domain/errors";
import { purgeRetained } from "../../../src/domain/retention";
import type { SessionStore } from "../../../src/domain/store";
import { at, fullDoc, rejection, type CurrentStore } from "./support";

const DAY_MIN = 24 * 60;

export function retentionTests(current: CurrentStore): void {
  let store: SessionStore;
  beforeEach(() => {
    store = current().store;
  });

  describe("retention sweep", () => {
    it("deletes the sessions inserted before now - retention, in batches, each as a change in the log", async () => {
      const now = at(40 * DAY_MIN);
      const old = ["r-old-1", "r-old-2", "r-old-3", "r-old-4", "r-old-5"];
      for (const [i, id] of old.entries()) await store.create(fullDoc(id, at(i)));
      await store.create(fullDoc("r-edge", at(10 * DAY_MIN))); // exactly at the bound: kept
      await store.create(fullDoc("r-recent", at(39 * DAY_MIN)));
      const head = await store.headRevision();

      // 30 days, 2 per batch: three batches (2 + 2 + 1).
      expect(await purgeRetained(store, 30 * DAY_MIN * 60_000, now, {}, 2)).toBe(5);
      for (const id of old) expect(await rejection(store.get(id))).toBeInstanceOf(NotFoundError);
      expect((await store.get("r-edge")).id).toBe("r-edge");
      expect((await store.get("r-recent")).id).toBe("r-recent");

      const { changes } = await store.readChanges(head, 100);
      expect(changes.map((c) => [c.kind, c.id]).sort()).toEqual(old.map((id) => ["deleted", id]).sort());
      expect(await purgeRetained(store, 30 * DAY_MIN * 60_000, now)).toBe(0);
    });

    it("leaves a session that changed after it was read to the next sweep", async () => {
      const now = at(40 * DAY_MIN);
      await store.create(fullDoc("r-busy", at(0)));
      // A store whose list() returns the session as it was, then sees it updated before the delete.
      const racing: SessionStore = Object.create(store);
      racing.list = async (query, options) => {
        const page = await store.list(query, options);
        for (const doc of page) await store.update(doc.id, { set: [{ path: ["metadata", "channel"], value: "changed" }], unset: [] });
        return page;
      };
      expect(await purgeRetained(racing, DAY_MIN * 60_000, now)).toBe(0);
      expect((await store.get("r-busy")).metadata.channel).toBe("changed");
      expect(await purgeRetained(store, DAY_MIN * 60_000, now)).toBe(1);
    });
  });
}
