// MergeProfiles: moves each session of the source profiles, oldest first, to the target profile
// in one atomic write per session: profile.id, merged_from_profile_ids (+ the source) and the
// target's next visit number. A retry lists the sources again, so it moves only what is left.
// A merge is the server's bookkeeping, not the visitor's activity: metadata.time.update stays.

import { NotFoundError, RevisionConflictError } from "./errors";
import { MAX_WRITE_ATTEMPTS } from "./lifecycle";
import { checkSessionSize, DEFAULT_LIMITS } from "./limits";
import type { SessionDoc } from "./session";
import { checkId, fail } from "./validate";
import type { CallOptions, ListCursor, SessionPatch, SessionStore } from "./store";

export interface MergeOptions {
  /** Largest stored document (MAX_SESSION_BYTES): a merge that would pass it is refused. */
  maxSessionBytes: number;
}

export const DEFAULT_MERGE_OPTIONS: MergeOptions = { maxSessionBytes: DEFAULT_LIMITS.maxSessionBytes };

const MAX_MERGE_SOURCES = 100;
/** Sessions read per store query while listing a source profile. */
const MERGE_PAGE = 1000;

export interface MergeInput {
  sourceProfileIds: string[];
  targetProfileId: string;
}

export class Merges {
  private readonly options: MergeOptions;

  constructor(
    private readonly store: SessionStore,
    options: Partial<MergeOptions> = {},
  ) {
    this.options = { ...DEFAULT_MERGE_OPTIONS, ...options };
  }

  /** Moves the sessions of the source profiles to the target: see MergeProfiles in the contract. */
  async merge(input: MergeInput, options: CallOptions = {}): Promise<{ moved: string[] }> {
    const target = input.targetProfileId;
    const violations = checkId("target_profile_id", target, true);
    if (input.sourceProfileIds.length === 0)
      violations.push({ field: "source_profile_ids", description: "must name at least one profile" });
    if (input.sourceProfileIds.length > MAX_MERGE_SOURCES) {
      violations.push({ field: "source_profile_ids", description: `must name at most ${MAX_MERGE_SOURCES} profiles` });
    }
    input.sourceProfileIds.forEach((id, i) => {
      const field = `source_profile_ids[${i}]`;
      violations.push(...checkId(field, id, true));
      if (id === target && target !== "") violations.push({ field, description: "must not be the target profile" });
    });
    fail(violations);

    // Oldest first, so the moved sessions are numbered in the order they happened.
    const todo: SessionDoc[] = [];
    for (const source of new Set(input.sourceProfileIds)) todo.push(...(await this.sessionsOf(source, options)));
    todo.sort((a, b) => a.metadata.time.insert.getTime() - b.metadata.time.insert.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

    const moved: string[] = [];
    for (const doc of todo) if (await this.move(doc, target, options)) moved.push(doc.id);
    return { moved };
  }

  private async sessionsOf(profileId: string, options: CallOptions): Promise<SessionDoc[]> {
    const all: SessionDoc[] = [];
    let after: ListCursor | undefined;
    for (;;) {
      const page = await this.store.list({ profileId, after, limit: MERGE_PAGE }, options);
      all.push(...page);
      const last = page[page.length - 1];
      if (page.length < MERGE_PAGE || !last) return all;
      after = { insert: last.metadata.time.insert, id: last.id };
    }
  }

  /** Moves one session unless it left its source profile meanwhile (deleted, merged elsewhere). */
  private async move(doc: SessionDoc, target: string, options: CallOptions): Promise<boolean> {
    const source = doc.profile?.id;
    let current = doc;
    for (let attempt = 1; ; attempt++) {
      const patch: SessionPatch = {
        set: [
          { path: ["profile", "id"], value: target },
          { path: ["merged_from_profile_ids"], value: [...current.merged_from_profile_ids, source] },
        ],
        unset: [],
      };
      // Each merge adds a profile id to the session: it must stay readable after it.
      checkSessionSize(
        {
          ...current,
          profile: current.profile && { ...current.profile, id: target },
          merged_from_profile_ids: [...current.merged_from_profile_ids, source ?? ""],
        },
        this.options.maxSessionBytes,
        "target_profile_id",
      );
      try {
        await this.store.update(doc.id, patch, { ...options, expectedRevision: current.revision, numberVisitIn: target });
        return true;
      } catch (err) {
        if (err instanceof NotFoundError) return false;
        if (!(err instanceof RevisionConflictError) || attempt >= MAX_WRITE_ATTEMPTS) throw err;
      }
      try {
        current = await this.store.get(doc.id, options);
      } catch (err) {
        if (err instanceof NotFoundError) return false;
        throw err;
      }
      if (current.profile?.id !== source) return false;
    }
  }
}
