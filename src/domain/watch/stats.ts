// WatchSessionStats: live GetSessionStats figures, pushed (docs/watch.md, "WatchSessionStats").
//
// Subscribers whose requests are the same once normalized (filter, group_by, breakdowns in
// order, started_per_minute, since, online window, min interval) share one *computation*. A
// computation holds one watcher on the process's change feed with the stats filter, and
// recomputes the figures through the store's stats() (the port; the store maintains its
// counts, so a call does not scan the sessions):
// - when the feed shows a change that can move them (a change of a session matching the filter
//   before or after it), at most once per min_interval: a burst of changes costs one call;
// - on a tick while "online now" is above zero, since sessions leave the online window by the
//   passing of time alone: every max(min_interval, min(5 s, online_window / 4));
// - with started_per_minute, when the server clock's minute turns (a timer at the turn), since
//   the series then shifts by one minute: new figures even when no session changed.
// Breakdowns and the minute series are part of the figures: a change in any of them is a change.
// It keeps only the latest figures, never a queue: a subscriber sends the latest figures when
// they differ from what it sent last, so a slow client skips intermediate figures. Each
// subscriber also sends a heartbeat when its stream has been quiet for its heartbeat interval.

import { ResourceExhaustedError, ShuttingDownError } from "../errors";
import { DEFAULT_ONLINE_WINDOW_MS, type SessionStats, type Stats, type StatsInput } from "../stats";
import { MINUTE_MS } from "../store";
import { fail } from "../validate";
import { READ_BATCH, WATCHERS_RETRY_MS, type ChangeFeed, type Watcher } from "./feed";
import { classify } from "./filter";

export const DEFAULT_MIN_INTERVAL_MS = 1_000;
export const MIN_MIN_INTERVAL_MS = 100;
export const MAX_MIN_INTERVAL_MS = 60_000;
/** The longest time "online now" goes unchecked while it is above zero (see onlineTickMs). */
export const MAX_ONLINE_TICK_MS = 5_000;
export const DEFAULT_MAX_STATS_WATCHERS = 1_000;

export interface StatsWatchRequest extends StatsInput {
  /** Shortest time between two messages with figures, in ms; 0 = the default. */
  minIntervalMs: number;
  /** Heartbeat interval in ms (already clamped, see heartbeatInterval in stream.ts). */
  heartbeatMs: number;
}

export type StatsEvent = { type: "stats"; stats: Stats } | { type: "heartbeat"; checkedAt: Date; revision: number };

/** Throws InvalidArgumentError naming the field; returns the min interval to use. */
export function checkMinInterval(ms: number): number {
  if (ms === 0) return DEFAULT_MIN_INTERVAL_MS;
  if (ms < MIN_MIN_INTERVAL_MS || ms > MAX_MIN_INTERVAL_MS) {
    fail([{ field: "min_interval", description: `must be from ${MIN_MIN_INTERVAL_MS} ms to ${MAX_MIN_INTERVAL_MS / 1000} s` }]);
  }
  return ms;
}

/** How often "online now" is recomputed while it is above zero, with no change to prompt it. */
export function onlineTickMs(minIntervalMs: number, onlineWindowMs: number): number {
  const windowMs = onlineWindowMs === 0 ? DEFAULT_ONLINE_WINDOW_MS : onlineWindowMs;
  return Math.max(minIntervalMs, Math.min(MAX_ONLINE_TICK_MS, Math.floor(windowMs / 4)));
}

/** A wait of `ms` that ends early when `signal` aborts. */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** The figures as one comparable string. */
const figuresOf = (s: Stats): string =>
  JSON.stringify([
    s.total,
    s.online,
    s.groups.map((g) => [g.key, g.count]),
    s.breakdowns.map((b) => [b.field, b.groups.map((g) => [g.key, g.count])]),
    s.startedPerMinute.map((m) => [m.start.getTime(), m.count]),
  ]);

const minuteOf = (d: Date): number => Math.floor(d.getTime() / MINUTE_MS);

/** One subscriber (one stream): its wait, its heartbeat timer and its abort listener. */
class Subscriber {
  heartbeatDue = false;
  resolve: (() => void) | undefined;
  timer: NodeJS.Timeout | undefined;
  onAbort: (() => void) | undefined;

  constructor(
    readonly computation: Computation,
    readonly signal: AbortSignal,
  ) {}

  wake(): void {
    const resolve = this.resolve;
    this.resolve = undefined;
    resolve?.();
  }

  sent(): void {
    this.heartbeatDue = false;
    this.timer?.refresh();
  }
}

/** The figures of one normalized request, shared by its subscribers. */
class Computation {
  readonly subscribers = new Set<Subscriber>();
  readonly abort = new AbortController();
  /** The latest figures; undefined until the first computation ends. */
  stats: Stats | undefined;
  figures = "";
  /** The change-log revision the figures account for. */
  revision = 0;
  /** Set when the computation ended with an error: every subscriber ends with it. */
  error: unknown;
  /** How many store reads this computation made (tests, docs). */
  computations = 0;

  constructor(
    readonly key: string,
    readonly input: StatsInput,
    readonly minIntervalMs: number,
  ) {}

  notify(): void {
    for (const s of this.subscribers) s.wake();
  }
}

export interface StatsHubOptions {
  /** Open WatchSessionStats streams allowed in this process (MAX_STATS_WATCHERS). */
  maxSubscribers: number;
}

/** The computations of the process, by normalized request. */
export class StatsHub {
  private readonly computations = new Map<string, Computation>();
  /** Open subscribers (streams), for limits, leak checks and metrics. */
  subscribers = 0;

  constructor(
    private readonly feed: ChangeFeed,
    private readonly stats: SessionStats,
    readonly options: StatsHubOptions = { maxSubscribers: DEFAULT_MAX_STATS_WATCHERS },
  ) {}

  /** Open computations (distinct requests being watched). */
  get shared(): number {
    return this.computations.size;
  }

  /** The store reads made by the computation of `req` (undefined when nobody watches it). */
  computationsOf(req: StatsWatchRequest): number | undefined {
    return this.computations.get(keyOf(req, checkMinInterval(req.minIntervalMs)))?.computations;
  }

  /** Joins (or starts) the computation of `req`; every join needs a leave. */
  join(req: StatsWatchRequest, signal: AbortSignal): Subscriber {
    this.stats.check(req);
    const minIntervalMs = checkMinInterval(req.minIntervalMs);
    if (this.subscribers >= this.options.maxSubscribers) {
      throw new ResourceExhaustedError(
        "TOO_MANY_STATS_WATCHERS",
        `this server has ${this.options.maxSubscribers} open stats streams (MAX_STATS_WATCHERS); retry later or on another replica`,
        WATCHERS_RETRY_MS,
        { max_stats_watchers: String(this.options.maxSubscribers) },
      );
    }
    const key = keyOf(req, minIntervalMs);
    let c = this.computations.get(key);
    if (c === undefined) {
      c = new Computation(key, req, minIntervalMs);
      this.computations.set(key, c);
      void this.run(c);
    }
    const s = new Subscriber(c, signal);
    s.timer = setTimeout(() => {
      s.heartbeatDue = true;
      s.wake();
    }, req.heartbeatMs);
    s.timer.unref();
    s.onAbort = () => s.wake();
    signal.addEventListener("abort", s.onAbort, { once: true });
    c.subscribers.add(s);
    this.subscribers++;
    return s;
  }

  leave(s: Subscriber): void {
    const c = s.computation;
    if (!c.subscribers.delete(s)) return;
    this.subscribers--;
    clearTimeout(s.timer);
    if (s.onAbort) s.signal.removeEventListener("abort", s.onAbort);
    s.wake();
    if (c.subscribers.size === 0) this.end(c);
  }

  private end(c: Computation): void {
    if (this.computations.get(c.key) === c) this.computations.delete(c.key);
    c.abort.abort();
  }

  /** Parks `s` until new figures, its heartbeat, its abort or the computation's end. */
  park(s: Subscriber): Promise<void> | undefined {
    if (s.signal.aborted || s.heartbeatDue || s.computation.error !== undefined || s.resolve !== undefined) return undefined;
    return new Promise((resolve) => {
      s.resolve = resolve;
    });
  }

  /** The computation's loop, for as long as it has subscribers. */
  private async run(c: Computation): Promise<void> {
    const signal = c.abort.signal;
    const filter = { profileId: c.input.profileId, ids: [], status: c.input.status, channel: c.input.channel, channelGroup: "" };
    let w: Watcher | undefined;
    let minuteTimer: NodeJS.Timeout | undefined;
    try {
      w = await this.feed.openWatcher(filter, onlineTickMs(c.minIntervalMs, c.input.onlineWindowMs), signal);
      // With the minute series: a tick just after the minute of the latest figures ends (at
      // once when it has ended already).
      const armMinute = (): void => {
        if (c.input.startedPerMinute !== true || c.stats === undefined) return;
        clearTimeout(minuteTimer);
        const turn = (minuteOf(c.stats.computedAt) + 1) * MINUTE_MS;
        minuteTimer = setTimeout(() => this.feed.tick(w!), Math.max(0, turn - this.stats.now().getTime() + 5));
        minuteTimer.unref();
      };
      let lastAt = 0;
      const compute = async (): Promise<void> => {
        await delay(lastAt + c.minIntervalMs - Date.now(), signal);
        if (signal.aborted) return;
        // Read before the store: every change up to here is in the figures.
        const revision = this.feed.headRevision;
        const stats = await this.stats.compute(c.input, { signal });
        c.computations++;
        lastAt = Date.now();
        w!.sent();
        c.revision = revision;
        c.stats = stats;
        c.figures = figuresOf(stats);
        armMinute();
        c.notify();
      };
      let cursor = this.feed.headRevision;
      await compute();
      for (;;) {
        if (signal.aborted) return;
        if (this.feed.isClosed) throw new ShuttingDownError();
        const parked = this.feed.park(w, cursor, false);
        if (parked !== undefined) {
          await parked;
          if (w.cleanUpTo > cursor) cursor = w.cleanUpTo;
        }
        if (signal.aborted) return;
        const { dirty, upTo } = this.scan(w, cursor);
        cursor = upTo;
        const tick = w.heartbeatDue;
        if (tick) w.sent();
        const minuteTurned =
          c.input.startedPerMinute === true && c.stats !== undefined && minuteOf(this.stats.now()) !== minuteOf(c.stats.computedAt);
        if (dirty || minuteTurned || (tick && (c.stats?.online ?? 0) > 0)) {
          await compute();
          cursor = Math.max(cursor, c.revision);
        } else {
          // A minute tick that came early (timers and the clock differ slightly): again.
          if (tick) armMinute();
          // Nothing that concerns these figures up to the cursor: they are current there too.
          if (cursor > c.revision) c.revision = cursor;
        }
      }
    } catch (err) {
      if (!signal.aborted) {
        c.error = err;
        c.notify();
        if (this.computations.get(c.key) === c) this.computations.delete(c.key);
      }
    } finally {
      clearTimeout(minuteTimer);
      if (w !== undefined) this.feed.closeWatcher(w);
    }
  }

  /** Whether a change after `cursor`, up to the feed's head, can move the figures. */
  private scan(w: Watcher, cursor: number): { dirty: boolean; upTo: number } {
    while (cursor < this.feed.headRevision) {
      const changes = this.feed.read(cursor, READ_BATCH);
      // Behind the buffer (this computation was busy for long): assume a change.
      if (changes === null) return { dirty: true, upTo: this.feed.headRevision };
      if (changes.length === 0) break;
      for (const change of changes) if (classify(w.match, change) !== null) return { dirty: true, upTo: this.feed.headRevision };
      cursor = changes[changes.length - 1].revision;
    }
    return { dirty: false, upTo: Math.max(cursor, this.feed.headRevision) };
  }
}

function keyOf(req: StatsWatchRequest, minIntervalMs: number): string {
  const windowMs = req.onlineWindowMs === 0 ? DEFAULT_ONLINE_WINDOW_MS : req.onlineWindowMs;
  return JSON.stringify([
    req.profileId,
    req.status,
    req.channel,
    req.groupBy ?? "",
    req.breakdowns ?? [],
    req.startedPerMinute === true,
    req.since?.getTime() ?? "",
    windowMs,
    minIntervalMs,
  ]);
}

/**
 * One WatchSessionStats stream: the current figures at once, then the latest figures whenever
 * they differ from the last sent (at most one message per min interval), and a heartbeat when
 * the stream has been quiet for its interval. Ends (returns) when `signal` aborts; throws the
 * computation's error (StoreUnavailableError, ShuttingDownError, TOO_MANY_WATCHERS).
 */
export async function* watchSessionStats(hub: StatsHub, req: StatsWatchRequest, signal: AbortSignal): AsyncGenerator<StatsEvent> {
  const s = hub.join(req, signal);
  const c = s.computation;
  try {
    let sentFigures: string | undefined;
    let sentAt = 0;
    for (;;) {
      if (signal.aborted) return;
      if (c.error !== undefined) throw c.error;
      if (c.stats !== undefined && c.figures !== sentFigures) {
        // A subscriber that joined between two computations sent its first figures off-beat.
        const wait = sentFigures === undefined ? 0 : sentAt + c.minIntervalMs - Date.now();
        if (wait > 0) {
          await delay(wait, signal);
          continue;
        }
        sentFigures = c.figures;
        sentAt = Date.now();
        s.sent();
        yield { type: "stats", stats: c.stats };
        continue;
      }
      if (s.heartbeatDue && c.stats !== undefined) {
        s.sent();
        yield { type: "heartbeat", checkedAt: c.stats.computedAt, revision: c.revision };
        continue;
      }
      if (s.heartbeatDue) s.sent();
      const parked = hub.park(s);
      if (parked !== undefined) await parked;
    }
  } finally {
    hub.leave(s);
  }
}
