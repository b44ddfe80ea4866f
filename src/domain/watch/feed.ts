// The change feed: one per process, shared by every watcher of the process.
//
// The feed reads the store's change log (store.readChanges) from its head onwards, when the
// store says this process committed something (onCommit) and on a short poll for the changes
// of other processes, and keeps the most recent changes in a bounded buffer shared by all
// watchers. Watchers read that buffer at their own pace (stream.ts) and park on the feed when
// they have caught up. Open watchers are limited (maxWatchers), and the engines end a stream
// whose client stops reading (stallTimeoutMs, see CallContext.stall).
//
// Fan-out: a commit wakes only the watchers it can concern, so its cost follows the watchers it
// concerns, not every open watcher. Every open watcher is indexed for its whole life by the most
// selective field of its filter (its ids, else its profile id; filters with neither are checked
// one by one), and each new change is matched against the watchers found under its id and under
// its profile id after and before the change, so that enter, leave and delete are seen too. A
// parked watcher that no change concerned is not woken; when it wakes for another reason (its
// heartbeat) it moves its cursor to the feed's head without reading, because the feed has looked
// at every change in between on its behalf. So its progress heartbeat is still a safe resume
// point. Each watcher has one heartbeat timer (re-armed with refresh()) and one abort listener
// for its whole life: a wait costs one promise.

import { ChangesTrimmedError, ResourceExhaustedError } from "../errors";
import type { Logger } from "../../log";
import { CHANGES_READ_BYTES, type ChangeRecord, type SessionStore } from "../store";
import type { ErasureWatchers } from "../erasure";
import { ChangeBuffer } from "./buffer";
import { HeadWaiters } from "./erased";
import { classify, compile, type Matcher, type WatchFilter } from "./filter";

/** Changes per read of the change log or of the feed's buffer. */
export const READ_BATCH = 256;
/** The delay suggested (RetryInfo) to a watch refused because MAX_WATCHERS are open. */
export const WATCHERS_RETRY_MS = 5_000;

export interface FeedOptions {
  /** How often to look for changes committed by other processes. */
  pollIntervalMs: number;
  /** How many recent changes the shared buffer keeps. */
  bufferSize: number;
  /** How many bytes of documents the shared buffer keeps at most (see ChangeBuffer). */
  bufferBytes: number;
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
  bufferBytes: 64 * 1024 * 1024,
  maxWatchers: 10_000,
  stallTimeoutMs: 30_000,
};

/**
 * An open watcher as its stream sees it, from openWatcher to closeWatcher: what it reads, and
 * what the feed tells it after a wait. The feed's bookkeeping stays inside this module.
 */
export interface Watcher {
  /** The watcher's filter, compiled. */
  readonly match: Matcher;
  /** The heartbeat interval has passed with nothing sent. */
  readonly heartbeatDue: boolean;
  /**
   * Set when a wait ends: the feed's head at that moment if no change published during the
   * wait concerned the watcher (its cursor may move there without reading), else 0.
   */
  readonly cleanUpTo: number;
  /** A message went out: the heartbeat interval starts again. */
  sent(): void;
}

/** A Watcher with the state the feed keeps for it; only this module sees these fields. */
class FeedWatcher implements Watcher {
  /**
   * A change published since the watcher last parked may concern it, so it must read from its
   * cursor. Cleared when it parks; while it is not parked nothing else depends on it.
   */
  dirty = false;
  heartbeatDue = false;
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

  sent(): void {
    this.heartbeatDue = false;
    this.timer?.refresh();
  }
}

/** The FeedWatcher behind a Watcher: openWatcher hands out nothing else. */
function own(w: Watcher): FeedWatcher {
  if (w instanceof FeedWatcher) return w;
  throw new TypeError("not a watcher opened by a ChangeFeed");
}

/** The per-process reader of the change log, shared by every watcher of the process. */
export class ChangeFeed implements ErasureWatchers {
  /** Every change with revision <= head has been read into the buffer (or before it). */
  private head = 0;
  private readonly buffer: ChangeBuffer;
  private started: Promise<void> | undefined;
  private pumping = false;
  private again = false;
  private closed = false;
  private failing = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  /** Open watchers, for leak checks and metrics. */
  watchers = 0;
  private resync: Promise<void> | undefined;
  private readonly headWaiters = new HeadWaiters();

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
  ) {
    this.buffer = new ChangeBuffer(options.bufferSize, options.bufferBytes);
  }

  /** Starts reading; resolves once the feed knows its head (retrying while the store is down). */
  start(): Promise<void> {
    this.started ??= (async () => {
      this.unsubscribe = this.store.onCommit(() => this.kick());
      for (let delay = 100; !this.closed; delay = Math.min(delay * 2, 5000)) {
        try {
          this.head = await this.store.headRevision();
          this.buffer.reset(this.head);
          break;
        } catch (err) {
          this.log.warn("change feed cannot read the head revision, retrying", { error: String(err), retry_ms: delay });
          await new Promise((r) => setTimeout(r, delay).unref());
        }
      }
      this.pollTimer = setInterval(() => this.kick(), this.options.pollIntervalMs);
      this.pollTimer.unref();
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
  async openWatcher(filter: WatchFilter, heartbeatMs: number, signal: AbortSignal): Promise<Watcher> {
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

  /**
   * Ends `watcher`'s wait as its heartbeat timer would (heartbeatDue set, or at its next park):
   * for owners that need a wake-up at a time of their own (the stats minute series).
   */
  tick(watcher: Watcher): void {
    const w = own(watcher);
    w.heartbeatDue = true;
    this.wake(w);
  }

  closeWatcher(watcher: Watcher): void {
    const w = own(watcher);
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

  /** What the shared buffer of recent changes holds: changes, and bytes by its measure. */
  get buffered(): { changes: number; bytes: number } {
    return { changes: this.buffer.length, bytes: this.buffer.bytes };
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
        const bytes = this.buffer.append(batch.changes);
        if (batch.changes.length > 0) this.publish(batch.changes);
        const advanced = batch.safeRevision > this.head;
        if (advanced) this.head = batch.safeRevision;
        this.buffer.advanced(this.head);
        // Once per batch, after the head has moved: a woken watcher reads up to the new head.
        if (advanced) this.wakeMarked();
        if (advanced) this.headWaiters.reached(this.head);
        if (this.failing) {
          this.failing = false;
          this.log.info("change feed reading again", { head: this.head });
        }
        // A short read is the end of the log, unless the store cut it at CHANGES_READ_BYTES (its
        // measure is close to the buffer's: read on when the batch weighed half of it or more).
        if (batch.changes.length < READ_BATCH && bytes < CHANGES_READ_BYTES / 2) return;
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
    this.head = head;
    this.buffer.reset(head);
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
  park(watcher: Watcher, cursor: number, anyAdvance: boolean): Promise<void> | undefined {
    const w = own(watcher);
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

  /**
   * The buffered changes with revision > after (at most `limit`), or null when `after` is older
   * than the buffer (read the store instead).
   */
  read(after: number, limit: number): ChangeRecord[] | null {
    return this.buffer.read(after, limit);
  }

  caughtUp(revision: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.watchers === 0 || this.head >= revision || this.closed) return Promise.resolve();
    const waiting = this.headWaiters.wait(revision, timeoutMs, signal);
    this.kick();
    return waiting;
  }

  forgetProfile(profileId: string): void {
    this.buffer.forgetProfile(profileId);
  }

  close(): void {
    this.headWaiters.closeAll();
    this.closed = true;
    clearInterval(this.pollTimer);
    this.unsubscribe?.();
    for (const w of this.all) this.wake(w);
  }
}
