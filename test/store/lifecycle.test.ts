// The lifecycle's expiry rules (src/domain/lifecycle.ts) over the real stores, with a fixed
// clock: what ends and why, bounded passes, and two replicas expiring at once (two store
// instances on one database, as two service processes) ending each session exactly once.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { Lifecycle, startExpiry } from "../../src/domain/lifecycle";
import { emptySessionDoc, type SessionDoc } from "../../src/domain/session";
import { MongoSessionStore } from "../../src/store/mongo";
import type { SessionStore } from "../../src/domain/store";
import { SqliteSessionStore } from "../../src/store/sqlite";
import { freshDatabase } from "../support/mongo";

const NOW = new Date("2026-11-27T12:00:00Z");
const minutesAgo = (m: number) => new Date(NOW.getTime() - m * 60_000);
const clock = { now: () => NOW };
const OPTIONS = { idleMs: 30 * 60_000, maxDurationMs: 24 * 3600_000 };

/** Two store instances on one database (two replicas' views), and how to drop it. */
interface Replicas {
  a: SessionStore;
  b: SessionStore;
  cleanup(): Promise<void>;
}

const STORES: Array<[string, () => Promise<Replicas>]> = [
  [
    "sqlite",
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lifecycle-"));
      const a = SqliteSessionStore.open(dir);
      const b = SqliteSessionStore.open(dir);
      return {
        a,
        b,
        cleanup: async () => {
          await a.close();
          await b.close();
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  ],
  [
    "mongodb",
    async () => {
      const db = await freshDatabase();
      const a = await MongoSessionStore.connect({ uri: db.uri, database: db.dbName });
      const b = await MongoSessionStore.connect({ uri: db.uri, database: db.dbName });
      return {
        a,
        b,
        cleanup: async () => {
          await a.close();
          await b.close();
          await db.drop();
        },
      };
    },
  ],
];

function session(id: string, insert: Date, update: Date | null = null, status = "active"): SessionDoc {
  const doc = emptySessionDoc(id, insert);
  doc.metadata.time.update = update;
  doc.metadata.status = status;
  return doc;
}

describe.each(STORES)("Lifecycle.expire on %s", (_name, open) => {
  let r: Replicas;
  beforeEach(async () => {
    r = await open();
  });
  afterEach(async () => {
    await r.cleanup();
  });

  it("ends idle and over-long active sessions with their reason, and nothing else", async () => {
    await r.a.create(session("idle", minutesAgo(120), minutesAgo(45)));
    await r.a.create(session("idle-never-touched", minutesAgo(40)));
    await r.a.create(session("recent", minutesAgo(120), minutesAgo(10)));
    await r.a.create(session("too-long", minutesAgo(25 * 60), minutesAgo(1)));
    await r.a.create(session("already-ended", minutesAgo(120), null, "ended"));
    await r.a.create(session("fresh", minutesAgo(5)));
    const before = await r.a.get("idle");

    const pass = await new Lifecycle(r.a, OPTIONS, clock).expire();
    expect(pass).toEqual({ ended: 3, skipped: 0 });
    const state = async (id: string) => {
      const d = await r.a.get(id);
      return [d.metadata.status, d.activity.end_reason];
    };
    expect(await state("idle")).toEqual(["ended", "idle"]);
    expect(await state("idle-never-touched")).toEqual(["ended", "idle"]);
    expect(await state("too-long")).toEqual(["ended", "max_duration"]);
    expect(await state("recent")).toEqual(["active", ""]);
    expect(await state("already-ended")).toEqual(["ended", ""]);
    expect(await state("fresh")).toEqual(["active", ""]);
    // Expiry is not activity: update and duration are left alone.
    const after = await r.a.get("idle");
    expect(after.metadata.time).toEqual(before.metadata.time);
    // A second pass finds nothing.
    expect(await new Lifecycle(r.a, OPTIONS, clock).expire()).toEqual({ ended: 0, skipped: 0 });
  });

  it("ends at most maxPerPass sessions per pass, in batches, and the next pass goes on", async () => {
    for (let i = 0; i < 9; i++) await r.a.create(session(`s${i}`, minutesAgo(60)));
    const lifecycle = new Lifecycle(r.a, { ...OPTIONS, expiryBatch: 2, maxPerPass: 5 }, clock);
    expect((await lifecycle.expire()).ended).toBe(5);
    expect((await lifecycle.expire()).ended).toBe(4);
    expect((await lifecycle.expire()).ended).toBe(0);
  });

  it("drains a backlog at start, pass after pass, without waiting an interval per pass", async () => {
    for (let i = 0; i < 5; i++) await r.a.create(session(`b${i}`, minutesAgo(60)));
    const lifecycle = new Lifecycle(r.a, { ...OPTIONS, expiryBatch: 2, maxPerPass: 2 }, clock);
    let ended = 0;
    let passes = 0;
    let drained!: () => void;
    const done = new Promise<void>((resolve) => (drained = resolve));
    const log = {
      info: (_msg: string, fields?: Record<string, unknown>) => {
        passes++;
        ended += Number(fields?.ended);
        if (ended === 5) drained();
      },
      warn: (msg: string) => {
        throw new Error(`unexpected warning: ${msg}`);
      },
    };
    // An hour between passes: only the start and the follow-ups of full passes can run here.
    const runner = startExpiry(lifecycle, 3600_000, log);
    try {
      await done;
    } finally {
      await runner.stop();
    }
    expect(passes).toBe(3);
    expect((await r.a.findExpired({ idleBefore: minutesAgo(30), insertedBefore: minutesAgo(24 * 60), limit: 10 })).map((d) => d.id)).toEqual([]);
  });

  it("ends each session exactly once when two replicas run passes at the same time", async () => {
    const n = 40;
    for (let i = 0; i < n; i++) await r.a.create(session(`c${String(i).padStart(2, "0")}`, minutesAgo(60)));
    const head = await r.a.headRevision();
    const [pa, pb] = await Promise.all([
      new Lifecycle(r.a, { ...OPTIONS, expiryBatch: 8 }, clock).expire(),
      new Lifecycle(r.b, { ...OPTIONS, expiryBatch: 8 }, clock).expire(),
    ]);
    expect(pa.ended + pb.ended).toBe(n);
    // The change log: one "ended" update per session, none twice.
    const { changes } = await r.a.readChanges(head, 1000);
    const ended = changes.filter((c) => c.kind === "updated" && c.doc.metadata.status === "ended").map((c) => c.id);
    expect(ended).toHaveLength(n);
    expect(new Set(ended).size).toBe(n);
    expect(changes).toHaveLength(n);
  });
});
