// Revisions: one counter for the whole store, strictly increasing in commit order, unique
// under concurrency, untouched by failed writes, shared by every instance on one database.

import type { SessionPatch, SessionStore } from "../../../src/domain/store";
import { fullDoc, rejection, type CurrentStore } from "./support";

export function revisionTests(current: CurrentStore): void {
  let store: SessionStore;
  beforeEach(() => {
    store = current().store;
  });

  describe("revisions", () => {
    it("are strictly increasing across creates, updates and deletes, and stamp the latest change", async () => {
      const patch = (v: string): SessionPatch => ({ set: [{ path: ["os", "version"], value: v }], unset: [] });
      const seen: number[] = [];
      seen.push((await store.create(fullDoc("r-a"))).session.revision);
      seen.push((await store.create(fullDoc("r-b"))).session.revision);
      const updated = await store.update("r-a", patch("2"));
      seen.push(updated.revision);
      expect((await store.get("r-a")).revision).toBe(updated.revision);
      seen.push((await store.delete("r-b")).revision);
      seen.push((await store.create(fullDoc("r-c"))).session.revision);
      seen.push((await store.update("r-c", patch("3"))).revision);
      seen.push((await store.update("r-a", patch("4"))).revision);
      seen.push((await store.delete("r-a")).revision);
      expect((await store.get("r-c")).revision).toBe(seen[5]);

      for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]);
    });

    it("are unique under many concurrent writes of every kind", async () => {
      await store.create(fullDoc("r-hot"));
      await Promise.all(Array.from({ length: 10 }, (_, i) => store.create(fullDoc(`r-del-${i}`))));
      const revisions = await Promise.all([
        ...Array.from({ length: 20 }, (_, i) => store.create(fullDoc(`r-new-${i}`)).then((r) => r.session.revision)),
        ...Array.from({ length: 20 }, (_, i) =>
          store.update("r-hot", { set: [{ path: ["aux", `k${i}`], value: i }], unset: [] }).then((d) => d.revision),
        ),
        ...Array.from({ length: 10 }, (_, i) => store.delete(`r-del-${i}`).then((r) => r.revision)),
      ]);
      expect(revisions.every((r) => Number.isSafeInteger(r) && r > 0)).toBe(true);
      expect(new Set(revisions).size).toBe(revisions.length);
    });

    it("failed writes leave the stored session and its revision unchanged", async () => {
      const { session } = await store.create(fullDoc("r-fail"));
      await rejection(store.create(fullDoc("r-fail")));
      await rejection(store.update("r-fail", { set: [], unset: [] }, { expectedRevision: session.revision + 1000 }));
      await rejection(store.delete("r-fail", { expectedRevision: session.revision + 1000 }));
      expect(await store.get("r-fail")).toStrictEqual(session);
      expect((await store.create(fullDoc("r-next"))).session.revision).toBeGreaterThan(session.revision);
    });

    it("are shared by every instance on one database (as separate processes would)", async () => {
      const a = store;
      const b = await current().openAnother();
      try {
        const revisions: number[] = [];
        for (let i = 0; i < 5; i++) {
          revisions.push((await a.create(fullDoc(`a-${i}`))).session.revision);
          revisions.push((await b.create(fullDoc(`b-${i}`))).session.revision);
        }
        for (let i = 1; i < revisions.length; i++) expect(revisions[i]).toBeGreaterThan(revisions[i - 1]);
        expect((await b.get("a-4")).revision).toBe(revisions[8]);
        expect(await b.list({ limit: 100 })).toHaveLength(10);
      } finally {
        await b.close();
      }
    });
  });
}
