// A SessionStore that times every call of the store it wraps and reports it to an observer (the
// metrics, src/metrics): the operation, how long it took and whether it succeeded. Results and
// errors pass through unchanged. Change batches read from the log are also handed to the
// observer (the watch delivery lag starts when this process first reads a change).

import type { ChangeBatch, SessionStore } from "../domain/store";

export const STORE_OPERATIONS = [
  "create",
  "get",
  "update",
  "delete",
  "list",
  "findExpired",
  "stats",
  "readChanges",
  "headRevision",
  "snapshotRevision",
  "trimChanges",
  "ping",
  "eraseSessions",
  "eraseTraces",
] as const;
export type StoreOperation = (typeof STORE_OPERATIONS)[number];

export interface StoreObserver {
  /** One finished call; `startedMs` is its performance.now() at the start. */
  call(operation: StoreOperation, startedMs: number, ok: boolean): void;
  /** A batch readChanges returned. */
  changes(batch: ChangeBatch): void;
}

async function measured<T>(observer: StoreObserver, operation: StoreOperation, startedMs: number, result: Promise<T>): Promise<T> {
  try {
    const value = await result;
    observer.call(operation, startedMs, true);
    return value;
  } catch (err) {
    observer.call(operation, startedMs, false);
    throw err;
  }
}

export function meteredStore(store: SessionStore, observer: StoreObserver): SessionStore {
  const o = observer;
  return {
    kind: store.kind,
    create: (doc, options) => measured(o, "create", performance.now(), store.create(doc, options)),
    get: (id, options) => measured(o, "get", performance.now(), store.get(id, options)),
    update: (id, patch, options) => measured(o, "update", performance.now(), store.update(id, patch, options)),
    delete: (id, options) => measured(o, "delete", performance.now(), store.delete(id, options)),
    list: (query, options) => measured(o, "list", performance.now(), store.list(query, options)),
    findExpired: (query, options) => measured(o, "findExpired", performance.now(), store.findExpired(query, options)),
    stats: (query, options) => measured(o, "stats", performance.now(), store.stats(query, options)),
    readChanges: async (after, limit, options) => {
      const batch = await measured(o, "readChanges", performance.now(), store.readChanges(after, limit, options));
      o.changes(batch);
      return batch;
    },
    headRevision: (options) => measured(o, "headRevision", performance.now(), store.headRevision(options)),
    snapshotRevision: (options) => measured(o, "snapshotRevision", performance.now(), store.snapshotRevision(options)),
    trimChanges: (before, options) => measured(o, "trimChanges", performance.now(), store.trimChanges(before, options)),
    ping: (options) => measured(o, "ping", performance.now(), store.ping(options)),
    eraseSessions: (profileId, limit, options) =>
      measured(o, "eraseSessions", performance.now(), store.eraseSessions(profileId, limit, options)),
    eraseTraces: (profileId, limit, options) => measured(o, "eraseTraces", performance.now(), store.eraseTraces(profileId, limit, options)),
    onCommit: (listener) => store.onCommit(listener),
    close: () => store.close(),
  };
}
