// Visit numbering (docs/lifecycle.md): one claim per number taken in `visits`, inserted once, so
// an insert decides which writer gets a number, also between processes. Numbers are taken like
// revisions: the first free one by `_id` lookups. A claim whose session write failed is kept,
// marked void (so the numbers stay contiguous for the search) and skipped by previous_session_id.
// The documents: docs/mongodb.md.

import { MongoBulkWriteError, type Collection } from "mongodb";

import type { Call } from "./call";
import { isDuplicateKey } from "./errors";
import { firstFreeAfter } from "./reservations";

/** How far back previous_session_id looks past void claims. */
const MAX_VOID_SKIP = 20;
const MAX_VISIT_HINTS = 10_000;

/** A visit number taken: its claim's `_id`, the number, the previous visit's session. */
export interface VisitTaken {
  claim: string;
  index: number;
  previous: string | null;
}

/** A visit claim: inserting it is what assigns the number. */
export interface VisitClaim {
  /** visitId(profile_id, index) */
  _id: string;
  profile_id: string;
  index: number;
  session_id: string;
  at: Date;
  void?: true;
}

/**
 * A visit claim's `_id`: the profile id, "|", the number in 10 digits. The part after the last
 * "|" is always the number, so two (profile, number) pairs never share an `_id`.
 */
export function visitId(profileId: string, index: number): string {
  return `${profileId}|${String(index).padStart(10, "0")}`;
}

/** Takes visit numbers; remembers the last one this process took per profile. */
export class VisitNumbers {
  /** Per profile, the last visit number this process took (a start for the next search; LRU). */
  private readonly visitHints = new Map<string, { index: number; sessionId: string }>();

  constructor(private readonly visits: Collection<VisitClaim>) {}

  /**
   * Takes the next visit number of `profileId` for `sessionId`: the first number without a
   * claim, by `_id` lookups; a duplicate means another writer took it first.
   */
  async claimVisit(profileId: string, sessionId: string, call: Call): Promise<VisitTaken> {
    const claimed = async (n: number) =>
      (await this.visits.findOne({ _id: visitId(profileId, n) }, { ...call.opts, projection: { _id: 1 } })) !== null;
    // The last number this process took for the profile: numbers are contiguous, so it is a
    // valid start, and usually the next one is free (one insert, no lookups). A profile with
    // many visits costs a few lookups, not 2·log2(n).
    const hint = this.visitHints.get(profileId);
    let index = hint ? hint.index + 1 : await firstFreeAfter(0, claimed);
    for (;;) {
      try {
        await this.visits.insertOne(
          { _id: visitId(profileId, index), profile_id: profileId, index, session_id: sessionId, at: new Date() },
          call.opts,
        );
        break;
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
        index = await firstFreeAfter(index, claimed);
      }
    }
    this.rememberVisit(profileId, index, sessionId);
    // The previous visit: known when this process took the number before (and kept it).
    if (hint && hint.index === index - 1) return { claim: visitId(profileId, index), index, previous: hint.sessionId };
    let previous: string | null = null;
    for (let n = index - 1; n >= 1 && n >= index - MAX_VOID_SKIP; n--) {
      const before = await this.visits.findOne({ _id: visitId(profileId, n) }, call.opts);
      if (before && !before.void) {
        previous = before.session_id;
        break;
      }
    }
    return { claim: visitId(profileId, index), index, previous };
  }

  /**
   * Takes consecutive visit numbers of `profileId` for `sessionIds`, in order: one ordered
   * insertMany from the number after this process's last one; whatever another process took
   * first is taken one at a time (claimVisit).
   */
  async claimVisits(profileId: string, sessionIds: string[], call: Call): Promise<VisitTaken[]> {
    const hint = this.visitHints.get(profileId);
    if (!hint || sessionIds.length === 1) {
      const taken: VisitTaken[] = [];
      for (const id of sessionIds) taken.push(await this.claimVisit(profileId, id, call));
      return taken;
    }
    const first = hint.index + 1;
    const claims = sessionIds.map((id, i) => ({
      _id: visitId(profileId, first + i),
      profile_id: profileId,
      index: first + i,
      session_id: id,
      at: new Date(),
    }));
    let inserted = claims.length;
    try {
      await this.visits.insertMany(claims, { ...call.opts, ordered: true });
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError) || err.code !== 11000) throw err;
      inserted = err.result.insertedCount; // ordered: the claims before the duplicate
    }
    const taken: VisitTaken[] = claims.slice(0, inserted).map((c, i) => ({
      claim: c._id,
      index: c.index,
      previous: i === 0 ? hint.sessionId : claims[i - 1]!.session_id,
    }));
    if (inserted > 0) this.rememberVisit(profileId, claims[inserted - 1]!.index, claims[inserted - 1]!.session_id);
    for (const id of sessionIds.slice(inserted)) taken.push(await this.claimVisit(profileId, id, call));
    return taken;
  }

  private rememberVisit(profileId: string, index: number, sessionId: string): void {
    this.visitHints.delete(profileId);
    this.visitHints.set(profileId, { index, sessionId });
    if (this.visitHints.size > MAX_VISIT_HINTS) this.visitHints.delete(this.visitHints.keys().next().value!);
  }

  /** The profile's claims are being removed (erase.ts): its next number is searched again. */
  forget(profileId: string): void {
    this.visitHints.delete(profileId);
  }

  async voidVisit(claim: string, call: Call): Promise<void> {
    // A void number is no one's previous visit: forget it as this process's last one.
    for (const [profileId, hint] of this.visitHints) if (visitId(profileId, hint.index) === claim) this.visitHints.delete(profileId);
    await this.visits.updateOne({ _id: claim }, { $set: { void: true } }, call.opts);
  }
}
