// WatchSessions: one change feed per process, many watchers reading it at their own pace.
//
// The feed reads the store's change log (store.readChanges) from its head onwards, when the
// store says this process committed something (onCommit) and on a short poll for the changes
// of other processes, and keeps the most recent changes in a bounded buffer shared by all
// watchers. A watcher is a cursor: it reads the buffer after its cursor, or the store's change
// log when it has fallen behind the buffer (slow consumers and resumes are caught up from the
// store, never dropped), and waits for the feed when it has caught up. Memory per watcher is
// its cursor and the message being written: nothing is queued per watcher (a send_initial
// listing holds one page of INITIAL_PAGE sessions). Open watchers are limited (maxWatchers), and
// the engines end a stream whose client stops reading (stallTimeoutMs, see CallContext.stall).
//
// Fan-out: a commit wakes only the watchers it can concern. Every open watcher is indexed for
// its whole life by the most selective field of its filter (its ids, else its profile id;
// filters with neither are checked one by one), and each new change is matched against the
// watchers found under its id and under its profile id after and before the change, so that
// enter, leave and delete are seen too. A parked watcher that no change concerned is not woken;
// when it wakes for another reason (its heartbeat) it moves its cursor to the feed's head
// without reading, because the feed has looked at every change in between on its behalf. So
// its progress heartbeat is still a safe resume point. Each watcher has one heartbeat timer
// (re-armed with refresh()) and one abort listener for its whole life: a wait costs one promise.
// Before this, every commit woke every watcher, each with a new timer, listener and closures;
// with 1000 watchers that took a core on the writing replica (docs/performance.md).
//
// Guarantees (docs/watch.md): revisions strictly increase on a stream, no change is sent twice,
// none is skipped (the store's log is gap-free, see SessionStore.readChanges), and every
// progress heartbeat is a safe resume point. See docs/watch.md for the seam of send_initial.

import { ChangesTrimmedError, InvalidArgumentError, ResourceExhaustedError, ShuttingDownError, type FieldViolation } from "./errors";
import type { Logger } from "../log";
import type { SessionDoc } from "./session";
import type { CallOptions, ChangeRecord, FilterFields, SessionStore } from "./store";
import { checkId, checkRevision } from "./validate";

export interface WatchFilter {
  profileId: string;
  ids: string[];
  status: string;
  channel: string;
}

export type ChangeEventKind = "initial" | "created" | "updated" | "deleted" | "entered" | "left";

export type WatchEvent =
  | { type: "change"; kind: ChangeEventKind; session: SessionDoc; revision: number }
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
const READ_BATCH = 256;
/**
 * Sessions per store read of a send_initial listing. The listing is pulled one page at a time
 * as the stream is written, so a watcher whose client does not read holds at most this page
 * (about 40 KB of documents) besides what the transport holds. It was 500 (about 1-2 MB per
 * stalled watcher: 2,000 of them took gigabytes, issue 10).
 */
export const INITIAL_PAGE = 20;
/** The delay suggested (RetryInfo) to a watch refused because MAX_WATCHERS are open. */
export const WATCHERS_RETRY_MS = 5_000;

export interface FeedOptions {
  /** How often to look for changes committed by other processes. */
  pollIntervalMs: number;
  /** How many recent changes the shared buffer keeps. */
  bufferSize: number;
  /** How long the change log keeps changes (resume window). */
  retentionMs: number;
  /** How often to trim the change log. */
  trimIntervalMs: number;
  /** Open watchers allowed in this process; one more is refused with RESOURCE_EXHAUSTED. */
  maxWatchers: number;
  /**
   * A watch stream whose writes stay blocked (its client does not read) this long ends with
   * RESOURCE_EXHAUSTED (WATCHER_TOO_SLOW); the client resumes from its last revision.
   */
  stallTimeoutMs: number;
}

export const DEFAULT_FEED_OPTIONS: FeedOptions = {
  pollIntervalMs: 100,
  bufferSize: 4096,
  retentionMs: 24 * 3600_000,
  trimIntervalMs: 60_000,
  maxWatchers: 10_000,
  stallTimeoutMs: 30_000,
};

/** A filter prepared for matching many changes: ids as a set, so a long id list costs no scan. */
interface Matcher {
  ids: ReadonlySet<string> | null;
  profileId: string;
  status: string;
  channel: string;
}

function compile(filter: WatchFilter): Matcher {
  return { ids: filter.ids.length > 0 ? new Set(filter.ids) : null, profileId: filter.profileId, status: filter.status, channel: filter.channel };
}

/**
 * One open watch stream as the feed sees it, from openWatcher to closeWatcher. The feed and
 * watchSessions (this module) use its fields; nothing else should.
 */
export class FeedWatcher {
  /**
   * A change published since the watcher last parked may concern it, so it must read from its
   * cursor. Cleared when it parks; while it is not parked nothing else depends on it.
   */
  dirty = false;
  /** The heartbeat interval has passed with nothing sent. */
  heartbeatDue = false;
  /**
   * Set when a wait ends: the feed's head at that moment if no change published during the
   * wait concerned the watcher (its cursor may move there without reading), else 0.
   */
  cleanUpTo = 0;
  /** Parked until any advance of the head (the send_initial seam), not only a concerning change. */
  anyAdvance = false;
  /** Ends the current wait; undefined while the watcher is not parked. */
  resolve: (() => void) | undefined;
  timer: NodeJS.Timeout | undefined;
  onAbort: (() => void) | undefined;

  constructor(
    readonly match: Matcher,
    readonly signal: AbortSignal,
  ) {}

  /** A message went out: the heartbeat interval starts again. */
  sent(): void {
    this.heartbeatDue = false;
    this.timer?.refresh();
  }
}

/** The per-process reader of the change log, shared by every watcher of the process. */
export class ChangeFeed {
  /** Every change with revision <= head has been read into the buffer (or before it). */
  private head = 0;
  /** The buffer holds the changes with revision in (bufferStart, head]. */
  private bufferStart = 0;
  private buffer: ChangeRecord[] = [];
  private started: Promise<void> | undefined;
  private pumping = false;
  private again = false;
  private closed = false;
  private failing = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private trimTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  /** Open watchers, for leak checks and metrics. */
  watchers = 0;
  private resync: Promise<void> | undefined;

  // The index of open watchers (see the header). A watcher is in exactly one of byId (under
  // each of its ids), byProfile or unindexed, and always in `all`.
  private readonly all = new Set<FeedWatcher>();
  private readonly byId = new Map<string, Set<FeedWatcher>>();
  private readonly byProfile = new Map<string, Set<FeedWatcher>>();
  /** Filters naming neither ids nor a profile: few distinct values, so they are checked one by one. */
  private readonly unindexed = new Set<FeedWatcher>();
  /** Parked watchers that wake on any advance of the head. */
  private readonly anyWaiters = new Set<FeedWatcher>();
  private parked = 0;
  /** Parked watchers a published batch concerns, woken once the head has moved; reused. */
  private readonly toWake: FeedWatcher[] = [];

  constructor(
    private readonly store: SessionStore,
    private readonly log: Logger,
    readonly options: FeedOptions = DEFAULT_FEED_OPTIONS,
  ) {}

  /** Starts reading; resolves once the feed knows its head (retrying while the store is down). */
  start(): Promise<void> {
    this.started ??= (async () => {
      this.unsubscribe = this.store.onCommit(() => this.kick());
      for (let delay = 100; !this.closed; delay = Math.min(delay * 2, 5000)) {
        try {
          this.head = this.bufferStart = await this.store.headRevision();
          break;
        } catch (err) {
          this.log.warn("change feed cannot read the head revision, retrying", { error: String(err), retry_ms: delay });
          await new Promise((r) => setTimeout(r, delay).unref());
        }
      }
      this.pollTimer = setInterval(() => this.kick(), this.options.pollIntervalMs);
      this.pollTimer.unref();
      this.trimTimer = setInterval(() => void this.trim(), this.options.trimIntervalMs);
      this.trimTimer.unref();
    })();
    return this.started;
  }

  /**
   * Registers a watcher. The feed reads nothing while nobody watches, so the first watcher
   * after an idle period moves the head to the store's head (the old buffer is of no use).
   */
  private async addWatcher(): Promise<void> {
    await this.start();
    // Checked and counted in one turn, so concurrent opens cannot both take the last place.
    if (this.watchers >= this.options.maxWatchers) {
      throw new ResourceExhaustedError(
        "TOO_MANY_WATCHERS",
        `this server has ${this.options.maxWatchers} open watch streams (MAX_WATCHERS); retry later or on another replica`,
        WATCHERS_RETRY_MS,
        { max_watchers: String(this.options.maxWatchers) },
      );
    }
    if (this.watchers++ === 0) {
      this.resync = (async () => {
        try {
          const head = await this.store.headRevision();
          if (head > this.head) this.skipTo(head);
        } catch {
          // The poll catches up from the old head once the store answers again.
        }
      })();
    }
    await this.resync;
  }

  /**
   * Opens a watcher with `filter` for the life of one stream: its heartbeat timer (interval
   * `heartbeatMs`, started now) and its abort listener are made once, here, and both only wake
   * it. Every openWatcher needs a closeWatcher.
   */
  async openWatcher(filter: WatchFilter, heartbeatMs: number, signal: AbortSignal): Promise<FeedWatcher> {
    await this.addWatcher();
    const w = new FeedWatcher(compile(filter), signal);
    w.timer = setTimeout(() => {
      w.heartbeatDue = true;
      this.wake(w);
    }, heartbeatMs);
    // The stream's socket keeps the process alive, not its heartbeat.
    w.timer.unref();
    w.onAbort = () => this.wake(w);
    signal.addEventListener("abort", w.onAbort, { once: true });
    this.index(w, true);
    return w;
  }

  closeWatcher(w: FeedWatcher): void {
    if (!this.all.has(w)) return;
    clearTimeout(w.timer);
    if (w.onAbort) w.signal.removeEventListener("abort", w.onAbort);
    this.wake(w);
    this.index(w, false);
    this.watchers--;
  }

  private index(w: FeedWatcher, add: boolean): void {
    const m = w.match;
    const inMap = (map: Map<string, Set<FeedWatcher>>, key: string): void => {
      let set = map.get(key);
      if (add) {
        if (set === undefined) map.set(key, (set = new Set()));
        set.add(w);
      } else if (set !== undefined) {
        set.delete(w);
        if (set.size === 0) map.delete(key);
      }
    };
    if (m.ids !== null) for (const id of m.ids) inMap(this.byId, id);
    else if (m.profileId !== "") inMap(this.byProfile, m.profileId);
    else if (add) this.unindexed.add(w);
    else this.unindexed.delete(w);
    if (add) this.all.add(w);
    else this.all.delete(w);
  }

  get headRevision(): number {
    return this.head;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Number of parked watchers, for leak checks. */
  get waiting(): number {
    return this.parked;
  }

  /** Reads new changes now (coalescing concurrent requests); idle while nobody watches. */
  kick(): void {
    if (this.closed || this.started === undefined || this.watchers === 0) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    void this.pump().finally(() => {
      this.pumping = false;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        const from = this.head;
        const batch = await this.store.readChanges(from, READ_BATCH);
        if (this.closed) return;
        // The head moved without this read (skipTo: a resync or trimmed history): read again
        // from there rather than append changes the buffer no longer lines up with.
        if (this.head !== from) continue;
        if (batch.changes.length > 0) {
          this.buffer.push(...batch.changes);
          const excess = this.buffer.length - this.options.bufferSize;
          if (excess > 0) {
            this.bufferStart = this.buffer[excess - 1].revision;
            this.buffer.splice(0, excess);
          }
          this.publish(batch.changes);
        }
        const advanced = batch.safeRevision > this.head;
        if (advanced) this.head = batch.safeRevision;
        if (this.buffer.length === 0) this.bufferStart = this.head;
        // Once per batch, after the head has moved: a woken watcher reads up to the new head.
        if (advanced) this.wakeMarked();
        if (this.failing) {
          this.failing = false;
          this.log.info("change feed reading again", { head: this.head });
        }
        if (batch.changes.length < READ_BATCH) return;
      }
    } catch (err) {
      if (err instanceof ChangesTrimmedError) {
        // This process stalled past the retention window: the buffer restarts at the log's start.
        // (Only forwards: a read from before a resync may fail like this after the head moved on.)
        if (err.oldestResumable > this.head) {
          this.log.error("change feed fell behind the retained history", { head: this.head, oldest: err.oldestResumable });
          this.skipTo(err.oldestResumable);
        }
        return;
      }
      if (!this.failing) this.log.warn("change feed cannot read the change log", { error: String(err) });
      this.failing = true;
    }
  }

  /**
   * Moves the head without reading the changes in between. No watcher may then move its
   * cursor past them unread (they may concern it), so every one is marked and woken: each
   * reads from its own cursor (from the store, which answers OUT_OF_RANGE if they are gone).
   */
  private skipTo(head: number): void {
    this.head = this.bufferStart = head;
    this.buffer = [];
    for (const w of this.all) this.mark(w);
    this.wakeMarked();
  }

  /** Marks the watchers the new changes can concern; wakeMarked wakes the parked ones. */
  private publish(changes: readonly ChangeRecord[]): void {
    for (const c of changes) {
      if (c.before === null && c.kind !== "created") {
        // The log does not know the before-state (a repaired entry), and every filter treats
        // it as matching (classifyChange): it concerns every watcher.
        for (const w of this.all) this.mark(w);
        continue;
      }
      const ids = this.byId.get(c.id);
      if (ids !== undefined) this.markAmong(ids, c);
      const profile = c.doc.profile?.id;
      if (profile) {
        const set = this.byProfile.get(profile);
        if (set !== undefined) this.markAmong(set, c);
      }
      const before = c.before?.profileId;
      if (before && before !== profile) {
        const set = this.byProfile.get(before);
        if (set !== undefined) this.markAmong(set, c);
      }
      if (this.unindexed.size > 0) this.markAmong(this.unindexed, c);
    }
  }

  private markAmong(watchers: Set<FeedWatcher>, c: ChangeRecord): void {
    for (const w of watchers) if (!w.dirty && classify(w.match, c) !== null) this.mark(w);
  }

  private mark(w: FeedWatcher): void {
    if (w.dirty) return;
    w.dirty = true;
    if (w.resolve !== undefined) this.toWake.push(w);
  }

  private wakeMarked(): void {
    for (const w of this.toWake) this.wake(w);
    this.toWake.length = 0;
    for (const w of this.anyWaiters) this.wake(w);
  }

  /** Ends `w`'s wait, if it is parked. */
  private wake(w: FeedWatcher): void {
    const resolve = w.resolve;
    if (resolve === undefined) return;
    w.resolve = undefined;
    this.parked--;
    if (w.anyAdvance) {
      w.anyAdvance = false;
      this.anyWaiters.delete(w);
    }
    // Not dirty: the feed looked at every change up to its head for this watcher, none concerned it.
    w.cleanUpTo = w.dirty ? 0 : this.head;
    resolve();
  }

  /**
   * Parks `w`, whose cursor is `cursor`, until a published change may concern it (or, with
   * `anyAdvance`, until the head moves at all), its heartbeat is due, its signal aborts or the
   * feed closes. Returns undefined when it should not wait: the head is already past the
   * cursor, or one of those has already happened. After the wait, `w.cleanUpTo` says how far
   * the cursor may move without reading.
   */
  park(w: FeedWatcher, cursor: number, anyAdvance: boolean): Promise<void> | undefined {
    if (this.head > cursor || this.closed || w.signal.aborted || w.resolve !== undefined) return undefined;
    // The seam (anyAdvance) sends no heartbeats, so a due one must not keep it from waiting.
    if (w.heartbeatDue && !anyAdvance) return undefined;
    w.dirty = false;
    w.cleanUpTo = 0;
    this.parked++;
    if (anyAdvance) {
      w.anyAdvance = true;
      this.anyWaiters.add(w);
    }
    return new Promise((resolve) => {
      w.resolve = resolve;
    });
  }

  private async trim(): Promise<void> {
    try {
      await this.store.trimChanges(new Date(Date.now() - this.options.retentionMs));
    } catch (err) {
      this.log.warn("change log trim failed", { error: String(err) });
    }
  }

  /**
   * The buffered changes with revision > after (at most `limit`), or null when `after` is older
   * than the buffer (read the store instead).
   */
  read(after: number, limit: number): ChangeRecord[] | null {
    if (after < this.bufferStart) return null;
    // Binary search for the first change after `after`.
    let lo = 0;
    let hi = this.buffer.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.buffer[mid].revision <= after) lo = mid + 1;
      else hi = mid;
    }
    return this.buffer.slice(lo, lo + limit);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.pollTimer);
    clearInterval(this.trimTimer);
    this.unsubscribe?.();
    for (const w of this.all) this.wake(w);
  }
}

function fieldsOf(doc: SessionDoc): FilterFields {
  return { profileId: doc.profile?.id ?? null, status: doc.metadata.status, channel: doc.metadata.channel };
}

export function matchesFilter(filter: WatchFilter, id: string, fields: FilterFields): boolean {
  return (
    (filter.ids.length === 0 || filter.ids.includes(id)) &&
    (filter.profileId === "" || fields.profileId === filter.profileId) &&
    (filter.status === "" || fields.status === filter.status) &&
    (filter.channel === "" || fields.channel === filter.channel)
  );
}

// Field by field rather than through a FilterFields object: this runs for every change and
// every watcher it may concern, and allocates nothing.
function matches(m: Matcher, id: string, profileId: string | null, status: string, channel: string): boolean {
  return (
    (m.ids === null || m.ids.has(id)) &&
    (m.profileId === "" || profileId === m.profileId) &&
    (m.status === "" || status === m.status) &&
    (m.channel === "" || channel === m.channel)
  );
}

function classify(m: Matcher, change: ChangeRecord): ChangeEventKind | null {
  const doc = change.doc;
  const now = matches(m, change.id, doc.profile?.id ?? null, doc.metadata.status, doc.metadata.channel);
  if (change.kind === "created") return now ? "created" : null;
  // Unknown before-state (a repaired log entry): assume it matched, so a leave is never missed.
  const b = change.before;
  const before = b === null ? true : matches(m, change.id, b.profileId, b.status, b.channel);
  if (change.kind === "deleted") return before ? "deleted" : null;
  if (now) return before ? "updated" : "entered";
  return before ? "left" : null;
}

/** What a change means to a watcher with `filter`, or null when it does not concern it. */
export function classifyChange(filter: WatchFilter, change: ChangeRecord): ChangeEventKind | null {
  return classify(compile(filter), change);
}

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
export async function* watchSessions(feed: ChangeFeed, store: SessionStore, req: WatchRequest, signal: AbortSignal): AsyncGenerator<WatchEvent> {
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
          yield { type: "change", kind, session: change.doc, revision: change.revision };
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
        yield { type: "change", kind, session: change.doc, revision: change.revision };
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
async function readAfter(feed: ChangeFeed, store: SessionStore, cursor: number, opts: CallOptions): Promise<{ changes: ChangeRecord[]; upTo: number }> {
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
      after,
      limit: INITIAL_PAGE,
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
