// The retention sweep: deletes the sessions inserted more than `retentionDays` ago, each like
// delete() (so each deletion takes a revision and is in the change log). A sweep because FerretDB
// has no TTL indexes (docs/mongodb.md); the service's background jobs run it on a timer through
// the port's optional purgeRetained (src/domain/jobs.ts).

import type { Collection } from "mongodb";

import { NotFoundError, RevisionConflictError } from "../../domain/errors";
import type { CallOptions, ConditionalOptions } from "../../domain/store";
import type { CallRunner } from "./call";
import type { StoredSession } from "./codec";
import { INSERT } from "./collections";

const DAY_MS = 86_400_000;
const PURGE_BATCH = 1000;

/** What the sweep works with: the store's sessions, call runner and delete(). */
export interface RetentionTarget {
  sessions: Collection<StoredSession>;
  calls: CallRunner;
  delete(id: string, options: ConditionalOptions): Promise<unknown>;
}

/**
 * Deletes the sessions whose metadata.time.insert is before now - retentionDays, each like
 * delete(). Returns how many were deleted; 0 without retentionDays.
 */
export async function purgeRetained(target: RetentionTarget, days: number | undefined, now: Date, options: CallOptions): Promise<number> {
  if (days === undefined) return 0;
  const before = new Date(now.getTime() - days * DAY_MS);
  let deleted = 0;
  // In batches (the `insert` index, oldest first), so a large backlog is never held in memory.
  for (;;) {
    const expired = await target.calls.run(options, (call) =>
      target.sessions
        .find({ [INSERT]: { $lt: before } }, { ...call.opts, projection: { _id: 1, revision: 1 } })
        .sort({ [INSERT]: 1 })
        .limit(PURGE_BATCH)
        .toArray(),
    );
    let progressed = 0;
    for (const { _id, revision } of expired) {
      try {
        await target.delete(_id, { ...options, expectedRevision: revision });
        deleted++;
        progressed++;
      } catch (err) {
        // Changed or deleted meanwhile: the next sweep sees it again if still expired.
        if (!(err instanceof NotFoundError || err instanceof RevisionConflictError)) throw err;
      }
    }
    if (expired.length < PURGE_BATCH || progressed === 0) return deleted;
  }
}
