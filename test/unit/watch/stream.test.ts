// watchSessions against the guarantees of docs/watch.md: the initial state and its end marker,
// then ordered, unique, gap-free streams whose heartbeats are safe resume points.

import { classifyChange, type WatchFilter } from "../../../src/domain/watch/filter";
import { consume, filter, MemoryLog, newFeed, sleep, until, type Fields } from "./memory-log";

describe("watchSessions", () => {
  const fields = (p: string) => ({ profileId: p, status: "active", channel: "web" });

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
  it.each([4096, 8])(
    "is ordered, unique, gap-free, and every heartbeat is a safe resume point (buffer %i)",
    async (bufferSize) => {
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
      const randomFields = (): Fields => ({
        profileId: rand() < 0.1 ? null : pick(PROFILES),
        status: pick(["active", "ended"]),
        channel: pick(["web", "app"]),
      });

      const log = new MemoryLog();
      const feed = newFeed(log, bufferSize);
      const write = () => {
        const id = pick(IDS);
        if (!log.docs.has(id)) log.write("created", id, randomFields());
        else if (rand() < 0.15) log.write("deleted", id, undefined, rand() < 0.2);
        else
          log.write(
            "updated",
            id,
            rand() < 0.5 ? randomFields() : { ...randomFields(), profileId: log.docs.get(id)!.profile?.id ?? null },
            rand() < 0.05,
          );
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
        const expected = log.changes
          .filter((c) => c.revision > start && classifyChange(f, c) !== null)
          .map((c) => `${classifyChange(f, c)}@${c.revision}`);
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
    },
    60_000,
  );
});
