// The change feed's buffer of recent changes, shared by every watcher of the process: the changes
// with revision in (start, head], at most `size` of them, in revision order. A watcher whose
// cursor is older than the buffer reads the store instead.

import type { ChangeRecord } from "../store";
import { forgetErasedProfile, scrubErasedIds } from "./erased";

export class ChangeBuffer {
  /** The buffer holds the changes with revision > start. */
  private start = 0;
  private changes: ChangeRecord[] = [];

  constructor(private readonly size: number) {}

  /** Empties the buffer, which now starts at `revision` (the feed's head). */
  reset(revision: number): void {
    this.start = revision;
    this.changes = [];
  }

  /** Appends changes read after the last ones (erasures scrub the older copies), dropping the oldest over `size`. */
  append(changes: readonly ChangeRecord[]): void {
    this.changes.push(...changes);
    scrubErasedIds(this.changes, changes);
    const excess = this.changes.length - this.size;
    if (excess > 0) {
      this.start = this.changes[excess - 1].revision;
      this.changes.splice(0, excess);
    }
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
