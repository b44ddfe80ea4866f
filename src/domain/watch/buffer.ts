// The change feed's buffer of recent changes, shared by every watcher of the process: the changes
// with revision in (start, head], at most `size` of them and at most `maxBytes` of documents, in
// revision order. A watcher whose cursor is older than the buffer reads the store instead.
//
// The byte bound matters because sessions may be large: 4,096 changes of sessions at the
// 256 KB MAX_SESSION_BYTES would be 1 GB of heap. A change counts its document's size as the
// store read it (ChangeRecord.bytes: stored JSON or BSON), else the length of its JSON, plus
// CHANGE_OVERHEAD_BYTES; the heap a parsed document takes is a small multiple of that.

import type { ChangeRecord } from "../store";
import { forgetErasedProfile, scrubErasedIds } from "./erased";

/** What a buffered change costs besides its document's JSON (the record, its before-fields). */
export const CHANGE_OVERHEAD_BYTES = 256;

/** What one change counts for against the buffer's byte bound. Linear in the document's size. */
export function changeBytes(change: ChangeRecord): number {
  return (change.bytes ?? JSON.stringify(change.doc).length) + CHANGE_OVERHEAD_BYTES;
}

export class ChangeBuffer {
  /** The buffer holds the changes with revision > start. */
  private start = 0;
  private changes: ChangeRecord[] = [];
  /** changeBytes of each change, as appended (a later tombstone keeps its first figure). */
  private sizes: number[] = [];
  private total = 0;

  constructor(
    private readonly size: number,
    private readonly maxBytes = Number.POSITIVE_INFINITY,
  ) {}

  /** What the buffered changes count for against the byte bound. */
  get bytes(): number {
    return this.total;
  }

  /** Buffered changes. */
  get length(): number {
    return this.changes.length;
  }

  /** Empties the buffer, which now starts at `revision` (the feed's head). */
  reset(revision: number): void {
    this.start = revision;
    this.changes = [];
    this.sizes = [];
    this.total = 0;
  }

  /**
   * Appends changes read after the last ones (erasures scrub the older copies), dropping the
   * oldest over `size` changes or `maxBytes` (all of them, when the newest alone is over it).
   * Answers what the appended changes count for.
   */
  append(changes: readonly ChangeRecord[]): number {
    let appended = 0;
    for (const change of changes) {
      const bytes = changeBytes(change);
      this.changes.push(change);
      this.sizes.push(bytes);
      appended += bytes;
    }
    this.total += appended;
    scrubErasedIds(this.changes, changes);
    let drop = Math.max(0, this.changes.length - this.size);
    let freed = 0;
    for (let i = 0; i < drop; i++) freed += this.sizes[i];
    while (drop < this.changes.length && this.total - freed > this.maxBytes) freed += this.sizes[drop++];
    if (drop > 0) {
      this.start = this.changes[drop - 1].revision;
      this.changes.splice(0, drop);
      this.sizes.splice(0, drop);
      this.total -= freed;
    }
    return appended;
  }

  /** The head moved to `head`: an empty buffer starts there. */
  advanced(head: number): void {
    if (this.changes.length === 0) this.start = head;
  }

  /** The changes with revision > after (at most `limit`), or null when `after` is older than the buffer. */
  read(after: number, limit: number): ChangeRecord[] | null {
    if (after < this.start) return null;
    // Binary search for the first change after `after`.
    let lo = 0;
    let hi = this.changes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.changes[mid].revision <= after) lo = mid + 1;
      else hi = mid;
    }
    return this.changes.slice(lo, lo + limit);
  }

  /** Drops an erased profile's id from the buffered erasure tombstones. */
  forgetProfile(profileId: string): void {
    forgetErasedProfile(this.changes, profileId);
  }
}
