// Erasure on MongoDB (EraseProfile; the contract: "Erasure" in src/domain/store.ts).
//
// eraseSessions deletes up to `limit` sessions of the profile, one conditional write each, like
// delete() (writes.ts) but with an erasure reservation: it keeps no copy of the session (`last`),
// and its outcome is a tombstone (`erased`, no doc) whose `before` still names the profile, so
// that live watchers filtered by it see the deletion. The session's idempotency key goes with
// its document; its visit claim is deleted.
//
// eraseTraces then works through the erasure reservations and outcomes whose `before` still
// names the profile (the work list; a reservation exists before its session is touched, so a crash
// between the deletion and its outcome leaves nothing behind unlisted): for each erased session
// it turns the earlier outcomes of its id into tombstones (no doc, no before; those after the
// last plain deletion of the id only: an earlier session with the same id is someone else's),
// drops the `before` and `last` copies of its reservations, and last the profile from the
// erasure's own outcome and reservation. Then the profile's visit claims. Each step is bounded
// by `limit` and idempotent. On FerretDB every filter but an exact `_id` reads the whole
// collection (docs/mongodb.md): a step costs a few scans of `changes` and `revisions`.

import type { Filter } from "mongodb";

import { NotFoundError, RevisionConflictError } from "../../domain/errors";
import type { CallOptions, EraseSessionsResult, EraseTracesResult } from "../../domain/store";
import type { CallRunner } from "./call";
import type { Outcome } from "./changes";
import { INSERT, type MongoCollections } from "./collections";
import type { Reservation } from "./reservations";
import { visitId, type VisitNumbers } from "./visits";
import type { SessionWriter } from "./writes";

export class MongoErasure {
  constructor(
    private readonly collections: MongoCollections,
    private readonly calls: CallRunner,
    private readonly writer: SessionWriter,
    private readonly visitNumbers: VisitNumbers,
  ) {}

  async eraseSessions(profileId: string, limit: number, options: CallOptions): Promise<EraseSessionsResult> {
    const { sessions } = this.collections;
    const found = await this.calls.run(options, (call) =>
      sessions
        .find({ "profile.id": profileId }, { ...call.opts, projection: { _id: 1, session_index: 1 } })
        .sort({ [INSERT]: 1, _id: 1 })
        .limit(Math.max(1, limit))
        .toArray(),
    );
    // The sessions of a batch at once (each its own conditional write; `limit` bounds them).
    const revisions = await Promise.all(found.map((s) => this.eraseOne(s._id, profileId, options)));
    const done = revisions.filter((r) => r > 0);
    // A short page: none was left when it was read.
    return { erased: done.length, revision: Math.max(0, ...done), more: found.length >= Math.max(1, limit) };
  }

  /** Erases one session and its visit claim; 0 when it is gone or no longer the profile's. */
  private async eraseOne(id: string, profileId: string, options: CallOptions): Promise<number> {
    try {
      const done = await this.calls.run(options, true, (call) => this.writer.erase(id, profileId, call));
      const index = done.doc.session_index;
      if (index > 0) {
        await this.calls.run(options, true, (call) =>
          this.collections.visits.deleteOne({ _id: visitId(profileId, index), session_id: id }, call.opts),
        );
      }
      return done.revision;
    } catch (err) {
      // Deleted, or moved to another profile, since it was listed: not this erasure's.
      if (err instanceof NotFoundError || err instanceof RevisionConflictError) return 0;
      throw err;
    }
  }

  async eraseTraces(profileId: string, limit: number, options: CallOptions): Promise<EraseTracesResult> {
    const { sessions, changes, revisions, visits } = this.collections;
    const n = Math.max(1, limit);
    const left = await this.calls.run(options, (call) =>
      sessions.findOne({ "profile.id": profileId }, { ...call.opts, projection: { _id: 1 } }),
    );
    if (left) return { done: false, sessionsLeft: true };
    this.visitNumbers.forget(profileId);

    // The work list: erasures whose reservation or outcome still names the profile (an outcome
    // inserted after another replica's clean-up of the same profile took the reservation's off).
    const listed = { erased: true as const, "before.profileId": profileId };
    const pending = await this.calls.run(options, async (call) => {
      const found = new Map<string, { _id: string; id: string }>();
      const opts = { ...call.opts, projection: { _id: 1, id: 1 } };
      for (const r of await revisions
        .find(listed as Filter<Reservation>, opts)
        .limit(n)
        .toArray())
        found.set(r._id, r);
      for (const o of await changes
        .find(listed as Filter<Outcome>, opts)
        .limit(n)
        .toArray())
        found.set(o._id, o);
      return [...found.values()];
    });
    if (pending.length > 0) {
      await this.calls.run(options, true, async (call) => {
        // The erasure of each id (the latest listed, if one id was erased twice).
        const upTo = new Map<string, string>();
        for (const p of pending) if ((upTo.get(p.id) ?? "") < p._id) upTo.set(p.id, p._id);
        // An erasure that did not delete (aborted: the session moved to another profile) has
        // nothing to scrub; its session exists.
        const kept = await sessions.find({ _id: { $in: [...upTo.keys()] } }, { ...call.opts, projection: { _id: 1 } }).toArray();
        for (const k of kept) upTo.delete(k._id);
        if (upTo.size > 0) {
          const from = new Map<string, string>();
          const plain = await changes
            .find(
              { id: { $in: [...upTo.keys()] }, kind: "deleted", erased: { $ne: true } },
              { ...call.opts, projection: { _id: 1, id: 1 } },
            )
            .toArray();
          for (const p of plain) if ((upTo.get(p.id) ?? "") > p._id && (from.get(p.id) ?? "") < p._id) from.set(p.id, p._id);
          const ranges = [...upTo].map(([id, to]) => {
            const after = from.get(id);
            return { id, _id: after === undefined ? { $lte: to } : { $gt: after, $lte: to } };
          });
          await changes.updateMany(
            { $or: ranges, erased: { $ne: true } } as Filter<Outcome>,
            { $set: { kind: "deleted", erased: true }, $unset: { doc: "", before: "" } },
            call.opts,
          );
          await revisions.updateMany({ $or: ranges } as Filter<Reservation>, { $unset: { before: "", last: "" } }, call.opts);
        }
        // Last, what lists them: the profile in the erasures' own outcomes and reservations.
        const ids = pending.map((p) => p._id);
        await changes.updateMany({ _id: { $in: ids } }, { $unset: { before: "" } }, call.opts);
        await revisions.updateMany({ _id: { $in: ids } }, { $unset: { before: "" } }, call.opts);
      });
    }

    const claims = await this.calls.run(options, (call) =>
      visits
        .find({ profile_id: profileId }, { ...call.opts, projection: { _id: 1 } })
        .limit(n)
        .toArray(),
    );
    if (claims.length > 0) {
      await this.calls.run(options, true, (call) => visits.deleteMany({ _id: { $in: claims.map((c) => c._id) } }, call.opts));
    }
    return { done: pending.length < n && claims.length < n, sessionsLeft: false };
  }
}
