// The store runs its SQLite work on worker threads (src/store/sqlite/threads.ts); these pin what the
// main-thread side promises: a waiting call leaves the queue when its caller gives up, a write
// handed to the writer is reported truthfully, the queue is bounded, a dead thread is replaced,
// writes issued before close commit, and the write probe (ping) waits for the write lock while
// reads go on.

import fs from "node:fs";
import path from "node:path";

import Database from "better-sqlite3";

import { NotFoundError, StoreUnavailableError } from "../../../src/domain/errors";
import { SqliteSessionStore } from "../../../src/store/sqlite";
import { fullDoc, rejection, tempDir } from "./support";

describe("SqliteSessionStore: threads and queue", () => {
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
      // Internal: SqliteSessionStore.pool is the ThreadPool of threads.ts, its `writer` the thread.
      const writer = (store as unknown as { pool: { writer: { worker: { terminate(): Promise<number> } } } }).pool.writer;
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
