import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import Database from "better-sqlite3";

import { AlreadyExistsError, NotFoundError, RevisionConflictError, StoreUnavailableError } from "../../src/domain/errors";
import { SqliteSessionStore } from "../../src/store/sqlite";
import { fullDoc, rejection, runStoreConformance } from "./conformance";

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "sessions-sqlite-"));
}

runStoreConformance("sqlite", async () => {
  const dir = tempDir();
  const store = SqliteSessionStore.open(dir);
  return {
    store,
    cleanup: async () => {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe("SqliteSessionStore (file specifics)", () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("keeps sessions and the revision counter across close and reopen", async () => {
    const first = SqliteSessionStore.open(dir);
    await first.create(fullDoc("kept"));
    await first.create(fullDoc("gone"));
    const updated = await first.update("kept", { set: [{ path: ["properties", "after"], value: "update" }], unset: [] });
    const { revision: deleted } = await first.delete("gone");
    await first.close();

    const reopened = SqliteSessionStore.open(dir);
    try {
      expect(await reopened.get("kept")).toStrictEqual(updated);
      expect((await reopened.list({ limit: 10 })).map((d) => d.id)).toEqual(["kept"]);
      const { session } = await reopened.create(fullDoc("next"));
      expect(session.revision).toBeGreaterThan(deleted);
    } finally {
      await reopened.close();
    }
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
      const created = results.flatMap((r) => (r.status === "fulfilled" ? [(r.value as { session: { revision: number } }).session.revision] : []));
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

  it("commits writes issued before close", async () => {
    const store = SqliteSessionStore.open(dir);
    const pending = store.create(fullDoc("late"));
    await store.close();
    expect((await pending).created).toBe(true);

    const reopened = SqliteSessionStore.open(dir);
    try {
      expect((await reopened.get("late")).id).toBe("late");
    } finally {
      await reopened.close();
    }
  });

  it("shares one revision sequence between connections to the same file (as separate processes would)", async () => {
    const a = SqliteSessionStore.open(dir);
    const b = SqliteSessionStore.open(dir);
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
      await a.close();
      await b.close();
    }
  });
});

// The store runs its SQLite work on worker threads (src/store/sqlite/index.ts); these pin what the
// main-thread side promises: typed errors survive the hop, a waiting call leaves the queue when
// its caller gives up, a write handed to the writer is reported truthfully, the queue is bounded,
// onCommit fires, and a dead thread is replaced.
describe("SqliteSessionStore (threads and queue)", () => {
  let dir: string;
  let holder: Database.Database | undefined;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => {
    if (holder?.inTransaction) holder.exec("ROLLBACK");
    holder?.close();
    holder = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Another connection takes the write lock, as another process would. */
  function holdWriteLock(): Database.Database {
    holder = new Database(path.join(dir, "sessions.db"));
    holder.exec("BEGIN IMMEDIATE");
    return holder;
  }

  it("rebuilds typed errors as the same classes with their fields", async () => {
    const store = SqliteSessionStore.open(dir);
    try {
      const { session } = await store.create(fullDoc("e-1"));
      const conflict = await rejection(store.update("e-1", { set: [], unset: [] }, { expectedRevision: session.revision + 5 }));
      expect(conflict).toBeInstanceOf(RevisionConflictError);
      expect(conflict).toMatchObject({ id: "e-1", expected: session.revision + 5, actual: session.revision, reason: "REVISION_MISMATCH" });
      const missing = await rejection(store.get("nope"));
      expect(missing).toBeInstanceOf(NotFoundError);
      expect(missing).toMatchObject({ id: "nope", metadata: { id: "nope" }, message: 'session "nope" not found' });
      expect(await rejection(store.create(fullDoc("e-1")))).toBeInstanceOf(AlreadyExistsError);
    } finally {
      await store.close();
    }
  });

  it("fires onCommit after this process's commits", async () => {
    const store = SqliteSessionStore.open(dir);
    try {
      const fired = new Promise<void>((resolve) => store.onCommit(resolve));
      await store.create(fullDoc("c-1"));
      await fired;
    } finally {
      await store.close();
    }
  });

  it("takes a queued call out when its signal aborts or its deadline passes, and reports a write under way truthfully", async () => {
    // One write at a time on the writer, so that the next ones wait in the main-thread queue.
    const store = SqliteSessionStore.open(dir, { writerInFlight: 1, queueLimit: 2 });
    try {
      const lock = holdWriteLock();
      // Handed to the writer, which waits for the lock (up to its deadline).
      const underWay = store.create(fullDoc("w-1"), { deadline: new Date(Date.now() + 10_000) });
      const controller = new AbortController();
      const aborted = rejection(store.create(fullDoc("w-2"), { signal: controller.signal }));
      const expiring = rejection(store.create(fullDoc("w-3"), { deadline: new Date(Date.now() + 300) }));
      // The queue holds two calls: a third fails at once.
      expect(await rejection(store.create(fullDoc("w-4")))).toBeInstanceOf(StoreUnavailableError);

      controller.abort();
      expect(await aborted).toBeInstanceOf(Error);
      expect(await expiring).toBeInstanceOf(StoreUnavailableError);

      // The write under way was not given up: it commits once the lock is free.
      lock.exec("ROLLBACK");
      expect((await underWay).created).toBe(true);
      expect((await store.get("w-1")).id).toBe("w-1");
      for (const id of ["w-2", "w-3", "w-4"]) expect(await rejection(store.get(id))).toBeInstanceOf(NotFoundError);
    } finally {
      await store.close();
    }
  });

  it("fails the calls of a thread that died with StoreUnavailableError, and starts it again", async () => {
    const store = SqliteSessionStore.open(dir);
    try {
      await store.create(fullDoc("t-1"));
      const lock = holdWriteLock();
      const underWay = rejection(store.create(fullDoc("t-2")));
      // The writer thread dies while it holds the write (as on a crash of the driver).
      const writer = (store as unknown as { writer: { worker: { terminate(): Promise<number> } } }).writer;
      await writer.worker.terminate();
      expect(await underWay).toBeInstanceOf(StoreUnavailableError);
      lock.exec("ROLLBACK");
      // The next calls start a new writer.
      expect((await store.create(fullDoc("t-3"))).created).toBe(true);
      await expect(store.ping()).resolves.toBeUndefined();
      expect((await store.list({ limit: 10 })).map((d) => d.id).sort()).toEqual(["t-1", "t-3"]);
    } finally {
      await store.close();
    }
  });

  it("ping fails while another connection holds the write lock, and answers again after", async () => {
    const store = SqliteSessionStore.open(dir);
    try {
      await expect(store.ping()).resolves.toBeUndefined();
      const lock = holdWriteLock();
      expect(await rejection(store.ping({ deadline: new Date(Date.now() + 200) }))).toBeInstanceOf(StoreUnavailableError);
      // Reads go on meanwhile.
      expect(await store.headRevision()).toBe(0);
      lock.exec("ROLLBACK");
      await expect(store.ping({ deadline: new Date(Date.now() + 5000) })).resolves.toBeUndefined();
    } finally {
      await store.close();
    }
  });
});
