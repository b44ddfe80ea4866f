// WatchSessions: one watcher's stream over the process's change feed (feed.ts).
//
// A watcher is a cursor: it reads the feed's buffer after its cursor, or the store's change log
// when it has fallen behind the buffer (slow consumers and resumes are caught up from the store,
// never dropped), and parks on the feed when it has caught up. Memory per watcher is its cursor
// and the message being written: nothing is queued per watcher (a send_initial listing holds one
// page of INITIAL_PAGE sessions).
//
// Guarantees (docs/watch.md): revisions strictly increase on a stream, no change is sent twice,
// none is skipped (the store's log is gap-free, see SessionStore.readChanges), and every
// progress heartbeat is a safe resume point. See docs/watch.md for the seam of send_initial.

import { InvalidArgumentError, ShuttingDownError, type FieldViolation } from "../errors";
import type { SessionDoc } from "../session";
import type { CallOptions, ChangeRecord, SessionStore } from "../store";
import { checkId, checkRevision } from "../validate";
import { READ_BATCH, type ChangeFeed } from "./feed";
import { classify, fieldsOf, matchesFilter, type ChangeEventKind, type WatchFilter } from "./filter";

export type WatchEvent =
  | { type: "change"; kind: ChangeEventKind; session: SessionDoc; revision: number; erased?: boolean }
  | { type: "initial_end"; revision: number }
  | { type: "progress"; revision: number };

export interface WatchRequest {
  filter: WatchFilter;
  afterRevision?: number;
  sendInitial: boolean;
  /** Heartbeat interval in ms (already clamped). */
  heartbeatMs: number;
}

export const DEFAULT_HEARTBEAT_MS = 15_000;
export const MIN_HEARTBEAT_MS = 1_000;
export const MAX_HEARTBEAT_MS = 300_000;
const MAX_IDS = 1000;
/**
 * Sessions per store read of a send_initial listing, and the bytes of documents after which a
 * read stops early. The listing is pulled one page at a time as the stream is written, so a
 * watcher whose client does not read holds at most this page (about 40 KB of documents with
 * sessions of 2 KB, at most 1 MiB plus one session with large ones) besides the transport's.
 */
export const INITIAL_PAGE = 20;
export const INITIAL_PAGE_BYTES = 1024 * 1024;

export function validateWatchRequest(req: WatchRequest): void {
  const violations: FieldViolation[] = [];
  violations.push(...checkRevision("after_revision", req.afterRevision));
  if (req.filter.ids.length > MAX_IDS) violations.push({ field: "filter.ids", description: `at most ${MAX_IDS} ids` });
  else req.filter.ids.forEach((id, i) => violations.push(...checkId(`filter.ids[${i}]`, id, true)));
  if (violations.length > 0) throw new InvalidArgumentError(violations);
}

/** Clamps a client's heartbeat hint (0 = default). */
export function heartbeatInterval(ms: number): number {
  if (ms <= 0) return DEFAULT_HEARTBEAT_MS;
  return Math.min(MAX_HEARTBEAT_MS, Math.max(MIN_HEARTBEAT_MS, ms));
}

/**
 * One watcher's stream. Ends (returns) when `signal` aborts; throws ChangesTrimmedError for a
 * cursor older than the retention window, StoreUnavailableError while the store cannot be read,
 * ShuttingDownError when the feed closes under it.
 */
export async function* watchSessions(
  feed: ChangeFeed,
  store: SessionStore,
  req: WatchRequest,
  signal: AbortSignal,
): AsyncGenerator<WatchEvent> {
  validateWatchRequest(req);
  const w = await feed.openWatcher(req.filter, req.heartbeatMs, signal);
  try {
    const opts: CallOptions = {};
    let cursor: number;
    if (req.afterRevision !== undefined) {
      cursor = req.afterRevision;
      // Check the window now (the same answer on every replica, whatever its buffer holds).
      await store.readChanges(cursor, 1, opts);
    } else if (req.sendInitial) {
      // Snapshot (docs/watch.md, "Snapshot seam"): H = the feed's head, then the listing, then
      // S = the store's snapshot revision read after it. Every write the listing saw is at or
      // below S, and every change in (H, S] is in the log: the listing plus the changes of
      // (H, S] that are newer than what it showed is the state at S. Deletes and leaves of
      // sessions the listing did not show are not sent (the client never had them).
      cursor = feed.headRevision;
      // Id -> revision of every session sent so far in the initial state (about 100 bytes
      // each, until the end marker; a stalled watcher has sent only what its window took).
      const sent = new Map<string, number>();
      let snapshotRevision = cursor;
      for await (const doc of listMatching(store, req.filter, signal)) {
        sent.set(doc.id, doc.revision);
        snapshotRevision = Math.max(snapshotRevision, doc.revision);
        yield { type: "change", kind: "initial", session: doc, revision: doc.revision };
      }
      if (signal.aborted) return;
      snapshotRevision = Math.max(snapshotRevision, await store.snapshotRevision(opts));
      // Changes in (H, S]: send those newer than what the listing showed.
      while (cursor < snapshotRevision && !signal.aborted) {
        if (feed.isClosed) throw new ShuttingDownError();
        const { changes, upTo } = await readAfter(feed, store, cursor, opts);
        for (const change of changes) {
          if (change.revision > snapshotRevision) break;
          cursor = change.revision;
          if ((sent.get(change.id) ?? -1) >= change.revision) continue;
          const kind = classify(w.match, change);
          // A session the listing never showed cannot be deleted or leave, for this watcher.
          if (kind === null || ((kind === "deleted" || kind === "left") && !sent.has(change.id))) continue;
          sent.set(change.id, change.revision);
          yield { type: "change", kind, session: change.doc, revision: change.revision, erased: change.erased === true };
        }
        if (upTo > cursor) cursor = Math.min(upTo, snapshotRevision);
        if (cursor >= snapshotRevision || changes.length > 0) continue;
        // S is above this replica's head (another process's write, or one still under way):
        // read now rather than at the next poll, and wait for the feed to get there.
        feed.kick();
        const parked = feed.park(w, feed.headRevision, true);
        if (parked !== undefined) await parked;
      }
      if (signal.aborted) return;
      cursor = snapshotRevision;
      yield { type: "initial_end", revision: snapshotRevision };
    } else {
      cursor = feed.headRevision;
    }

    w.sent();
    for (;;) {
      if (signal.aborted) return;
      if (feed.isClosed) throw new ShuttingDownError();
      const { changes, upTo } = await readAfter(feed, store, cursor, opts);
      for (const change of changes) {
        cursor = change.revision;
        const kind = classify(w.match, change);
        if (kind === null) continue;
        w.sent();
        yield { type: "change", kind, session: change.doc, revision: change.revision, erased: change.erased === true };
        if (signal.aborted) return;
      }
      if (upTo > cursor) {
        cursor = upTo;
      } else if (changes.length === 0 && cursor < feed.headRevision) {
        // The store vouched for nothing past the cursor although the feed's head is beyond it
        // (not expected: its safe revision does not go back). Ask again shortly, never skip.
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      // More arrived while this watcher was reading or writing.
      if (cursor < feed.headRevision) continue;
      // Caught up: everything up to the feed's head has been looked at, so this is a safe point.
      if (w.heartbeatDue) {
        w.sent();
        yield { type: "progress", revision: cursor };
        continue;
      }
      const parked = feed.park(w, cursor, false);
      if (parked === undefined) continue;
      await parked;
      // Nothing published during the wait concerned this watcher: skip it unread.
      if (w.cleanUpTo > cursor) cursor = w.cleanUpTo;
    }
  } finally {
    feed.closeWatcher(w);
  }
}

/**
 * Changes after `cursor` (from the shared buffer, or from the store when behind it), and the
 * revision up to which they are complete: no change in (cursor, upTo] is left out.
 */
async function readAfter(
  feed: ChangeFeed,
  store: SessionStore,
  cursor: number,
  opts: CallOptions,
): Promise<{ changes: ChangeRecord[]; upTo: number }> {
  const buffered = feed.read(cursor, READ_BATCH);
  if (buffered !== null) {
    const upTo = buffered.length === READ_BATCH ? buffered[READ_BATCH - 1].revision : feed.headRevision;
    return { changes: buffered, upTo };
  }
  const batch = await store.readChanges(cursor, READ_BATCH, opts);
  // Never read past the feed's head from the store: the buffer is where live changes come from.
  const limit = Math.max(feed.headRevision, cursor);
  const changes = batch.changes.filter((c) => c.revision <= limit);
  return { changes, upTo: Math.min(batch.safeRevision, limit) };
}

/** The sessions matching `filter`, newest first (ids: in the given order). */
async function* listMatching(store: SessionStore, filter: WatchFilter, signal: AbortSignal): AsyncGenerator<SessionDoc> {
  if (filter.ids.length > 0) {
    for (const id of new Set(filter.ids)) {
      if (signal.aborted) return;
      const doc = await store.get(id).catch((err: unknown) => {
        if ((err as { reason?: string }).reason === "SESSION_NOT_FOUND") return null;
        throw err;
      });
      if (doc && matchesFilter(filter, doc.id, fieldsOf(doc))) yield doc;
    }
    return;
  }
  let after: { insert: Date; id: string } | undefined;
  for (;;) {
    if (signal.aborted) return;
    const page = await store.list({
      profileId: filter.profileId || undefined,
      status: filter.status || undefined,
      channel: filter.channel || undefined,
      channelGroup: filter.channelGroup || undefined,
      after,
      limit: INITIAL_PAGE,
      maxBytes: INITIAL_PAGE_BYTES,
    });
    if (page.length === 0) return;
    const last = page[page.length - 1];
    after = { insert: last.metadata.time.insert, id: last.id };
    // Handed out one at a time and dropped from the page: a stalled stream keeps what is left.
    for (let i = 0; i < page.length; i++) {
      const doc = page[i];
      (page as Array<SessionDoc | undefined>)[i] = undefined;
      yield doc;
    }
    // No early end on a short page: the store may also bound a page by bytes.
  }
}
