// Group commit of creates: the creates issued in one event-loop turn take their visit numbers,
// revisions, session documents and change-log outcomes with one insertMany per collection
// (ordered for the numbers, so a collision with another process keeps the prefix that was taken;
// unordered for the documents, so a duplicate id fails alone). A database that commits every
// write on its own, like FerretDB, spends most of a create's time per write, not per document,
// so this is what makes a create cost about one insert (docs/mongodb.md).

import { MongoBulkWriteError } from "mongodb";

import { AlreadyExistsError, StoreUnavailableError } from "../../domain/errors";
import type { SessionDoc } from "../../domain/session";
import type { CreateOptions, CreateResult } from "../../domain/store";
import type { Logger } from "../../log";
import { Call, untilAborted, type CallRunner } from "./call";
import { revId, logDoc, type ChangeLog, type Outcome } from "./changes";
import { deepCopy, fromStoredDocument, toStoredDocument } from "./codec";
import type { MongoCollections } from "./collections";
import { isUncertain, toStoreError } from "./errors";
import { findByRequestId } from "./queries";
import type { Reservations } from "./reservations";
import type { VisitNumbers, VisitTaken } from "./visits";

/** A create waiting for the next group commit (flushCreates). */
interface PendingCreate {
  doc: SessionDoc;
  requestId?: string;
  visitIn?: string;
  call: Call;
  resolve(result: CreateResult): void;
  reject(error: unknown): void;
}

/** Queues creates and commits them in groups. */
export class CreateBatcher {
  /** Creates waiting for the next group commit (flushCreates), and whether one is running. */
  private pendingCreates: PendingCreate[] = [];
  private creating = false;

  constructor(
    private readonly collections: MongoCollections,
    private readonly reservations: Reservations,
    private readonly changeLog: ChangeLog,
    private readonly visitNumbers: VisitNumbers,
    private readonly calls: CallRunner,
    /** The server is FerretDB: nested arrays are wrapped (see wrapNestedArrays). */
    private readonly ferret: boolean,
    private readonly log: Logger | undefined,
  ) {}

  /** A create: the replay of an earlier one with the same requestId, else joins the next group. */
  async create(doc: SessionDoc, options: CreateOptions, call: Call): Promise<CreateResult> {
    const requestId = options.requestId;
    if (requestId !== undefined) {
      const replay = await findByRequestId(this.collections.sessions, requestId, call);
      if (replay) return replay;
    }
    // Joins the creates issued in the same event-loop turn (see flushCreates); the caller
    // stops waiting at its own deadline, whatever the batch does.
    const created = new Promise<CreateResult>((resolve, reject) => {
      this.pendingCreates.push({ doc: deepCopy(doc), requestId, visitIn: options.numberVisitIn, call, resolve, reject });
      if (this.pendingCreates.length === 1 && !this.creating) setImmediate(() => void this.flushCreates());
    });
    return untilAborted(created, call.signal);
  }

  /**
   * Commits the queued creates as one group (see the header). The steps and their guarantees are
   * those of a single create (docs/watch.md); a document that fails (duplicate id or request_id)
   * fails alone, an uncertain outcome (connection lost, deadline) fails the whole batch.
   */
  private async flushCreates(): Promise<void> {
    // One batch at a time: the creates that arrive meanwhile form the next one (the batch size
    // follows the load), and a profile's numbers are not contended by two batches of this process.
    if (this.creating) return;
    const batch = this.pendingCreates.filter((p) => !p.call.signal.aborted);
    this.pendingCreates = [];
    if (batch.length === 0) return;
    this.creating = true;
    try {
      await this.runCreateBatch(batch);
    } finally {
      this.creating = false;
      if (this.pendingCreates.length > 0) setImmediate(() => void this.flushCreates());
    }
  }

  private async runCreateBatch(batch: PendingCreate[]): Promise<void> {
    const budget = Math.max(...batch.map((p) => p.call.end - Date.now()));
    if (budget <= 0 || this.calls.closed) {
      for (const p of batch) p.reject(new StoreUnavailableError("the deadline passed before the create could run"));
      return;
    }
    const call = new Call(budget);
    try {
      await this.createBatch(batch, call);
    } catch (err) {
      // Members already settled keep their result (a promise settles once).
      const error = toStoreError(err, call);
      for (const p of batch) p.reject(error);
    } finally {
      call.done();
    }
  }

  private async createBatch(batch: PendingCreate[], call: Call): Promise<void> {
    // 1. Visit numbers, per profile (a profile's creates take consecutive numbers).
    const visits = new Map<PendingCreate, VisitTaken>();
    const byProfile = new Map<string, PendingCreate[]>();
    for (const p of batch) if (p.visitIn !== undefined) byProfile.set(p.visitIn, [...(byProfile.get(p.visitIn) ?? []), p]);
    await Promise.all(
      [...byProfile].map(async ([profileId, members]) => {
        const taken = await this.visitNumbers.claimVisits(
          profileId,
          members.map((m) => m.doc.id),
          call,
        );
        members.forEach((m, i) => visits.set(m, taken[i]!));
      }),
    );
    // 2. Revisions, in batch order.
    const revisions = await this.reservations.serially(call, () =>
      this.reservations.insertReservations(
        batch.map((p) => ({ id: p.doc.id, kind: "created" as const })),
        call,
      ),
    );
    // 3. The sessions; one failing (a duplicate key) fails alone.
    const stored = batch.map((p, i) => {
      const v = visits.get(p);
      const doc = v ? { ...p.doc, session_index: v.index, previous_session_id: v.previous } : p.doc;
      return toStoredDocument(doc, revisions[i]!, p.requestId, this.ferret);
    });
    const failed = new Map<number, unknown>();
    try {
      await this.collections.sessions.insertMany(stored, { ...call.opts, ordered: false });
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError) || isUncertain(err, call)) {
        for (const r of revisions) this.changeLog.settleLater(r, call);
        throw err;
      }
      const errors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
      for (const we of errors) failed.set(we.index, we.code === 11000 ? "duplicate" : new Error(`insert failed: ${we.errmsg ?? we.code}`));
    }
    // 4. The outcomes: committed, or aborted for those not written.
    const outcomes: Outcome[] = batch.map((p, i) =>
      failed.has(i)
        ? { _id: revId(revisions[i]!), at: new Date(), id: p.doc.id, kind: "created", aborted: true }
        : {
            _id: revId(revisions[i]!),
            at: new Date(),
            id: p.doc.id,
            kind: "created",
            doc: logDoc(stored[i]!, revisions[i]!),
            before: null,
          },
    );
    try {
      await this.collections.changes.insertMany(outcomes, { ...call.opts, ordered: false });
    } catch (err) {
      // The sessions are written; a revision whose outcome is missing is resolved by readers
      // from the session's state (resolve()), as after a crash.
      this.log?.warn("recording created changes failed; they are resolved later", { error: String(err) });
    }
    let committed = false;
    for (let i = 0; i < batch.length; i++) {
      if (failed.has(i)) continue;
      this.changeLog.committedHere.add(revisions[i]!);
      committed = true;
      batch[i]!.resolve({ session: fromStoredDocument(stored[i]!), created: true });
    }
    while (this.changeLog.committedHere.size > 10_000)
      this.changeLog.committedHere.delete(this.changeLog.committedHere.values().next().value!);
    if (committed) this.changeLog.notify();
    // 5. The failed ones: their numbers become void; a duplicate is a replay or ALREADY_EXISTS.
    for (const [i, why] of failed) {
      const p = batch[i]!;
      try {
        const v = visits.get(p);
        if (v) await this.visitNumbers.voidVisit(v.claim, call);
        if (why !== "duplicate") throw why;
        // FerretDB does not say which key collided: the request_id (a concurrent replay) or _id.
        const replay = p.requestId === undefined ? null : await findByRequestId(this.collections.sessions, p.requestId, call);
        if (replay) p.resolve(replay);
        else p.reject(new AlreadyExistsError(p.doc.id));
      } catch (err) {
        p.reject(toStoreError(err, call));
      }
    }
  }
}
