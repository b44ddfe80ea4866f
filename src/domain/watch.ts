// WatchSessions: one change feed per process, many watchers reading it at their own pace.
//
// The feed reads the store's change log (store.readChanges) from its head onwards, when the
// store says this process committed something (onCommit) and on a short poll for the changes
// of other processes, and keeps the most recent changes in a bounded buffer shared by all
// watchers. A watcher is a cursor: it reads the buffer after its cursor, or the store's change
// log when it has fallen behind the buffer (slow consumers and resumes are caught up from the
// store, never dropped), and waits for the feed when it has caught up. Memory per watcher is
// its cursor and the message being written: nothing is queued per watcher.
//
// Guarantees (docs/watch.md): revisions strictly increase on a stream, no change is sent twice,
// none is skipped (the store's log is gap-free, see SessionStore.readChanges), and every
// progress heartbeat is a safe resume point. See docs/watch.md for the seam of send_initial.

import { ChangesTrimmedError, InvalidArgumentError, type FieldViolation } from "./errors";
import type { Logger } from "../log";
import type { SessionDoc } from "./session";
import type { CallOptions, ChangeRecord, FilterFields, SessionStore } from "../store/port";
import { checkId } from "./validate";

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

export interface FeedOptions {
  /** How often to look for changes committed by other processes. */
  pollIntervalMs: number;
  /** How many recent changes the shared buffer keeps. */
  bufferSize: number;
  /** How long the change log keeps changes (resume window). */
  retentionMs: number;
  /** How often to trim the change log. */
  trimIntervalMs: number;
}

export const DEFAULT_FEED_OPTIONS: FeedOptions = {
  pollIntervalMs: 100,
  bufferSize: 4096,
  retentionMs: 24 * 3600_000,
  trimIntervalMs: 60_000,
};

/** The per-process reader of the change log, shared by every watcher of the process. */
export class ChangeFeed {
  /** Every change with revision <= head has been read into the buffer (or before it). */
  private head = 0;
  /** The buffer holds the changes with revision in (bufferStart, head]. */
  private bufferStart = 0;
  private buffer: ChangeRecord[] = [];
  private readonly waiters = new Set<() => void>();
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

  constructor(
    private readonly store: SessionStore,
    private readonly log: Logger,
    private readonly options: FeedOptions = DEFAULT_FEED_OPTIONS,
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
  async addWatcher(): Promise<void> {
    await this.start();
    if (this.watchers++ === 0) {
      this.resync = (async () => {
        try {
          const head = await this.store.headRevision();
          if (head > this.head) {
            this.head = this.bufferStart = head;
            this.buffer = [];
          }
        } catch {
          // The poll catches up from the old head once the store answers again.
        }
      })();
    }
    await this.resync;
  }

  removeWatcher(): void {
    this.watchers--;
  }

  get headRevision(): number {
    return this.head;
  }

  /** Number of pending waits, for leak checks. */
  get waiting(): number {
    return this.waiters.size;
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
        const batch = await this.store.readChanges(this.head, READ_BATCH);
        if (this.closed) return;
        if (batch.changes.length > 0) {
          this.buffer.push(...batch.changes);
          const excess = this.buffer.length - this.options.bufferSize;
          if (excess > 0) {
            this.bufferStart = this.buffer[excess - 1].revision;
            this.buffer.splice(0, excess);
          }
        }
        const advanced = batch.safeRevision > this.head;
        if (advanced) this.head = batch.safeRevision;
        if (this.buffer.length === 0) this.bufferStart = this.head;
        if (advanced) this.notify();
        if (this.failing) {
          this.failing = false;
          this.log.info("change feed reading again", { head: this.head });
        }
        if (batch.changes.length < READ_BATCH) return;
      }
    } catch (err) {
      if (err instanceof ChangesTrimmedError) {
        // This process stalled past the retention window: the buffer restarts at the log's start.
        this.log.error("change feed fell behind the retained history", { head: this.head, oldest: err.oldestResumable });
        this.head = this.bufferStart = err.oldestResumable;
        this.buffer = [];
        return;
      }
      if (!this.failing) this.log.warn("change feed cannot read the change log", { error: String(err) });
      this.failing = true;
    }
  }

  private async trim(): Promise<void> {
    try {
      await this.store.trimChanges(new Date(Date.now() - this.options.retentionMs));
    } catch (err) {
      this.log.warn("change log trim failed", { error: String(err) });
    }
  }

  private notify(): void {
    for (const wake of [...this.waiters]) wake();
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

  /** Resolves when the head passes `after`, after `timeoutMs`, or when `signal` aborts. */
  wait(after: number, timeoutMs: number, signal: AbortSignal): Promise<void> {
    if (this.head > after || signal.aborted || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.waiters.delete(wake);
        resolve();
      };
      const wake = (): void => {
        if (this.head > after || this.closed) done();
      };
      const timer = setTimeout(done, timeoutMs);
      signal.addEventListener("abort", done, { once: true });
      this.waiters.add(wake);
    });
  }

  close(): void {
    this.closed = true;
    clearInterval(this.pollTimer);
    clearInterval(this.trimTimer);
    this.unsubscribe?.();
    this.notify();
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

/** What a change means to a watcher with `filter`, or null when it does not concern it. */
export function classifyChange(filter: WatchFilter, change: ChangeRecord): ChangeEventKind | null {
  const now = matchesFilter(filter, change.id, fieldsOf(change.doc));
  if (change.kind === "created") return now ? "created" : null;
  // Unknown before-state (a repaired log entry): assume it matched, so a leave is never missed.
  const before = change.before === null ? true : matchesFilter(filter, change.id, change.before);
  if (change.kind === "deleted") return before ? "deleted" : null;
  if (now) return before || change.before === null ? "updated" : "entered";
  return before ? "left" : null;
}

export function validateWatchRequest(req: WatchRequest): void {
  const violations: FieldViolation[] = [];
  if (req.afterRevision !== undefined && req.afterRevision < 0) violations.push({ field: "after_revision", description: "must not be negative" });
  if (req.filter.ids.length > MAX_IDS) violations.push({ field: "filter.ids", description: `at most ${MAX_IDS} ids` });
  req.filter.ids.forEach((id, i) => violations.push(...checkId(`filter.ids[${i}]`, id, true)));
  if (violations.length > 0) throw new InvalidArgumentError(violations);
}

/** Clamps a client's heartbeat hint (0 = default). */
export function heartbeatInterval(ms: number): number {
  if (ms <= 0) return DEFAULT_HEARTBEAT_MS;
  return Math.min(MAX_HEARTBEAT_MS, Math.max(MIN_HEARTBEAT_MS, ms));
}

/**
 * One watcher's stream. Ends (returns) when `signal` aborts; throws ChangesTrimmedError for a
 * cursor older than the retention window, StoreUnavailableError while the store cannot be read.
 */
export async function* watchSessions(feed: ChangeFeed, store: SessionStore, req: WatchRequest, signal: AbortSignal): AsyncGenerator<WatchEvent> {
  validateWatchRequest(req);
  await feed.addWatcher();
  try {
    const opts: CallOptions = {};
    let cursor: number;
    let sent: Map<string, number> | undefined;
    if (req.afterRevision !== undefined) {
      cursor = req.afterRevision;
      // Check the window now (the same answer on every replica, whatever its buffer holds).
      await store.readChanges(cursor, 1, opts);
    } else if (req.sendInitial) {
      // Snapshot: the sessions as listed, then the changes made while listing, up to S.
      cursor = feed.headRevision;
      sent = new Map();
      let snapshotRevision = cursor;
      for await (const doc of listMatching(store, req.filter, signal)) {
        sent.set(doc.id, doc.revision);
        snapshotRevision = Math.max(snapshotRevision, doc.revision);
        yield { type: "change", kind: "initial", session: doc, revision: doc.revision };
      }
      // Changes in (head at start, S]: send those newer than what the listing showed.
      while (cursor < snapshotRevision && !signal.aborted) {
        const changes = await readAfter(feed, store, cursor, opts);
        if (changes.length === 0) {
          if (feed.headRevision >= snapshotRevision) break;
          await feed.wait(feed.headRevision, 1000, signal);
          continue;
        }
        for (const change of changes) {
          if (change.revision > snapshotRevision) break;
          cursor = change.revision;
          if ((sent.get(change.id) ?? -1) >= change.revision) continue;
          const kind = classifyChange(req.filter, change);
          // A session the listing never showed cannot be deleted or leave, for this watcher.
          if (kind === null || ((kind === "deleted" || kind === "left") && !sent.has(change.id))) continue;
          sent.set(change.id, change.revision);
          yield { type: "change", kind, session: change.doc, revision: change.revision };
        }
        if (changes[changes.length - 1].revision >= snapshotRevision) break;
      }
      sent = undefined;
      if (signal.aborted) return;
      cursor = snapshotRevision;
      yield { type: "initial_end", revision: snapshotRevision };
    } else {
      cursor = feed.headRevision;
    }

    let lastSent = Date.now();
    while (!signal.aborted) {
      const changes = await readAfter(feed, store, cursor, opts);
      if (changes.length > 0) {
        for (const change of changes) {
          cursor = change.revision;
          const kind = classifyChange(req.filter, change);
          if (kind === null) continue;
          lastSent = Date.now();
          yield { type: "change", kind, session: change.doc, revision: change.revision };
          if (signal.aborted) return;
        }
        continue;
      }
      // Caught up: everything up to the feed's head has been looked at.
      cursor = Math.max(cursor, feed.headRevision);
      const quietFor = Date.now() - lastSent;
      if (quietFor >= req.heartbeatMs) {
        lastSent = Date.now();
        yield { type: "progress", revision: cursor };
        continue;
      }
      await feed.wait(cursor, req.heartbeatMs - quietFor, signal);
    }
  } finally {
    feed.removeWatcher();
  }
}

/** Changes after `cursor`: from the shared buffer, or from the store when behind it. */
async function readAfter(feed: ChangeFeed, store: SessionStore, cursor: number, opts: CallOptions): Promise<ChangeRecord[]> {
  const buffered = feed.read(cursor, READ_BATCH);
  if (buffered !== null) return buffered;
  const batch = await store.readChanges(cursor, READ_BATCH, opts);
  // Never read past the feed's head from the store: the buffer is where live changes come from.
  return batch.changes.filter((c) => c.revision <= Math.max(feed.headRevision, cursor));
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
      limit: 500,
    });
    for (const doc of page) yield doc;
    if (page.length < 500) return;
    const last = page[page.length - 1];
    after = { insert: last.metadata.time.insert, id: last.id };
  }
}
