// `node dist/bench/erase-bench.js`: EraseProfile on the embedded store for a profile with many
// sessions. It fills a fresh store with --sessions sessions of one profile (numbered visits, one
// update each, so each has two change rows) and --others of other profiles, then erases the
// profile with the domain's Erasure while a reader loop calls get() on the other sessions and a
// writer loop updates them, and reports: the erasure's time and rate, how long each store step
// took (each eraseSessions step is one write transaction: what it holds the writer for), and the
// latency of the concurrent gets and updates.
//
// Options: --sessions N (default 100000), --others N (default 1000), --batch N (ERASE_BATCH_SIZE,
// default 200), --json FILE.

import type { SessionDoc } from "../src/domain/session";
import { Erasure } from "../src/domain/erasure";
import type { SessionStore } from "../src/domain/store";
import { SqliteSessionStore } from "../src/store/sqlite";
import { int, parseArgs } from "./lib/options";
import { runMain, tempDir } from "./lib/processes";
import { dist } from "./lib/stats";
import { writeJson } from "./lib/table";
import { emptySessionDoc } from "../src/domain/session";

interface Options {
  sessions: number;
  others: number;
  batch: number;
  json?: string;
}

function parseOptions(argv: string[]): Options {
  const o: Options = { sessions: 100_000, others: 1000, batch: 200 };
  parseArgs(argv, {
    "--sessions": (v, n) => (o.sessions = int(v(), n)),
    "--others": (v, n) => (o.others = int(v(), n)),
    "--batch": (v, n) => (o.batch = int(v(), n)),
    "--json": (v) => (o.json = v()),
  });
  return o;
}

function doc(id: string, profileId: string, i: number): SessionDoc {
  const d = emptySessionDoc(id, new Date(Date.UTC(2026, 0, 1) + i * 1000));
  d.profile = { id: profileId, primary_id: null, metadata: {} };
  d.device.ip = "203.0.113.7";
  d.traits = { email: `person-${i}@example.com`, note: "x".repeat(400) };
  return d;
}

async function fill(store: SessionStore, prefix: string, profileOf: (i: number) => string, n: number): Promise<void> {
  const burst = 500;
  for (let i = 0; i < n; i += burst) {
    const ids = Array.from({ length: Math.min(burst, n - i) }, (_, k) => i + k);
    await Promise.all(ids.map((k) => store.create(doc(`${prefix}-${k}`, profileOf(k), k), { numberVisitIn: profileOf(k) })));
    await Promise.all(
      ids.map((k) => store.update(`${prefix}-${k}`, { set: [{ path: ["metadata", "channel"], value: "app" }], unset: [] })),
    );
  }
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const store = SqliteSessionStore.open(tempDir("erase-bench-"));
  const fillStart = performance.now();
  await fill(store, "p", () => "the-person", o.sessions);
  await fill(store, "o", (k) => `other-${k % 100}`, o.others);
  const fillMs = performance.now() - fillStart;

  const steps: number[] = [];
  const timed: SessionStore = Object.create(store, {
    eraseSessions: {
      value: async (profileId: string, limit: number) => {
        const t = performance.now();
        const r = await store.eraseSessions(profileId, limit);
        steps.push(performance.now() - t);
        return r;
      },
    },
  }) as SessionStore;

  let running = true;
  const gets: number[] = [];
  const updates: number[] = [];
  const reader = (async () => {
    for (let i = 0; running; i++) {
      const t = performance.now();
      await store.get(`o-${i % o.others}`);
      gets.push(performance.now() - t);
    }
  })();
  const writer = (async () => {
    for (let i = 0; running; i++) {
      const t = performance.now();
      await store.update(`o-${i % o.others}`, { set: [{ path: ["properties", "n"], value: i }], unset: [] });
      updates.push(performance.now() - t);
    }
  })();
  const start = performance.now();
  const { erased } = await new Erasure(timed, undefined, { batchSize: o.batch }).erase("the-person");
  const eraseMs = performance.now() - start;
  running = false;
  await Promise.all([reader, writer]);
  await store.close();

  const r = (x: number) => Math.round(x * 100) / 100;
  const result = {
    sessions: o.sessions,
    batch: o.batch,
    erased,
    fillSeconds: r(fillMs / 1000),
    eraseSeconds: r(eraseMs / 1000),
    sessionsPerSecond: Math.round(erased / (eraseMs / 1000)),
    stepMs: Object.fromEntries(Object.entries(dist(steps)).map(([k, v]) => [k, r(v)])),
    concurrentGetMs: Object.fromEntries(Object.entries(dist(gets)).map(([k, v]) => [k, r(v)])),
    concurrentUpdateMs: Object.fromEntries(Object.entries(dist(updates)).map(([k, v]) => [k, r(v)])),
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  if (o.json) writeJson(o.json, result);
}

runMain("erase-bench", main);
