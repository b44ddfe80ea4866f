// The change log read by WatchSessions: one outcome per reservation in `changes` (the session after
// the change and the filter fields before it, or "aborted"), the first one inserted stands. A
// reader walks revisions in order by `_id` lookups and stops at the first reservation whose write
// may still land (safeRevision), so it never skips a change that commits later; a reservation left
// by a writer that died is resolved from the session's state, or aborted after the lease. The
// protocol and its guarantees: docs/watch.md ("MongoDB and FerretDB"); the documents:
// docs/mongodb.md.

import { BSON } from "mongodb";

import { erasedDoc } from "../../domain/erasure";
import { ChangesTrimmedError } from "../../domain/errors";
import { CHANGES_READ_BYTES, type ChangeBatch, type ChangeKind, type ChangeRecord, type FilterFields } from "../../domain/store";
import type { Logger } from "../../log";
import { MAX_WRITE_MS, SERVER_TIME_MARGIN_MS, type Call, type CallRunner } from "./call";
import { fromStoredDocument, type Raw, type StoredSession } from "./codec";
import type { MongoCollections } from "./collections";
import { isDuplicateKey } from "./errors";
import type { Reservation, Reservations } from "./reservations";

/** The outcome of a reservation: the change log entry. */
export interface Outcome {
  /** revId(revision) */
  _id: string;
  at: Date;
  id: string;
  kind: ChangeKind;
  doc?: StoredSession;
  before?: FilterFields | null;
  aborted?: true;
  /** A tombstone of an erased session (erase.ts): no doc; `before` until the erasure is over. */
  erased?: true;
}

export type Resolution = "committed" | "aborted" | "pending" | "none";

export interface TrimMark {
  /** revId(revision): the log was trimmed up to there. */
  _id: string;
  at: Date;
}

/**
 * Revisions as `_id`: fixed-width decimal strings, so string order is numeric order, and one
 * revision is found by an exact `_id` lookup, the only filter FerretDB serves from an index
 * (docs/mongodb.md).
 */
export function revId(revision: number): string {
  return String(revision).padStart(16, "0");
}
export function revNum(id: string): number {
  return Number(id);
}

/** Clock difference between processes the lease tolerates (a reservation's `at` is its writer's clock). */
const CLOCK_SKEW_MS = 2_000;
/**
 * A reservation without an outcome that is older than this belongs to a writer that died or
 * gave up: its write call has ended (MAX_WRITE_MS), and the server has stopped its operations
 * (maxTimeMS), so others may resolve it as aborted. This bounds how long a writer that died
 * mid-write holds the watchers of every replica (13 s).
 */
const CLAIM_LEASE_MS = MAX_WRITE_MS + SERVER_TIME_MARGIN_MS + CLOCK_SKEW_MS;
const READ_BATCH = 500;

export function filterFields(s: StoredSession): FilterFields {
  return {
    profileId: s.profile?.id ?? null,
    status: s.metadata?.status ?? "",
    channel: s.metadata?.channel ?? "",
    channelGroup: s.traffic?.channel_group ?? null,
  };
}

/** The stored session as kept in the log: stamped with the change's revision, no request_id. */
export function logDoc(s: StoredSession, revision: number): StoredSession {
  const { request_id: _ignored, ...rest } = s;
  return { ...rest, revision };
}

/** The change of outcome `o`; `bytes`, its size as read, goes with a change that has a document (not a tombstone). */
function toChangeRecord(o: Outcome, bytes?: number): ChangeRecord {
  const revision = revNum(o._id);
  // Entries written before channelGroup was kept: null, as for a session without traffic.
  const before = o.before ? { ...o.before, channelGroup: o.before.channelGroup ?? null } : null;
  if (o.erased) {
    return { revision, kind: "deleted", id: o.id, doc: erasedDoc(o.id, before?.profileId ?? null, revision), before, erased: true };
  }
  return {
    revision,
    kind: o.kind,
    id: o.id,
    doc: fromStoredDocument({ ...(o.doc as unknown as Raw), _id: o.id, revision }),
    before,
    ...(bytes === undefined ? {} : { bytes }),
  };
}

/** The change log of this process: outcomes, reading, trimming and commit notifications. */
export class ChangeLog {
  /** Every revision up to this one has its outcome (only grows). */
  private frontier = 0;
  /** Recent revisions this process recorded as committed (their outcome exists). */
  readonly committedHere = new Set<number>();
  private readonly listeners = new Set<() => void>();
  /** Timers of settleLater. */
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly collections: MongoCollections,
    private readonly reservations: Reservations,
    private readonly calls: CallRunner,
    private readonly log: Logger | undefined,
  ) {}

  async readChanges(after: number, limit: number, call: Call): Promise<ChangeBatch> {
    const trimmed = await this.reservations.trimmedThrough(call);
    if (after < trimmed) throw new ChangesTrimmedError(after, trimmed);
    const changes: ChangeRecord[] = [];
    let safe = after;
    // BSON bytes of the outcomes read, in all and each: the read stops once they reach
    // CHANGES_READ_BYTES, and each change carries its own figure.
    const size = { bytes: 0, each: [] as number[] };
    let k = 0;
    while (changes.length < limit && size.bytes < CHANGES_READ_BYTES) {
      const wanted = limit - changes.length;
      const batch = await this.outcomesFrom(safe + 1, wanted, call, undefined, size);
      for (const o of batch) {
        safe = revNum(o._id);
        const bytes = size.each[k++];
        if (!o.aborted) changes.push(toChangeRecord(o, bytes));
      }
      // All there (aborted ones take no room), or as much as the bytes allow: read on, or stop.
      if (batch.length === wanted || size.bytes >= CHANGES_READ_BYTES) continue;
      // safe + 1 had no outcome just now: resolve it, or stop before it.
      const state = await this.resolve(safe + 1, call, CLAIM_LEASE_MS, true);
      if (state === "pending" || state === "none") break;
    }
    // Everything up to `safe` is resolved only when the read started at or below the
    // frontier: a caller's cursor beyond it (a resume from a future revision, a careless
    // client's 2^62) vouches for nothing, and must not move this process's head.
    if (after <= this.frontier) this.frontier = Math.max(this.frontier, safe);
    return { changes, safeRevision: safe };
  }

  /**
   * The newest reservation: a write reserves its revision before it touches the session, and
   * reservations are taken contiguously in time, so any write a read has seen is at or below
   * it. Its outcome may not be known yet (the watcher waits for the log to get there).
   */
  async snapshotRevision(call: Call): Promise<number> {
    const head = await this.head(call);
    return Math.max(head, (await this.reservations.firstFree(Math.max(head, this.reservations.lastReserved), call)) - 1);
  }

  async trimChanges(before: Date, call: Call): Promise<number> {
    const head = await this.head(call);
    const last = await this.collections.changes
      .find({ _id: { $lte: revId(head) }, at: { $lt: before } }, { ...call.opts, projection: { _id: 1 } })
      .sort({ _id: -1 })
      .limit(1)
      .next();
    if (last) {
      const through = revNum(last._id);
      // Insert-only marker (FerretDB updates are not atomic); the largest one counts.
      await this.collections.trims.insertOne({ _id: revId(through), at: new Date() }, call.opts).catch((err: unknown) => {
        if (!isDuplicateKey(err)) throw err;
      });
      await this.collections.changes.deleteMany({ _id: { $lte: revId(through) } }, call.opts);
      // The newest reservation stays: the next revision is counted from it.
      const top = await this.reservations.topReservation(call);
      await this.collections.revisions.deleteMany({ _id: { $lte: revId(Math.min(through, top - 1)) } }, call.opts);
    }
    return this.reservations.trimmedThrough(call);
  }

  onCommit(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Stops the timers and forgets the listeners (the store is closing). */
  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.listeners.clear();
  }

  /** Resolves the reservation holding claim `key` and frees the claim if it was aborted. */
  async recoverClaim(key: string, call: Call): Promise<void> {
    const holder = await this.collections.revisions.findOne({ key }, { ...call.opts, projection: { _id: 1 } });
    if (!holder) return;
    const state = await this.resolve(revNum(holder._id), call);
    if (state === "aborted") await this.release(revNum(holder._id), call);
  }

  /**
   * The outcomes of revisions first, first + 1, ... up to the first one without an outcome, at
   * most `max`, and with `size`, up to the one that brings size.bytes (BSON) to
   * CHANGES_READ_BYTES; size.each gets each one's. Point lookups by `_id` (see revId), a growing number of them at a time.
   */
  private async outcomesFrom(
    first: number,
    max: number,
    call: Call,
    projection?: Record<string, 1>,
    size?: { bytes: number; each: number[] },
  ): Promise<Outcome[]> {
    const found: Outcome[] = [];
    let width = 1;
    while (found.length < max) {
      const n = Math.min(width, max - found.length);
      const next = first + found.length;
      const batch = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          this.collections.changes.findOne({ _id: revId(next + i) }, projection ? { ...call.opts, projection } : call.opts),
        ),
      );
      for (const o of batch) {
        if (!o) return found;
        found.push(o);
        if (size === undefined) continue;
        const bytes = BSON.calculateObjectSize(o);
        size.bytes += bytes;
        size.each.push(bytes);
        // The rest of this wave (at most 32 lookups) is dropped: read again by the next call.
        if (size.bytes >= CHANGES_READ_BYTES) return found;
      }
      width = Math.min(width * 2, 32);
    }
    return found;
  }

  /**
   * Makes sure reservation `revision` has an outcome when that can be known: "committed" when
   * its write is visible in the session, "aborted" when it is not and the reservation is older
   * than `leaseMs`; "pending" otherwise, "none" when there is no such reservation.
   */
  async resolve(revision: number, call: Call, leaseMs = CLAIM_LEASE_MS, outcomeChecked = false): Promise<Resolution> {
    if (!outcomeChecked) {
      const outcome = await this.collections.changes.findOne({ _id: revId(revision) }, { ...call.opts, projection: { aborted: 1 } });
      if (outcome) return outcome.aborted ? "aborted" : "committed";
    }
    const res = await this.collections.revisions.findOne({ _id: revId(revision) }, call.opts);
    if (!res) return "none";
    const session = await this.collections.sessions.findOne({ _id: res.id }, call.opts);
    const from = res.key === undefined ? undefined : Number(res.key.slice(res.key.lastIndexOf("@") + 1));
    // Nobody moves a session away from a revision before that revision has its outcome, so a
    // session at `revision` shows the change's result, and a deleted one is gone from `from`.
    if (res.kind === "deleted" ? !session || session.revision !== from : session?.revision === revision) {
      // An erasure keeps no copy (nor does a deletion whose session has been erased since).
      const doc = res.kind === "deleted" ? res.last : session!;
      return this.commit(revision, doc === undefined ? { ...res, erased: true } : res, doc, res.before ?? null, call);
    }
    if (Date.now() - res.at.getTime() < leaseMs) return "pending";
    return this.abort(revision, call, res);
  }

  /** Records that `revision` changed the session; returns the outcome that stands. */
  async commit(
    revision: number,
    res: Pick<Reservation, "id" | "kind" | "erased">,
    doc: StoredSession | undefined,
    before: FilterFields | null,
    call: Call,
  ): Promise<Resolution> {
    const outcome: Outcome =
      res.erased || doc === undefined
        ? { _id: revId(revision), at: new Date(), id: res.id, kind: "deleted", before, erased: true }
        : { _id: revId(revision), at: new Date(), id: res.id, kind: res.kind, doc: logDoc(doc, revision), before };
    const state = await this.settle(outcome, call);
    if (state === "committed") {
      this.committedHere.add(revision);
      if (this.committedHere.size > 10_000) this.committedHere.delete(this.committedHere.values().next().value!);
      this.notify();
    }
    return state;
  }

  /** Records that `revision` changed nothing and frees its claim. */
  async abort(revision: number, call: Call, res?: Reservation): Promise<Resolution> {
    const r = res ?? (await this.collections.revisions.findOne({ _id: revId(revision) }, call.opts));
    const state = await this.settle(
      { _id: revId(revision), at: new Date(), id: r?.id ?? "", kind: r?.kind ?? "updated", aborted: true },
      call,
    );
    if (state === "aborted") await this.release(revision, call);
    return state;
  }

  /** Inserts an outcome; the first one inserted stands. Failures leave it to resolve(). */
  private async settle(outcome: Outcome, call: Call): Promise<Resolution> {
    try {
      await this.collections.changes.insertOne(outcome, call.opts);
      return outcome.aborted ? "aborted" : "committed";
    } catch (err) {
      if (!isDuplicateKey(err)) {
        // The write itself is done; the outcome follows when someone resolves the revision.
        this.log?.warn("recording a change failed; it is resolved later", { revision: outcome._id, error: String(err) });
        return "pending";
      }
      const standing = await this.collections.changes.findOne({ _id: outcome._id }, { ...call.opts, projection: { aborted: 1 } });
      return standing?.aborted ? "aborted" : "committed";
    }
  }

  private async release(revision: number, call: Call): Promise<void> {
    await this.collections.revisions.updateOne({ _id: revId(revision) }, { $unset: { key: "" } }, call.opts);
  }

  /**
   * After a write whose result is unknown (deadline, lost connection): once the call's budget
   * is over, the server has finished or dropped the write (maxTimeMS), so the reservation can be
   * resolved without waiting for the lease. Best effort; the lease covers the rest.
   */
  settleLater(revision: number, call: Call): void {
    const t = setTimeout(
      () => {
        this.timers.delete(t);
        if (this.calls.closed) return;
        this.calls
          .run({}, (c) => this.resolve(revision, c, 0))
          .catch((err: unknown) => {
            this.log?.warn("resolving an interrupted write failed; the lease resolves it", { revision, error: String(err) });
          });
      },
      Math.max(0, call.end - Date.now()) + 2_000,
    );
    t.unref();
    this.timers.add(t);
  }

  /** The end of the gap-free prefix of the log. */
  async head(call: Call): Promise<number> {
    let safe = Math.max(this.frontier, await this.reservations.trimmedThrough(call));
    for (;;) {
      const batch = await this.outcomesFrom(safe + 1, READ_BATCH, call, { _id: 1 });
      if (batch.length > 0) safe = revNum(batch[batch.length - 1]!._id);
      if (batch.length === READ_BATCH) continue;
      const state = await this.resolve(safe + 1, call, CLAIM_LEASE_MS, true);
      if (state === "pending" || state === "none") break;
    }
    this.frontier = Math.max(this.frontier, safe);
    return safe;
  }

  notify(): void {
    for (const listener of this.listeners) {
      try {
        listener();
      } catch (err) {
        this.log?.warn("an onCommit listener threw", { error: String(err) });
      }
    }
  }
}
