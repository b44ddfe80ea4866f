// WatchSessionStats in the domain (src/domain/watch/stats.ts): shared computations, recomputed
// only for changes that concern the figures and at most once per min interval, the online
// tick, heartbeats, the latest figures for a slow subscriber, limits and the release of every
// subscriber. The store is an in-memory change log that also counts (stats()).

import { InvalidArgumentError, ResourceExhaustedError } from "../../../src/domain/errors";
import { SessionStats, STARTED_MINUTES } from "../../../src/domain/stats";
import type { StatsQuery, StatsResult } from "../../../src/domain/store";
import type { Clock } from "../../../src/domain/time";
import { StatsHub, onlineTickMs, watchSessionStats, type StatsEvent, type StatsWatchRequest } from "../../../src/domain/watch/stats";
import { MemoryLog, newFeed, sleep, until, type Fields } from "./memory-log";

/** The change log, plus counts over its sessions; a session is online for `onlineMs` after its last write. */
class CountingLog extends MemoryLog {
  statsCalls = 0;
  readonly activeAt = new Map<string, number>();

  stats(q: StatsQuery): Promise<StatsResult> {
    this.statsCalls++;
    const docs = [...this.docs.values()].filter(
      (d) =>
        (!q.profileId || d.profile?.id === q.profileId) &&
        (!q.status || d.metadata.status === q.status) &&
        (!q.channel || d.metadata.channel === q.channel),
    );
    // Grouping by channel only (other fields count under null).
    const groupsBy = (field: string | undefined) => {
      const groups = new Map<string | null, number>();
      for (const d of docs) {
        const key = field === "channel" ? d.metadata.channel : null;
        groups.set(key, (groups.get(key) ?? 0) + 1);
      }
      return [...groups].map(([key, count]) => ({ key, count }));
    };
    const online = docs.filter((d) => d.metadata.status === "active" && (this.activeAt.get(d.id) ?? 0) >= q.onlineSince.getTime()).length;
    const minutes = q.startedPerMinute;
    return Promise.resolve({
      total: docs.length,
      online,
      groups: q.groupBy === "channel" ? groupsBy("channel") : [],
      breakdowns: (q.breakdowns ?? []).map((field) => ({ field, groups: groupsBy(field) })),
      startedPerMinute: minutes === undefined ? [] : new Array<number>(minutes.minutes).fill(0),
    });
  }

  put(id: string, f: Fields): void {
    this.write(this.docs.has(id) ? "updated" : "created", id, f);
    this.activeAt.set(id, Date.now());
  }
}

const fields = (profileId: string, channel = "web", status = "active"): Fields => ({ profileId, status, channel });

function request(r: Partial<StatsWatchRequest> = {}): StatsWatchRequest {
  return { profileId: "", status: "", channel: "", onlineWindowMs: 0, minIntervalMs: 100, heartbeatMs: 15_000, ...r };
}

function setup(maxSubscribers = 100, clock?: Clock) {
  const log = new CountingLog();
  const feed = newFeed(log);
  const hub = new StatsHub(feed, new SessionStats(log.store, {}, clock), { maxSubscribers });
  return { log, feed, hub };
}

/** A subscriber that records what it receives, optionally pausing after each message. */
function subscribe(hub: StatsHub, req: StatsWatchRequest, pauseMs = 0) {
  const abort = new AbortController();
  const events: StatsEvent[] = [];
  const state: { error?: unknown } = {};
  const done = (async () => {
    try {
      for await (const ev of watchSessionStats(hub, req, abort.signal)) {
        events.push(ev);
        if (pauseMs > 0) await sleep(pauseMs);
      }
    } catch (err) {
      state.error = err;
    }
  })();
  const figures = () => events.flatMap((e) => (e.type === "stats" ? [e.stats] : []));
  return { abort, events, state, done, figures, last: () => figures().at(-1) };
}

describe("WatchSessionStats (domain)", () => {
  it("shares one computation among equal requests and recomputes only for concerning changes", async () => {
    const { log, feed, hub } = setup();
    log.put("s1", fields("a"));
    const a = subscribe(hub, request({ profileId: "a" }));
    const b = subscribe(hub, request({ profileId: "a" }));
    const other = subscribe(hub, request({ profileId: "z", minIntervalMs: 200 }));
    await until(() => a.figures().length === 1 && b.figures().length === 1 && other.figures().length === 1);
    expect(hub.shared).toBe(2);
    expect(hub.subscribers).toBe(3);
    expect(a.last()).toMatchObject({ total: 1, online: 1 });
    expect(other.last()).toMatchObject({ total: 0 });
    const calls = hub.computationsOf(request({ profileId: "a" }));
    expect(calls).toBe(1);

    // A change of another profile does not concern "a": no store read for it.
    log.put("s9", fields("b"));
    await until(() => feed.headRevision === log.head);
    log.put("s2", fields("a"));
    await until(() => a.last()?.total === 2 && b.last()?.total === 2);
    expect(hub.computationsOf(request({ profileId: "a" }))).toBe(2);
    expect(other.figures()).toHaveLength(1);

    for (const s of [a, b, other]) s.abort.abort();
    await Promise.all([a.done, b.done, other.done]);
    await until(() => feed.watchers === 0);
    expect(hub.subscribers).toBe(0);
    expect(hub.shared).toBe(0);
    feed.close();
  });

  it("sends at most one message per min interval under a burst, and then the final figures", async () => {
    const { log, feed, hub } = setup();
    const s = subscribe(hub, request({ minIntervalMs: 300 }));
    await until(() => s.figures().length === 1);
    const started = Date.now();
    for (let i = 0; i < 200; i++) {
      log.put(`b${i}`, fields("p"));
      if (i % 20 === 0) await sleep(10);
    }
    await until(() => s.last()?.total === 200);
    const elapsed = Date.now() - started;
    const sent = s.figures();
    // One message per 300 ms at most (plus the one the burst started with).
    expect(sent.length - 1).toBeLessThanOrEqual(Math.ceil(elapsed / 300) + 1);
    const times = s.events.flatMap((e) => (e.type === "stats" ? [e.stats.computedAt.getTime()] : []));
    for (let i = 1; i < times.length; i++) expect(times[i] - times[i - 1]).toBeGreaterThanOrEqual(290);
    expect(log.statsCalls).toBeLessThan(20);
    s.abort.abort();
    await s.done;
    feed.close();
  });

  it("moves 'online now' when sessions go idle, without any change", async () => {
    const { log, feed, hub } = setup();
    log.put("s1", fields("a"));
    expect(onlineTickMs(100, 400)).toBe(100);
    const s = subscribe(hub, request({ onlineWindowMs: 400 }));
    await until(() => s.last()?.online === 1);
    const head = log.head;
    await until(() => s.last()?.online === 0, 5000);
    expect(log.head).toBe(head);
    expect(s.last()?.total).toBe(1);
    s.abort.abort();
    await s.done;
    feed.close();
  });

  it("sends a heartbeat on a quiet stream, with the revision the figures account for", async () => {
    const { log, feed, hub } = setup();
    log.put("s1", fields("a"));
    const s = subscribe(hub, request({ heartbeatMs: 150 }));
    await until(() => s.events.filter((e) => e.type === "heartbeat").length >= 2);
    const beat = s.events.find((e) => e.type === "heartbeat");
    expect(beat).toMatchObject({ type: "heartbeat", revision: log.head });
    expect(s.figures()).toHaveLength(1);
    s.abort.abort();
    await s.done;
    feed.close();
  });

  it("gives a slow subscriber the latest figures, not a queue of old ones", async () => {
    const { log, feed, hub } = setup();
    const fast = subscribe(hub, request());
    const slow = subscribe(hub, request(), 1500);
    await until(() => fast.figures().length === 1 && slow.figures().length === 1);
    for (let i = 1; i <= 5; i++) {
      log.put(`s${i}`, fields("a"));
      await until(() => fast.last()?.total === i);
    }
    await until(() => slow.last()?.total === 5, 5000);
    // It was busy for the whole series: it skipped what came and went meanwhile.
    expect(slow.figures().map((f) => f.total)).toEqual([0, 5]);
    for (const s of [fast, slow]) s.abort.abort();
    await Promise.all([fast.done, slow.done]);
    feed.close();
  });

  it("counts a change in a breakdown alone as new figures, and keys computations by breakdowns", async () => {
    const { log, feed, hub } = setup();
    log.put("s1", fields("a", "web"));
    const s = subscribe(hub, request({ breakdowns: ["channel"] }));
    const plain = subscribe(hub, request());
    const other = subscribe(hub, request({ breakdowns: ["status", "channel"] }));
    await until(() => s.figures().length === 1 && plain.figures().length === 1 && other.figures().length === 1);
    expect(hub.shared).toBe(3);
    expect(s.last()?.breakdowns).toEqual([{ field: "channel", groups: [{ key: "web", count: 1 }] }]);
    expect(other.last()?.breakdowns.map((b) => b.field)).toEqual(["status", "channel"]);
    // The channel moves: total and online stay, the breakdown changes.
    log.put("s1", fields("a", "app"));
    await until(() => s.last()?.breakdowns[0].groups[0].key === "app");
    expect(s.figures().map((f) => [f.total, f.online])).toEqual([
      [1, 1],
      [1, 1],
    ]);
    // Without breakdowns the same figures are not new: nothing more is sent.
    await until(() => hub.computationsOf(request()) === 2);
    expect(plain.figures()).toHaveLength(1);
    for (const x of [s, plain, other]) x.abort.abort();
    await Promise.all([s.done, plain.done, other.done]);
    feed.close();
  });

  it("sends the minute series shifted when the minute turns, with no change", async () => {
    // A clock whose minute turns 1 s after the test starts (it runs at the real pace); the
    // online tick (5 s) comes later than the 3 s this waits for the turn.
    const offset = 60_000 - (Date.now() % 60_000) - 1000;
    const clock: Clock = { now: () => new Date(Date.now() + offset) };
    const { log, feed, hub } = setup(100, clock);
    log.put("s1", fields("a"));
    const s = subscribe(hub, request({ startedPerMinute: true, heartbeatMs: 60_000 }));
    await until(() => s.figures().length === 1);
    const first = s.last()!;
    expect(first.startedPerMinute).toHaveLength(STARTED_MINUTES);
    const head = log.head;
    await until(() => s.figures().length === 2, 3000);
    const second = s.last()!;
    expect(log.head).toBe(head);
    expect(second.startedPerMinute[0].start.getTime() - first.startedPerMinute[0].start.getTime()).toBe(60_000);
    expect(second.startedPerMinute.at(-1)!.start.getTime()).toBe(Math.floor(second.computedAt.getTime() / 60_000) * 60_000);
    s.abort.abort();
    await s.done;
    feed.close();
  });

  it("refuses bad requests naming the field, and subscribers over the limit", async () => {
    const { feed, hub } = setup(1);
    const bad = async (req: StatsWatchRequest) => {
      const s = subscribe(hub, req);
      await s.done;
      return s.state.error;
    };
    for (const [req, field] of [
      [request({ minIntervalMs: 50 }), "min_interval"],
      [request({ minIntervalMs: 61_000 }), "min_interval"],
      [request({ minIntervalMs: -1000 }), "min_interval"],
      [request({ onlineWindowMs: -1 }), "online_window"],
      [request({ profileId: "has space" }), "filter.profile_id"],
      [request({ breakdowns: ["channel", undefined] }), "breakdowns[1]"],
      [request({ breakdowns: ["channel", "os_name", "channel"] }), "breakdowns[2]"],
    ] as const) {
      const err = await bad(req);
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).violations[0].field).toBe(field);
    }
    const first = subscribe(hub, request());
    await until(() => first.figures().length === 1);
    const err = await bad(request({ profileId: "x" }));
    expect(err).toBeInstanceOf(ResourceExhaustedError);
    expect((err as ResourceExhaustedError).reason).toBe("TOO_MANY_STATS_WATCHERS");
    first.abort.abort();
    await first.done;
    expect(hub.subscribers).toBe(0);
    feed.close();
  });

  it("ends every subscriber when the feed closes", async () => {
    const { feed, hub } = setup();
    const s = subscribe(hub, request());
    await until(() => s.figures().length === 1);
    feed.close();
    await s.done;
    expect((s.state.error as Error).constructor.name).toBe("ShuttingDownError");
    expect(hub.subscribers).toBe(0);
  });
});
