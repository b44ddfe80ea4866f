// Watch filters: which changes concern a watcher, and what each change means to it (created,
// updated, entered, left, deleted). The feed matches every new change against the watchers it
// may concern (feed.ts) and each stream classifies the changes it reads (stream.ts), so the
// hot path works on a Matcher, a filter compiled once per watcher.

import type { SessionDoc } from "../session";
import type { ChangeRecord, FilterFields } from "../store";

export interface WatchFilter {
  profileId: string;
  ids: string[];
  status: string;
  channel: string;
  /** traffic.channel_group ("" = any). */
  channelGroup: string;
}

export type ChangeEventKind = "initial" | "created" | "updated" | "deleted" | "entered" | "left";

/** A filter prepared for matching many changes: ids as a set, so a long id list costs no scan. */
export interface Matcher {
  ids: ReadonlySet<string> | null;
  profileId: string;
  status: string;
  channel: string;
  channelGroup: string;
}

export function compile(filter: WatchFilter): Matcher {
  return {
    ids: filter.ids.length > 0 ? new Set(filter.ids) : null,
    profileId: filter.profileId,
    status: filter.status,
    channel: filter.channel,
    channelGroup: filter.channelGroup,
  };
}

export function fieldsOf(doc: SessionDoc): FilterFields {
  return {
    profileId: doc.profile?.id ?? null,
    status: doc.metadata.status,
    channel: doc.metadata.channel,
    channelGroup: doc.traffic?.channel_group ?? null,
  };
}

export function matchesFilter(filter: WatchFilter, id: string, fields: FilterFields): boolean {
  return (
    (filter.ids.length === 0 || filter.ids.includes(id)) &&
    (filter.profileId === "" || fields.profileId === filter.profileId) &&
    (filter.status === "" || fields.status === filter.status) &&
    (filter.channel === "" || fields.channel === filter.channel) &&
    (filter.channelGroup === "" || fields.channelGroup === filter.channelGroup)
  );
}

// Field by field rather than through a FilterFields object: this runs for every change and
// every watcher it may concern, and allocates nothing.
function matches(m: Matcher, id: string, profileId: string | null, status: string, channel: string, channelGroup: string | null): boolean {
  return (
    (m.ids === null || m.ids.has(id)) &&
    (m.profileId === "" || profileId === m.profileId) &&
    (m.status === "" || status === m.status) &&
    (m.channel === "" || channel === m.channel) &&
    (m.channelGroup === "" || channelGroup === m.channelGroup)
  );
}

/** What `change` means to a watcher with the compiled filter `m`, or null when it does not concern it. */
export function classify(m: Matcher, change: ChangeRecord): ChangeEventKind | null {
  // An erased session's tombstone: only its id is certain. With the filter fields before the
  // erasure (read live) it concerns the watchers those matched; without them (read back from the
  // history) every watcher whose ids do not exclude it: the client drops what it had of the id.
  if (change.erased === true) {
    if (m.ids !== null && !m.ids.has(change.id)) return null;
    const e = change.before;
    return e === null || matches(m, change.id, e.profileId, e.status, e.channel, e.channelGroup) ? "deleted" : null;
  }
  const doc = change.doc;
  const now = matches(m, change.id, doc.profile?.id ?? null, doc.metadata.status, doc.metadata.channel, doc.traffic?.channel_group ?? null);
  if (change.kind === "created") return now ? "created" : null;
  // Unknown before-state (a repaired log entry): assume it matched, so a leave is never missed.
  const b = change.before;
  const before = b === null ? true : matches(m, change.id, b.profileId, b.status, b.channel, b.channelGroup);
  if (change.kind === "deleted") return before ? "deleted" : null;
  if (now) return before ? "updated" : "entered";
  return before ? "left" : null;
}

/** What a change means to a watcher with `filter`, or null when it does not concern it. */
export function classifyChange(filter: WatchFilter, change: ChangeRecord): ChangeEventKind | null {
  return classify(compile(filter), change);
}
