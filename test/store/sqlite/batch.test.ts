// Group commit: the writer commits the writes that arrive together in one transaction (multi-row
// inserts for creates); each write still succeeds or fails on its own, and the change log and
// visit numbers come out as if the writes had committed one by one. Revisions of this store are
// consecutive (a failed write takes none).

import fs from "node:fs";

import { AlreadyExistsError } from "../../../src/domain/errors";
import { SqliteSessionStore } from "../../../src/store/sqlite";
import { fullDoc, rejection, tempDir } from "./support";

describe("SqliteSessionStore: group commit", () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("commits concurrent writes together without letting a failing one affect the others", async () => {
    const store = SqliteSessionStore.open(dir);
    try {
      const { session } = await store.create(fullDoc("base"));
      const results = await Promise.allSettled([
        store.create(fullDoc("one")),
        // Breaks the port's precondition (the parent must exist): a bug, not a typed error.
        store.update("base", { set: [{ path: ["properties", "missing", "key"], value: 1 }], unset: [] }),
        store.create(fullDoc("base")),
        store.create(fullDoc("two")),
      ]);
      expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "rejected", "fulfilled"]);
      expect(await store.get("base")).toStrictEqual(session);

      // Failed writes leave nothing behind, not even a used revision: this store's revisions
      // are consecutive.
      const created = results.flatMap((r) =>
        r.status === "fulfilled" ? [(r.value as { session: { revision: number } }).session.revision] : [],
      );
      expect(created).toEqual([session.revision + 1, session.revision + 2]);
      const alone = await rejection(store.create(fullDoc("base")));
      expect(alone).toBeInstanceOf(AlreadyExistsError);
      expect((await store.create(fullDoc("three"))).session.revision).toBe(session.revision + 3);
    } finally {
      await store.close();
    }
  });

  it("keeps the change log and visit numbers exact when one batch creates, updates and deletes the same sessions", async () => {
    // Creates leave their change and visit rows to the batch (multi-row inserts); the update
    // and the delete of sessions created earlier in the same batch must still find them.
    const store = SqliteSessionStore.open(dir);
    try {
      const head = await store.headRevision();
      const opts = { numberVisitIn: "pb" };
      const [c1, c2, updated, deleted, c3, c4] = await Promise.all([
        store.create(fullDoc("b-1", undefined, { profileId: "pb" }), opts),
        store.create(fullDoc("b-2", undefined, { profileId: "pb" }), opts),
        store.update("b-1", { set: [{ path: ["properties", "step"], value: "updated" }], unset: [] }),
        store.delete("b-2"),
        store.create(fullDoc("b-3", undefined, { profileId: "pb" }), opts),
        store.create(fullDoc("b-4", undefined, { profileId: "other" }), { numberVisitIn: "other" }),
      ]);
      expect([c1, c2, c3, c4].map((r) => [r.session.session_index, r.session.previous_session_id])).toEqual([
        [1, null],
        [2, "b-1"],
        [3, "b-2"],
        [1, null],
      ]);
      const { changes } = await store.readChanges(head, 100);
      expect(changes.map((c) => [c.revision, c.kind, c.id])).toEqual([
        [head + 1, "created", "b-1"],
        [head + 2, "created", "b-2"],
        [head + 3, "updated", "b-1"],
        [head + 4, "deleted", "b-2"],
        [head + 5, "created", "b-3"],
        [head + 6, "created", "b-4"],
      ]);
      // Every change keeps its own post-image.
      expect(changes[0].doc).toStrictEqual(c1.session);
      expect(changes[1].doc).toStrictEqual(c2.session);
      expect(changes[2].doc).toStrictEqual(updated);
      // A deletion's record holds the session's last state, stamped with the deletion's revision.
      expect(changes[3].doc).toStrictEqual({ ...c2.session, revision: deleted.revision });
      expect(changes[4].doc).toStrictEqual(c3.session);
      // The next batch reads the numbers from the table.
      const next = await store.create(fullDoc("b-5", undefined, { profileId: "pb" }), opts);
      expect([next.session.session_index, next.session.previous_session_id]).toEqual([4, "b-3"]);
    } finally {
      await store.close();
    }
  });

  it("commits a batch of more creates than one multi-row insert holds", async () => {
    const store = SqliteSessionStore.open(dir);
    try {
      const head = await store.headRevision();
      const results = await Promise.all(
        Array.from({ length: 150 }, (_, i) => store.create(fullDoc(`m-${i}`, undefined, { profileId: "pm" }), { numberVisitIn: "pm" })),
      );
      expect(results.map((r) => r.session.session_index)).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));
      const { changes } = await store.readChanges(head, 1000);
      expect(changes.map((c) => c.id)).toEqual(results.map((r) => r.session.id));
      expect(changes.map((c) => c.revision)).toEqual(results.map((r) => r.session.revision));
    } finally {
      await store.close();
    }
  });
});
