// Session retention (SESSION_RETENTION): deletes the sessions inserted longer ago than the
// retention, the same way on every store. It reads through list() (an insert-time bound, so the
// store's insert index answers it) in bounded batches and deletes each session conditionally on
// the revision it read: every deletion is a normal delete (a revision, a DELETED change that
// watchers see), and a session changed meanwhile is left to the next sweep. Run on a timer by
// src/domain/jobs.ts; safe to run in several replicas at once.

import { NotFoundError, RevisionConflictError } from "./errors";
import type { CallOptions, SessionStore } from "./store";

/** Sessions read and deleted per batch: bounds the memory and one batch's store calls. */
export const RETENTION_BATCH = 500;

/** Deletes the sessions whose metadata.time.insert is before `now - retentionMs`; returns how many. */
export async function purgeRetained(
  store: SessionStore,
  retentionMs: number,
  now: Date,
  options: CallOptions = {},
  batch = RETENTION_BATCH,
): Promise<number> {
  const before = new Date(now.getTime() - retentionMs);
  let deleted = 0;
  for (;;) {
    options.signal?.throwIfAborted();
    const expired = await store.list({ insertTo: before, limit: batch }, options);
    let progressed = 0;
    for (const session of expired) {
      try {
        await store.delete(session.id, { ...options, expectedRevision: session.revision });
        deleted++;
        progressed++;
      } catch (err) {
        // Changed or deleted meanwhile: the next sweep sees it again if it is still too old.
        if (!(err instanceof NotFoundError || err instanceof RevisionConflictError)) throw err;
      }
    }
    if (expired.length < batch || progressed === 0) return deleted;
  }
}
