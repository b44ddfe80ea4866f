// Erased sessions in the change feed's in-memory buffer (feed.ts). The store turns an erased
// session's history into tombstones (src/domain/store.ts, "Erasure"), but the feed may hold
// copies read before that: a watcher resuming from the buffer must not get them back. So when
// the feed reads an erased change, every older buffered change of that id becomes a tombstone
// (on every replica, as each reads the log), and once the erasure is over this process's buffer
// forgets the profile id of the erased changes too (forgetProfile; other replicas keep it in
// their buffers until those roll over, never any other data).

import { erasedDoc } from "../erasure";
import type { ChangeRecord } from "../store";

/** The id-only tombstone of a change: what the history keeps of an erased session's change. */
export function tombstoneOf(c: ChangeRecord): ChangeRecord {
  return { revision: c.revision, kind: "deleted", id: c.id, doc: erasedDoc(c.id, null, c.revision), before: null, erased: true };
}

/**
 * After `added` was appended to `buffer`: the changes of `buffer` older than an erased change
 * of `added` with the same id become tombstones (in place). One pass, only when `added` has an
 * erased change.
 */
export function scrubErasedIds(buffer: ChangeRecord[], added: readonly ChangeRecord[]): void {
  let erasedAt: Map<string, number> | undefined;
  for (const c of added) if (c.erased === true) (erasedAt ??= new Map()).set(c.id, c.revision);
  if (erasedAt === undefined) return;
  for (let i = 0; i < buffer.length; i++) {
    const c = buffer[i];
    const at = erasedAt.get(c.id);
    if (at !== undefined && c.revision < at && (c.erased !== true || c.before !== null)) buffer[i] = tombstoneOf(c);
  }
}

/** The erased changes of `profileId` in `buffer` become id-only tombstones (in place). */
export function forgetErasedProfile(buffer: ChangeRecord[], profileId: string): void {
  for (let i = 0; i < buffer.length; i++) {
    const c = buffer[i];
    if (c.erased === true && (c.doc.profile?.id === profileId || c.before?.profileId === profileId)) buffer[i] = tombstoneOf(c);
  }
}

/** Erasures waiting for the feed's head to reach a revision (ChangeFeed.caughtUp). */
export class HeadWaiters {
  private readonly waiting = new Set<{ revision: number; done: () => void }>();

  /** Resolves when reached() passes `revision`, after `timeoutMs`, on abort or on closeAll(). */
  wait(revision: number, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      const waiter = {
        revision,
        done: (): void => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", waiter.done);
          this.waiting.delete(waiter);
          resolve();
        },
      };
      const timer = setTimeout(waiter.done, timeoutMs);
      signal?.addEventListener("abort", waiter.done, { once: true });
      this.waiting.add(waiter);
    });
  }

  /** The head is at `head` now. */
  reached(head: number): void {
    for (const w of this.waiting) if (head >= w.revision) w.done();
  }

  closeAll(): void {
    for (const w of this.waiting) w.done();
  }
}
