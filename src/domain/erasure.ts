// EraseProfile: forgets a person. Deletes every session of the profile in bounded batches
// (store.eraseSessions), then removes the profile's remaining traces (store.eraseTraces): see
// "Erasure" in src/domain/store.ts for what each step does, and docs/watch.md ("Erasure") for
// what watchers see.
//
// Order and why:
// 1. Batches of sessions until a batch comes back short. Each batch is one bounded store write,
//    so a profile with 100k sessions never makes one giant transaction, and a crash loses at
//    most the batch under way (it either committed or not): a retry starts over from what is left.
// 2. Live watchers of this process read the erased changes with the profile id (so a watch
//    filtered by the profile sees its sessions go): the erasure waits, bounded, until the
//    change feed has read them. Then the feed's in-memory buffer forgets the profile id too.
// 3. The traces, in bounded steps. A session of the profile created meanwhile stops them: back
//    to 1, at most MAX_ROUNDS times (then ErasureContendedError: a client still creating
//    sessions of the person must stop first).

import { ErasureContendedError } from "./errors";
import { emptySessionDoc, type SessionDoc } from "./session";
import type { CallOptions, SessionStore } from "./store";
import { checkId, fail } from "./validate";

export interface ErasureOptions {
  /** Sessions per eraseSessions call, and traces per eraseTraces call (ERASE_BATCH_SIZE). */
  batchSize: number;
  /** How long to wait for this process's change feed to read the erased changes (step 2). */
  feedWaitMs: number;
}

export const DEFAULT_ERASURE_OPTIONS: ErasureOptions = { batchSize: 200, feedWaitMs: 2_000 };

/** Rounds of sessions-then-traces before giving up on a profile that keeps getting sessions. */
const MAX_ROUNDS = 5;

/** What the erasure needs of this process's live watchers (the ChangeFeed implements it). */
export interface ErasureWatchers {
  /**
   * Resolves once this process's live watchers have the changes up to `revision` to read (the
   * feed has read that far), at once when nobody watches, at the latest after `timeoutMs`.
   */
  caughtUp(revision: number, timeoutMs: number, signal?: AbortSignal): Promise<void>;
  /** Forgets the profile id in erased changes held in memory: they become id-only tombstones. */
  forgetProfile(profileId: string): void;
}

/**
 * The document of an erased change: the id, and the profile id while its erasure is under way
 * (null afterwards); every other field at its empty value, metadata.time at the epoch.
 */
export function erasedDoc(id: string, profileId: string | null, revision = 0): SessionDoc {
  const doc = emptySessionDoc(id, new Date(0));
  doc.metadata.status = "";
  doc.profile = profileId === null ? null : { id: profileId, primary_id: null, metadata: {} };
  doc.revision = revision;
  return doc;
}

export class Erasure {
  private readonly options: ErasureOptions;

  constructor(
    private readonly store: SessionStore,
    private readonly watchers: ErasureWatchers | undefined,
    options: Partial<ErasureOptions> = {},
  ) {
    this.options = { ...DEFAULT_ERASURE_OPTIONS, ...options };
  }

  /** Erases the profile (see the header); returns how many sessions this call erased. */
  async erase(profileId: string, options: CallOptions = {}): Promise<{ erased: number }> {
    fail(checkId("profile_id", profileId, true));
    const limit = Math.max(1, this.options.batchSize);
    let erased = 0;
    for (let round = 1; round <= MAX_ROUNDS; round++) {
      let last = 0;
      for (;;) {
        const step = await this.store.eraseSessions(profileId, limit, options);
        erased += step.erased;
        last = Math.max(last, step.revision);
        if (!step.more) break;
      }
      if (last > 0 && this.watchers) await this.watchers.caughtUp(last, this.options.feedWaitMs, options.signal);
      for (;;) {
        const traces = await this.store.eraseTraces(profileId, limit, options);
        if (traces.done) {
          this.watchers?.forgetProfile(profileId);
          return { erased };
        }
        if (traces.sessionsLeft) break;
      }
    }
    throw new ErasureContendedError(profileId, erased);
  }
}
