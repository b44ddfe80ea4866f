// The change log (the WatchSessions feed reads it): readChanges returns every committed change
// once, in revision order, with the session after it and the filter fields before it, gap-free
// (safeRevision); headRevision and snapshotRevision bound what a watch has to read; trimChanges
// drops old entries, after which older cursors get ChangesTrimmedError; onCommit tells this
// instance's listeners about its own commits. Several instances on one database (as several
// service processes) read one log.

import { AlreadyExistsError, ChangesTrimmedError, RevisionConflictError } from "../../../src/domain/errors";
import { CHANGES_READ_BYTES, type SessionPatch, type SessionStore } from "../../../src/domain/store";
import { at, fullDoc, rejection, type CurrentStore } from "./support";

const patch = (value: string): SessionPatch => ({ set: [{ path: ["os", "version"], value }], unset: [] });

export function changeLogTests(current: CurrentStore): void {
  let store: SessionStore;
  beforeEach(() => {
    store = current().store;
  });

  describe("change log", () => {
    it("records each create, update and delete once, in revision order, with the session after it and the filter fields before it", async () => {
      const head = await store.headRevision();
      const { session: created } = await store.create(
        fullDoc("ch-1", at(0), { profileId: "p-a", status: "active", channel: "web", channelGroup: "Paid Search" }),
      );
      const updated = await store.update("ch-1", {
        set: [
          { path: ["metadata", "status"], value: "closed" },
          { path: ["metadata", "channel"], value: "app" },
        ],
        unset: [],
      });
      const { session: other } = await store.create(fullDoc("ch-2", at(1), { profileId: null, channelGroup: null }));
      const { revision: deleted } = await store.delete("ch-1");
      // Failed writes leave no record.
      expect(await rejection(store.update("ch-2", patch("x"), { expectedRevision: other.revision + 1000 }))).toBeInstanceOf(
        RevisionConflictError,
      );
      expect(await rejection(store.create(fullDoc("ch-2")))).toBeInstanceOf(AlreadyExistsError);

      const { changes, safeRevision } = await store.readChanges(head, 100);
      expect(changes.map((c) => [c.revision, c.kind, c.id])).toEqual([
        [created.revision, "created", "ch-1"],
        [updated.revision, "updated", "ch-1"],
        [other.revision, "created", "ch-2"],
        [deleted, "deleted", "ch-1"],
      ]);
      expect(changes[0].doc).toStrictEqual(created);
      expect(changes[1].doc).toStrictEqual(updated);
      expect(changes[2].doc).toStrictEqual(other);
      // A deletion's record holds the session's last state, stamped with the deletion's revision.
      expect(changes[3].doc).toStrictEqual({ ...updated, revision: deleted });
      expect(changes.map((c) => c.before)).toEqual([
        null,
        { profileId: "p-a", status: "active", channel: "web", channelGroup: "Paid Search" },
        null,
        { profileId: "p-a", status: "closed", channel: "app", channelGroup: "Paid Search" },
      ]);
      // A failed write may have used up a revision that has no change: revisions need not be
      // consecutive, only increasing.
      expect(safeRevision).toBeGreaterThanOrEqual(deleted);
      expect(await store.headRevision()).toBeGreaterThanOrEqual(deleted);
      expect(await store.readChanges(safeRevision, 100)).toEqual({ changes: [], safeRevision });
    });

    it("keeps the channel group before each change, null for a session without traffic", async () => {
      const head = await store.headRevision();
      await store.create(fullDoc("cg-1", at(0), { channelGroup: "Email" }));
      await store.create(fullDoc("cg-2", at(0), { channelGroup: null }));
      await store.update("cg-1", patch("x"));
      await store.update("cg-2", patch("y"));
      await store.delete("cg-1");
      await store.delete("cg-2");
      const { changes } = await store.readChanges(head, 100);
      expect(changes.map((c) => [c.kind, c.id, c.before?.channelGroup, c.doc.traffic?.channel_group ?? null])).toEqual([
        ["created", "cg-1", undefined, "Email"],
        ["created", "cg-2", undefined, null],
        ["updated", "cg-1", "Email", "Email"],
        ["updated", "cg-2", null, null],
        ["deleted", "cg-1", "Email", "Email"],
        ["deleted", "cg-2", null, null],
      ]);
    });

    it("reads at most `limit` changes; the next read goes on from safeRevision, and past the head reads nothing", async () => {
      const head = await store.headRevision();
      const written: number[] = [];
      for (let i = 0; i < 5; i++) written.push((await store.create(fullDoc(`pg-${i}`, at(i)))).session.revision);

      const pages: number[][] = [];
      let after = head;
      for (;;) {
        const { changes, safeRevision } = await store.readChanges(after, 2);
        expect(changes.length).toBeLessThanOrEqual(2);
        expect(safeRevision).toBeGreaterThanOrEqual(after);
        if (changes.length === 0) break;
        if (pages.length > written.length) throw new Error("reading does not end: safeRevision is not advancing");
        expect(safeRevision).toBe(changes[changes.length - 1].revision);
        pages.push(changes.map((c) => c.revision));
        after = safeRevision;
      }
      expect(pages).toEqual([written.slice(0, 2), written.slice(2, 4), written.slice(4)]);
      expect(after).toBe(written[4]);
      expect(await store.readChanges(written[4], 2)).toEqual({ changes: [], safeRevision: written[4] });
      // A cursor beyond the head: nothing yet, and safeRevision never below the cursor.
      expect(await store.readChanges(written[4] + 10, 2)).toEqual({ changes: [], safeRevision: written[4] + 10 });
    });

    it("stops a read once its documents reach CHANGES_READ_BYTES, and the next read goes on from safeRevision", async () => {
      const head = await store.headRevision();
      // Six sessions of a little over a quarter of the budget each: a read of 100 holds 4 or 5.
      const pad = "x".repeat(Math.ceil(CHANGES_READ_BYTES / 4) + 1024);
      const written: number[] = [];
      for (let i = 0; i < 6; i++) {
        const doc = fullDoc(`big-${i}`, at(i));
        written.push((await store.create({ ...doc, properties: { pad } })).session.revision);
      }
      const reads: number[][] = [];
      let after = head;
      for (;;) {
        const { changes, safeRevision } = await store.readChanges(after, 100);
        if (changes.length === 0) break;
        if (reads.length > written.length) throw new Error("reading does not end: safeRevision is not advancing");
        expect(changes.length).toBeLessThanOrEqual(5);
        expect(safeRevision).toBe(changes[changes.length - 1].revision);
        reads.push(changes.map((c) => c.revision));
        expect(changes.every((c) => (c.doc.properties as { pad?: string }).pad === pad)).toBe(true);
        // Each carries its size as read (the feed's buffer counts it without measuring again).
        expect(changes.every((c) => (c.bytes ?? 0) >= pad.length && c.bytes! < pad.length + 10_000)).toBe(true);
        after = safeRevision;
      }
      expect(reads.length).toBe(2);
      expect(reads.flat()).toEqual(written);
    });

    it("holds each of many concurrent writes exactly once, in revision order", async () => {
      const head = await store.headRevision();
      await store.create(fullDoc("cc-hot"));
      const revisions = await Promise.all([
        ...Array.from({ length: 16 }, (_, i) => store.create(fullDoc(`cc-${i}`)).then((r) => r.session.revision)),
        ...Array.from({ length: 8 }, (_, i) =>
          store.update("cc-hot", { set: [{ path: ["properties", `k${i}`], value: i }], unset: [] }).then((d) => d.revision),
        ),
      ]);
      const { changes, safeRevision } = await store.readChanges(head, 1000);
      const logged = changes.map((c) => c.revision);
      expect(logged.slice(1)).toEqual([...revisions].sort((a, b) => a - b));
      expect(changes[0]).toMatchObject({ kind: "created", id: "cc-hot" });
      expect(safeRevision).toBe(logged[logged.length - 1]);
      // The last update of the hot session carries every patch.
      const last = changes.filter((c) => c.id === "cc-hot").pop()!;
      for (let i = 0; i < 8; i++) expect(last.doc.properties[`k${i}`]).toBe(i);
      expect(last.doc).toStrictEqual(await store.get("cc-hot"));
    });

    it("puts headRevision and snapshotRevision at or above every completed write", async () => {
      const start = await store.headRevision();
      expect(await store.snapshotRevision()).toBeGreaterThanOrEqual(start);
      await store.create(fullDoc("h-1"));
      const updated = await store.update("h-1", patch("2"));
      const head = await store.headRevision();
      expect(head).toBe(updated.revision);
      expect(await store.snapshotRevision()).toBeGreaterThanOrEqual(head);
      // A watch from the head reads nothing older.
      expect((await store.readChanges(head, 10)).changes).toEqual([]);
    });

    it("trims the changes committed before `before`; older cursors then get ChangesTrimmedError", async () => {
      const head = await store.headRevision();
      await store.create(fullDoc("t-1"));
      const { session: second } = await store.create(fullDoc("t-2"));
      // Nothing was committed before the epoch: nothing goes.
      expect(await store.trimChanges(new Date(0))).toBeLessThanOrEqual(head);
      expect((await store.readChanges(head, 10)).changes.map((c) => c.id)).toEqual(["t-1", "t-2"]);

      const oldest = await store.trimChanges(new Date(Date.now() + 60_000));
      expect(oldest).toBe(second.revision);
      const err = await rejection(store.readChanges(head, 10));
      expect(err).toBeInstanceOf(ChangesTrimmedError);
      expect(err).toMatchObject({ requested: head, oldestResumable: oldest });
      expect(await store.readChanges(oldest, 10)).toEqual({ changes: [], safeRevision: oldest });

      // Changes after the trim are read from the oldest resumable revision on.
      const { session: third } = await store.create(fullDoc("t-3"));
      expect((await store.readChanges(oldest, 10)).changes.map((c) => [c.revision, c.id])).toEqual([[third.revision, "t-3"]]);
      expect(await store.trimChanges(new Date(0))).toBe(oldest);
    });

    it("fires onCommit after this process's commits, with the change already in the log", async () => {
      const head = await store.headRevision();
      const logged = new Promise<number[]>((resolve, reject) => {
        store.onCommit(() => {
          store.readChanges(head, 10).then((batch) => resolve(batch.changes.map((c) => c.revision)), reject);
        });
      });
      const { session } = await store.create(fullDoc("c-1"));
      expect(await logged).toEqual([session.revision]);
    });

    it("stops calling an onCommit listener once it is removed", async () => {
      const removed = jest.fn();
      store.onCommit(removed)();
      // Listeners are called together, in the order they were added: by the time this one is
      // called, the removed one would have been.
      const fired = new Promise<void>((resolve) => store.onCommit(resolve));
      await store.create(fullDoc("c-2"));
      await fired;
      expect(removed).not.toHaveBeenCalled();
    });

    it("gives unique revisions and loses no patch with several store instances (as several processes) on one database", async () => {
      const others = [await current().openAnother(), await current().openAnother()];
      try {
        const stores = [store, ...others];
        const { session: hot } = await store.create(fullDoc("p-hot"));
        const revisions = await Promise.all([
          ...Array.from({ length: 24 }, (_, i) =>
            stores[i % 3].update("p-hot", { set: [{ path: ["properties", `w${i}`], value: i }], unset: [] }).then((d) => d.revision),
          ),
          ...Array.from({ length: 12 }, (_, i) => stores[i % 3].create(fullDoc(`p-new-${i}`)).then((r) => r.session.revision)),
        ]);
        expect(new Set(revisions).size).toBe(revisions.length);
        const final = await others[1].get("p-hot");
        for (let i = 0; i < 24; i++) expect(final.properties[`w${i}`]).toBe(i);
        expect(final.revision).toBe(Math.max(...revisions.slice(0, 24)));
        const next = await others[0].create(fullDoc("p-last"));
        expect(next.session.revision).toBeGreaterThan(Math.max(...revisions));

        // Every instance reads the same complete log, in revision order.
        const all = [...revisions, next.session.revision].sort((a, b) => a - b);
        for (const reader of stores) {
          const { changes, safeRevision } = await reader.readChanges(hot.revision, 1000);
          expect(changes.map((c) => c.revision)).toEqual(all);
          expect(safeRevision).toBe(next.session.revision);
          expect(await reader.headRevision()).toBe(next.session.revision);
        }
      } finally {
        await Promise.all(others.map((s) => s.close()));
      }
    });
  });
}
