// The change feed and watchSessions without a server or a database: an in-memory change log
// stands in for the store. These tests pin the fan-out (a change wakes only the watchers it can
// concern, parked watchers skip unconcerned changes unread) against the guarantees of
// docs/watch.md: ordered, unique, gap-free, heartbeats as safe resume points, cancellation.

import { ChangesTrimmedError, ShuttingDownError } from "../../src/domain/errors";
import { createLogger } from "../../src/log";
import type { SessionDoc } from "../../src/domain/session";
import type { ChangeBatch, ChangeKind, ChangeRecord, FilterFields, ListQuery, SessionStore } from "../../src/domain/store";
import { ChangeFeed, classifyChange, watchSessions, type WatchEvent, type WatchFilter, type WatchRequest } from "../../src/domain/watch";

interface Fields {
  profileId: string | null;
  status: string;
  channel: string;
}

function doc(id: string, f: Fields, revision: number): SessionDoc {
  return {
    id,
    profile: f.profileId === null ? null : { id: f.profileId },
    metadata: { status: f.status, channel: f.channel, time: { insert: new Date(1_700_000_000_000 + revision) } },
    revision,
  } as unknown as SessionDoc;
}

/** The parts of SessionStore the feed uses, over an in-memory change log. */
class MemoryLog {
  changes: ChangeRecord[] = [];
  head = 0;
  trimmedThrough = 0;
  docs = new Map<string, SessionDoc>();
  /** `after` of every readChanges call, in order. */
  reads: number[] = [];
  private readonly listeners = new Set<() => void>();

  get store(): SessionStore {
    return this as unknown as SessionStore;
  }

  readChanges(after: number, limit: number): Promise<ChangeBatch> {
    this.reads.push(after);
    if (after < this.trimmedThrough) return Promise.reject(new ChangesTrimmedError(after, this.trimmedThrough));
    const out = this.changes.filter((c) => c.revision > after).slice(0, limit);
    return Promise.resolve({ changes: out, safeRevision: out.length === limit ? out[limit - 1].revision : Math.max(after, this.head) });
  }
  headRevision(): Promise<number> {
    return Promise.resolve(this.head);
  }
  snapshotRevision(): Promise<number> {
    return Promise.resolve(this.head);
  }
  trimChanges(): Promise<number> {
    return Promise.resolve(this.trimmedThrough);
  }
  onCommit(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  get(id: string): Promise<SessionDoc> {
    const d = this.docs.get(id);
    return d ? Promise.resolve(d) : Promise.reject(Object.assign(new Error("not found"), { reason: "SESSION_NOT_FOUND" }));
  }
  list(q: ListQuery): Promise<SessionDoc[]> {
    const all = [...this.docs.values()].filter(
      (d) => (!q.profileId || d.profile?.id === q.profileId) && (!q.status || d.metadata.status === q.status) && (!q.channel || d.metadata.channel === q.channel),
    );
    return Promise.resolve(q.after ? [] : all);
  }

  /** Commits one change. `repaired`: the log does not know the before-state (before = null). */
  write(kind: ChangeKind, id: string, f?: Fields, repaired = false): ChangeRecord {
    const revision = ++this.head;
    const old = this.docs.get(id);
    const before: FilterFields | null =
      kind === "created" || repaired || !old ? null : { profileId: old.profile?.id ?? null, status: old.metadata.status, channel: old.metadata.channel };
    const after = kind === "deleted" ? doc(id, { profileId: old!.profile?.id ?? null, status: old!.metadata.status, channel: old!.metadata.channel }, revision) : doc(id, f!, revision);
    if (kind === "deleted") this.docs.delete(id);
    else this.docs.set(id, after);
    const change: ChangeRecord = { revision, kind, id, doc: after, before };
    this.changes.push(change);
    for (const l of this.listeners) l();
    return change;
  }
}

const silent = createLogger("silent");
const filter = (f: Partial<WatchFilter>): WatchFilter => ({ profileId: "", ids: [], status: "", channel: "", ...f });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not reached in time");
    await sleep(2);
  }
}

/** A watcher that records everything it receives, optionally pausing after each message. */
function consume(feed: ChangeFeed, log: MemoryLog, req: Partial<WatchRequest>, pauseMs = 0) {
  const abort = new AbortController();
  const events: WatchEvent[] = [];
  const state: { error?: unknown; ended: boolean } = { ended: false };
  const full: WatchRequest = { filter: filter({}), sendInitial: false, heartbeatMs: 15_000, ...req };
  const done = (async () => {
    try {
      for await (const ev of watchSessions(feed, log.store, full, abort.signal)) {
        events.push(ev);
        if (pauseMs > 0) await sleep(Math.random() * pauseMs);
      }
    } catch (err) {
      state.error = err;
    } finally {
      state.ended = true;
    }
  })();
  return { events, state, done, abort, changes: () => events.filter((e) => e.type === "change") };
}

function newFeed(log: MemoryLog, bufferSize = 4096): ChangeFeed {
  return new ChangeFeed(log.store, silent, { pollIntervalMs: 20, bufferSize, retentionMs: 3600_000, trimIntervalMs: 3600_000, maxWatchers: 10_000, stallTimeoutMs: 30_000 });
}

describe("classifyChange", () => {
  const log = new MemoryLog();
  const a = { profileId: "a", status: "active", channel: "web" };
  const b = { profileId: "b", status: "active", channel: "web" };
  it("tells created, updated, entered, left and deleted apart by the before-state", () => {
    const f = filter({ profileId: "a" });
    expect(classifyChange(f, log.write("created", "s1", a))).toBe("created");
    expect(classifyChange(f, log.write("updated", "s1", a))).toBe("updated");
    expect(classifyChange(f, log.write("updated", "s1", b))).toBe("left");
    expect(classifyChange(f, log.write("updated", "s1", b))).toBeNull();
    expect(classifyChange(f, log.write("updated", "s1", a))).toBe("entered");
    expect(classifyChange(f, log.write("deleted", "s1"))).toBe("deleted");
    expect(classifyChange(f, log.write("created", "s2", b))).toBeNull();
    expect(classifyChange(f, log.write("deleted", "s2"))).toBeNull();
  });
  it("treats an unknown before-state as matching, for any filter", () => {
    log.write("created", "s3", b);
    const repaired = log.write("updated", "s3", b, true);
    expect(classifyChange(filter({ profileId: "a" }), repaired)).toBe("left");
    expect(classifyChange(filter({ ids: ["other"] }), repaired)).toBe("left");
    expect(classifyChange(filter({ profileId: "b" }), repaired)).toBe("updated");
  });
  it("matches ids, status and channel", () => {
    const c = log.write("created", "s4", { profileId: "a", status: "ended", channel: "app" });
    expect(classifyChange(filter({ ids: ["x", "s4"] }), c)).toBe("created");
    expect(classifyChange(filter({ ids: ["x"] }), c)).toBeNull();
    expect(classifyChange(filter({ status: "ended", channel: "app" }), c)).toBe("created");
    expect(classifyChange(filter({ status: "active" }), c)).toBeNull();
  });
});

describe("ChangeFeed fan-out", () => {
  const fields = (p: string) => ({ profileId: p, status: "active", channel: "web" });

  it("wakes only the watchers a change concerns", async () => {
    const log = new MemoryLog();
    const feed = newFeed(log);
    const idle = Array.from({ length: 200 }, (_, i) => consume(feed, log, { filter: filter({ profileId: `idle-${i % 20}` }) }));
    const target = consume(feed, log, { filter: filter({ profileId: "a" }) });
    await until(() => feed.waiting === 201);
    const read = jest.spyOn(feed, "read");
    for (let i = 0; i < 50; i++) {
      log.write(i === 0 ? "created" : "updated", "s-a", fields("a"));
      await until(() => target.changes().length === i + 1);
    }
    await until(() => feed.waiting === 201);
    // The target reads twice per change (the change, then nothing before it parks again);
    // waking every watcher on every commit would be at least 201 reads per change.
    expect(read.mock.calls.length).toBeLessThanOrEqual(3 * 50);
    expect(idle.every((w) => w.events.length === 0)).toBe(true);
    for (const w of [...idle, target]) w.abort.abort();
    await Promise.all([...idle, target].map((w) => w.done));
    expect(feed.watchers).toBe(0);
    expect(feed.waiting).toBe(0);
    feed.close();
  });

  it("wakes the watchers of the profile a session leaves", async () => {
    const log = new MemoryLog();
    const feed = newFeed(log);
    const x = consume(feed, log, { filter: filter({ profileId: "x" }) });
    const y = consume(feed, log, { filter: filter({ profileId: "y", channel: "web" }) });
    const id = consume(feed, log, { filter: filter({ ids: ["s"] }) });
    await until(() => feed.waiting === 3);
    // One change at a time, each delivered before the next: a watcher must be woken by the
    // change itself, not find it while reading for an earlier one.
    const step = async (write: () => void, counts: [number, number, number]) => {
      write();
      await until(() => x.changes().length === counts[0] && y.changes().length === counts[1] && id.changes().length === counts[2] && feed.waiting === 3);
    };
    await step(() => log.write("created", "s", fields("x")), [1, 0, 1]);
    await step(() => log.write("updated", "s", fields("y")), [2, 1, 2]);
    await step(() => log.write("updated", "s", { profileId: "y", status: "active", channel: "app" }), [2, 2, 3]);
    await step(() => log.write("deleted", "s"), [2, 2, 4]);
    const kinds = (w: ReturnType<typeof consume>) => w.changes().map((e) => (e.type === "change" ? `${e.kind}@${e.revision}` : ""));
    expect(kinds(x)).toEqual(["created@1", "left@2"]);
    expect(kinds(y)).toEqual(["entered@2", "left@3"]);
    expect(kinds(id)).toEqual(["created@1", "updated@2", "updated@3", "deleted@4"]);
    for (const w of [x, y, id]) w.abort.abort();
    await Promise.all([x, y, id].map((w) => w.done));
    feed.close();
  });

  it("gives a parked watcher a heartbeat at the head without reading the changes it skipped", async () => {
    const log = new MemoryLog();
    // A buffer of 4: reading the skipped changes would have to go to the store.
    const feed = newFeed(log, 4);
    const w = consume(feed, log, { filter: filter({ profileId: "b" }), heartbeatMs: 60 });
    await until(() => feed.waiting === 1);
    log.reads = [];
    for (let i = 0; i < 40; i++) log.write(i === 0 ? "created" : "updated", "s-a", fields("a"));
    await until(() => w.events.some((e) => e.type === "progress" && e.revision === log.head));
    // Only the feed read the log, always from its own (rising) head: the watcher read nothing.
    for (let i = 1; i < log.reads.length; i++) expect(log.reads[i]).toBeGreaterThanOrEqual(log.reads[i - 1]);
    expect(w.changes()).toEqual([]);
    // Resuming from that heartbeat continues with the next change of the profile.
    w.abort.abort();
    await w.done;
    const resumed = consume(feed, log, { filter: filter({ profileId: "b" }), afterRevision: log.head });
    log.write("created", "s-b", fields("b"));
    await until(() => resumed.changes().length === 1);
    expect(resumed.changes()[0]).toMatchObject({ kind: "created", revision: log.head });
    resumed.abort.abort();
    await resumed.done;
    feed.close();
  });

  it("wakes parked watchers when the feed skips trimmed history, so they get OUT_OF_RANGE", async () => {
    const log = new MemoryLog();
    const feed = newFeed(log);
    const w = consume(feed, log, { filter: filter({ profileId: "b" }) });
    await until(() => feed.waiting === 1);
    // Another process wrote and trimmed past this feed's head before the feed read anything.
    log.head = 5;
    log.trimmedThrough = 5;
    feed.kick();
    await w.done;
    expect(w.state.error).toBeInstanceOf(ChangesTrimmedError);
    expect(feed.watchers).toBe(0);
    feed.close();
  });

  it("frees the watcher on abort and ends open streams with UNAVAILABLE when the feed closes", async () => {
    const log = new MemoryLog();
    const feed = newFeed(log);
    const a = consume(feed, log, { filter: filter({ profileId: "a" }) });
    const b = consume(feed, log, {});
    await until(() => feed.waiting === 2);
    a.abort.abort();
    await a.done;
    expect(a.state.error).toBeUndefined();
    expect(feed.watchers).toBe(1);
    expect(feed.waiting).toBe(1);
    feed.close();
    await b.done;
    expect(b.state.error).toBeInstanceOf(ShuttingDownError);
    expect(feed.watchers).toBe(0);
    expect(feed.waiting).toBe(0);
  });

  it("sends the initial state, its end marker, then live changes", async () => {
    const log = new MemoryLog();
    const feed = newFeed(log);
    for (let i = 0; i < 3; i++) log.write("created", `s${i}`, fields("a"));
    log.write("created", "other", fields("b"));
    const w = consume(feed, log, { filter: filter({ profileId: "a" }), sendInitial: true });
    await until(() => w.events.some((e) => e.type === "initial_end"));
    log.write("updated", "s1", fields("a"));
    await until(() => w.changes().length === 4);
    expect(w.events.map((e) => (e.type === "change" ? `${e.kind}@${e.revision}` : `${e.type}@${e.revision}`))).toEqual([
      "initial@1",
      "initial@2",
      "initial@3",
      "initial_end@4",
      "updated@5",
    ]);
    w.abort.abort();
    await w.done;
    feed.close();
  });
});

describe("watchSessions in a seeded random history", () => {
  // Many watchers with every kind of filter, slow ones behind a tiny buffer, short heartbeats,
  // profile moves, deletes and repaired log entries; each stream is checked against the log.
  it.each([4096, 8])("is ordered, unique, gap-free, and every heartbeat is a safe resume point (buffer %i)", async (bufferSize) => {
    let a = 20261127 + bufferSize;
    const rand = () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
    const PROFILES = ["p0", "p1", "p2", "p3"];
    const IDS = Array.from({ length: 12 }, (_, i) => `s${i}`);
    const randomFields = (): Fields => ({ profileId: rand() < 0.1 ? null : pick(PROFILES), status: pick(["active", "ended"]), channel: pick(["web", "app"]) });

    const log = new MemoryLog();
    const feed = newFeed(log, bufferSize);
    const write = () => {
      const id = pick(IDS);
      if (!log.docs.has(id)) log.write("created", id, randomFields());
      else if (rand() < 0.15) log.write("deleted", id, undefined, rand() < 0.2);
      else log.write("updated", id, rand() < 0.5 ? randomFields() : { ...randomFields(), profileId: log.docs.get(id)!.profile?.id ?? null }, rand() < 0.05);
    };
    for (let i = 0; i < 30; i++) write();

    const filters: WatchFilter[] = [
      filter({}),
      filter({ status: "ended" }),
      filter({ channel: "app", status: "active" }),
      ...PROFILES.map((p) => filter({ profileId: p })),
      ...PROFILES.map((p) => filter({ profileId: p, channel: "web" })),
      filter({ ids: ["s1"] }),
      filter({ ids: ["s2", "s3", "s4"] }),
      filter({ ids: ["s5", "s6"], profileId: "p1" }),
      filter({ profileId: "nobody" }),
    ];
    const watchers = filters.flatMap((f, i) => {
      const start = i % 2 === 0 ? 0 : log.head;
      return [
        { f, start, w: consume(feed, log, { filter: f, afterRevision: start, heartbeatMs: 15 }) },
        { f, start, w: consume(feed, log, { filter: f, afterRevision: start, heartbeatMs: 25 }, 4) },
      ];
    });
    for (let i = 0; i < 400; i++) {
      write();
      if (rand() < 0.3) await sleep(rand() * 3);
    }
    const end = log.head;
    await until(() => watchers.every(({ w }) => w.events.some((e) => e.type === "progress" && e.revision >= end)), 20_000);
    for (const { w } of watchers) w.abort.abort();
    await Promise.all(watchers.map(({ w }) => w.done));
    expect(feed.watchers).toBe(0);
    expect(feed.waiting).toBe(0);
    feed.close();

    for (const { f, start, w } of watchers) {
      expect(w.state.error).toBeUndefined();
      const expected = log.changes.filter((c) => c.revision > start && classifyChange(f, c) !== null).map((c) => `${classifyChange(f, c)}@${c.revision}`);
      const got = w.changes().map((e) => `${e.type === "change" ? e.kind : ""}@${e.revision}`);
      expect(got).toEqual(expected);
      // A heartbeat at P: every change up to P came before it, none after it.
      let received = 0;
      for (const e of w.events) {
        if (e.type === "change") {
          received++;
          continue;
        }
        const upTo = log.changes.filter((c) => c.revision > start && c.revision <= e.revision && classifyChange(f, c) !== null).length;
        expect(received).toBe(upTo);
      }
    }
  }, 60_000);
});
