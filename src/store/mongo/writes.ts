// Update and delete: the conditional write of one session. A writer reserves the next revision
// with the claim "<id>@<current revision>", makes sure the change that produced the current
// revision is in the log, writes the session on {_id, revision: current}, then records the outcome
// (changes.ts). Writers of one session in this process take turns, so claims only arbitrate
// between processes. The protocol: docs/watch.md ("MongoDB and FerretDB"), docs/mongodb.md.

import { NotFoundError, RevisionConflictError } from "../../domain/errors";
import type { SessionDoc } from "../../domain/session";
import type { SessionPatch } from "../../domain/store";
import { backoff, untilAborted, type Call } from "./call";
import { filterFields, type ChangeLog } from "./changes";
import { fromStoredDocument, patchToUpdate, type StoredSession } from "./codec";
import type { MongoCollections } from "./collections";
import { isUncertain } from "./errors";
import type { Reservation, Reservations } from "./reservations";
import type { VisitNumbers, VisitTaken } from "./visits";

/** Writes sessions one revision at a time (update, delete). */
export class SessionWriter {
  /** Per session, the end of the queue of this process's writers (see modify). */
  private readonly sessionTurns = new Map<string, Promise<void>>();

  constructor(
    private readonly collections: MongoCollections,
    private readonly reservations: Reservations,
    private readonly changeLog: ChangeLog,
    private readonly visitNumbers: VisitNumbers,
    /** The server is FerretDB: nested arrays are wrapped (see wrapNestedArrays). */
    private readonly ferret: boolean,
  ) {}

  /** Applies `patch`; with `visitIn`, also numbers the visit in that profile. */
  async update(
    id: string,
    patch: SessionPatch,
    expected: number | undefined,
    visitIn: string | undefined,
    call: Call,
  ): Promise<SessionDoc> {
    // Taken once, when the session is ours to write (reservation held), kept across retries.
    let visit: VisitTaken | undefined;
    try {
      return await this.modify(id, "updated", expected, call, async (from, revision) => {
        const update = patchToUpdate(patch, revision, this.ferret);
        if (visitIn !== undefined) {
          visit ??= await this.visitNumbers.claimVisit(visitIn, id, call);
          Object.assign(update.$set!, { session_index: visit.index, previous_session_id: visit.previous });
        }
        const after = await this.collections.sessions.findOneAndUpdate({ _id: id, revision: from }, update, {
          ...call.opts,
          returnDocument: "after",
        });
        return after ? { result: fromStoredDocument(after), doc: after } : null;
      });
    } catch (err) {
      // Not written (or not known to be): the number stays unused.
      if (visit && !isUncertain(err, call)) await this.visitNumbers.voidVisit(visit.claim, call).catch(() => undefined);
      throw err;
    }
  }

  async delete(id: string, expected: number | undefined, call: Call): Promise<{ revision: number }> {
    return this.modify(id, "deleted", expected, call, async (from, revision, current) => {
      const res = await this.collections.sessions.deleteOne({ _id: id, revision: from }, call.opts);
      return res.deletedCount === 1 ? { result: { revision }, doc: current } : null;
    });
  }

  /**
   * Erases session `id` of profile `profileId` (erase.ts): deletes it with an erased change.
   * NotFoundError when it is gone or no longer the profile's (merged away meanwhile).
   */
  async erase(id: string, profileId: string, call: Call): Promise<{ revision: number; doc: StoredSession }> {
    return this.modify(
      id,
      "deleted",
      undefined,
      call,
      async (from, revision, current) => {
        if (current.profile?.id !== profileId) throw new NotFoundError(id);
        const res = await this.collections.sessions.deleteOne({ _id: id, revision: from }, call.opts);
        return res.deletedCount === 1 ? { result: { revision, doc: current }, doc: current } : null;
      },
      true,
    );
  }

  /**
   * Moves session `id` away from its current revision with `write`, which must write
   * conditionally on {_id: id, revision: from} and return null when nothing matched.
   * With `expected`, a different current revision is a RevisionConflictError; without it, the
   * write is retried on the revision read until it applies.
   */
  private async modify<T>(
    id: string,
    kind: "updated" | "deleted",
    expected: number | undefined,
    call: Call,
    write: (from: number, revision: number, current: StoredSession) => Promise<{ result: T; doc: StoredSession } | null>,
    erase = false,
  ): Promise<T> {
    // Writers of one session in this process take turns (claims only arbitrate between
    // processes then); waiting for the turn counts against the call's budget.
    const previous = this.sessionTurns.get(id) ?? Promise.resolve();
    let done!: () => void;
    const turn = new Promise<void>((resolve) => (done = resolve));
    const queued = previous.then(() => turn);
    this.sessionTurns.set(id, queued);
    try {
      await untilAborted(previous, call.signal);
      return await this.modifyNow(id, kind, expected, call, write, erase);
    } finally {
      done();
      if (this.sessionTurns.get(id) === queued) this.sessionTurns.delete(id);
    }
  }

  private async modifyNow<T>(
    id: string,
    kind: "updated" | "deleted",
    expected: number | undefined,
    call: Call,
    write: (from: number, revision: number, current: StoredSession) => Promise<{ result: T; doc: StoredSession } | null>,
    erase: boolean,
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const current = await this.collections.sessions.findOne({ _id: id }, call.opts);
      if (!current) throw new NotFoundError(id);
      if (expected !== undefined && current.revision !== expected) throw new RevisionConflictError(id, expected, current.revision);
      const from = current.revision;
      const reservation: Omit<Reservation, "_id" | "at"> = { id, kind, key: `${id}@${from}`, before: filterFields(current) };
      if (erase) reservation.erased = true;
      else if (kind === "deleted") reservation.last = current;
      const revision = await this.reservations.reserve(call, reservation);
      if (revision === null) {
        // Another process is moving the session away from `from`: wait for it, then re-read.
        // When that takes long, its writer may have died: look at its reservation (a scan on
        // FerretDB, hence not on every attempt).
        if (attempt > 0 && attempt % 4 === 0) await this.changeLog.recoverClaim(reservation.key!, call);
        await backoff(attempt, call);
        continue;
      }
      // The change that produced `from` must be in the log before the session moves on.
      if (!this.changeLog.committedHere.has(from)) await this.changeLog.resolve(from, call);
      let written: { result: T; doc: StoredSession } | null;
      try {
        written = await write(from, revision, current);
      } catch (err) {
        if (isUncertain(err, call)) this.changeLog.settleLater(revision, call);
        else await this.changeLog.abort(revision, call);
        throw err;
      }
      if (written) {
        await this.changeLog.commit(revision, reservation, written.doc, reservation.before ?? null, call);
        return written.result;
      }
      // Unreachable while every writer claims; kept for sessions changed by other means.
      await this.changeLog.abort(revision, call);
      await backoff(attempt, call);
    }
  }
}
