// Handing out revisions: a revision is taken by inserting its reservation `{_id: revId(n)}` into
// `revisions`; the unique `_id` decides between processes, and an update or delete also takes the
// claim key "<id>@<revision it moves the session away from>" (a unique index), so exactly one
// writer moves a session on from a revision. Only inserts decide because FerretDB's updates are
// not atomic. The protocol as a whole: docs/watch.md ("MongoDB and FerretDB"), docs/mongodb.md.

import { MongoBulkWriteError } from "mongodb";

import type { ChangeKind, FilterFields } from "../../domain/store";
import { untilAborted, type Call } from "./call";
import { revId, revNum } from "./changes";
import type { StoredSession } from "./codec";
import type { MongoCollections } from "./collections";
import { isDuplicateKey } from "./errors";

/** A revision handed out. */
export interface Reservation {
  /** revId(revision) */
  _id: string;
  at: Date;
  id: string;
  kind: ChangeKind;
  /** Update and delete: "<id>@<revision moved away from>", the claim. */
  key?: string;
  /** Update and delete: the filter fields before the change. */
  before?: FilterFields;
  /** Delete: the session before the deletion (not for an erasure, nor once erased: erase.ts). */
  last?: StoredSession;
  /** The deletion is an erasure (EraseProfile): its outcome is a tombstone. */
  erased?: true;
}

/** This process's side of the reservations: numbering and the queue of inserts. */
export class Reservations {
  /** The last revision this process reserved (0: none yet; the next search starts from the log). */
  lastReserved = 0;
  /** The queue of this process's reservation inserts (see serially). */
  private reserving: Promise<unknown> = Promise.resolve();

  constructor(private readonly collections: MongoCollections) {}

  /** The largest reservation (0 for none). A scan on FerretDB: used by trimming only. */
  async topReservation(call: Call): Promise<number> {
    const top = await this.collections.revisions
      .find({}, { ...call.opts, projection: { _id: 1 } })
      .sort({ _id: -1 })
      .limit(1)
      .next();
    return top ? revNum(top._id) : 0;
  }

  /** The revision the change log has been trimmed up to (0: never trimmed). */
  async trimmedThrough(call: Call): Promise<number> {
    const top = await this.collections.trims
      .find({}, { ...call.opts, projection: { _id: 1 } })
      .sort({ _id: -1 })
      .limit(1)
      .next();
    return top ? revNum(top._id) : 0;
  }

  /**
   * Hands out the next revision by inserting its reservation (an insert decides, also on
   * FerretDB). With a claim key, returns null when another reservation holds that key.
   */
  async reserve(call: Call, fields: Omit<Reservation, "_id" | "at">): Promise<number | null> {
    return this.serially(call, () => this.insertReservation(call, fields));
  }

  /**
   * One process's reservations are inserted one at a time: numbers are contiguous, so
   * concurrent inserts in one process would only collide on the same next number.
   */
  serially<T>(call: Call, task: () => Promise<T>): Promise<T> {
    const previous = this.reserving;
    // Waiting for the turn ends with the call's budget; the next in line still waits for both.
    const result = untilAborted(previous, call.signal).then(task);
    this.reserving = Promise.allSettled([previous, result]);
    return result;
  }

  /**
   * Reservations without claim keys (creates) for several writes: one ordered insertMany of the
   * next numbers; those another process took first are taken one at a time.
   */
  async insertReservations(fields: Array<Omit<Reservation, "_id" | "at" | "key">>, call: Call): Promise<number[]> {
    if (fields.length === 1) return [(await this.insertReservation(call, fields[0]!))!];
    const first = this.lastReserved > 0 ? this.lastReserved + 1 : await this.firstFree(await this.trimmedThrough(call), call);
    const docs: Reservation[] = fields.map((f, i) => ({ _id: revId(first + i), at: new Date(), ...f }));
    let inserted = docs.length;
    try {
      await this.collections.revisions.insertMany(docs, { ...call.opts, ordered: true });
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError) || err.code !== 11000) throw err;
      inserted = err.result.insertedCount;
    }
    const numbers = docs.slice(0, inserted).map((_, i) => first + i);
    if (inserted > 0) this.lastReserved = first + inserted - 1;
    for (const f of fields.slice(inserted)) numbers.push((await this.insertReservation(call, f))!);
    return numbers;
  }

  /** Inserts the reservation with the next free number; null when its claim key is taken. */
  private async insertReservation(call: Call, fields: Omit<Reservation, "_id" | "at">): Promise<number | null> {
    let candidate = this.lastReserved > 0 ? this.lastReserved + 1 : await this.firstFree(await this.trimmedThrough(call), call);
    for (;;) {
      try {
        await this.collections.revisions.insertOne({ _id: revId(candidate), at: new Date(), ...fields }, call.opts);
        this.lastReserved = candidate;
        return candidate;
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
      }
      // FerretDB does not say which key collided: the number (taken by another process) or the claim.
      if (fields.key !== undefined && !(await this.reserved(candidate, call))) return null;
      candidate = await this.firstFree(candidate, call);
    }
  }

  private async reserved(revision: number, call: Call): Promise<boolean> {
    return (await this.collections.revisions.findOne({ _id: revId(revision) }, { ...call.opts, projection: { _id: 1 } })) !== null;
  }

  /**
   * The first revision after `taken` without a reservation. Reservations after the trimmed
   * prefix are contiguous, so an exponential then binary search by `_id` lookups finds it
   * (no sort: that would read the whole collection on FerretDB).
   */
  async firstFree(taken: number, call: Call): Promise<number> {
    return firstFreeAfter(taken, (n) => this.reserved(n, call));
  }
}

/**
 * The first number after `taken` for which `exists` is false, for numbers taken contiguously
 * from 1 (every number up to the first free one exists): an exponential, then a binary search.
 */
export async function firstFreeAfter(taken: number, exists: (n: number) => Promise<boolean>): Promise<number> {
  let low = taken; // taken (or 0)
  let step = 1;
  while (await exists(low + step)) {
    low += step;
    step *= 2;
  }
  let high = low + step; // free
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    if (await exists(mid)) low = mid;
    else high = mid;
  }
  return high;
}
