// `npm run bench:stats`: GetSessionStats (the store's stats call, through its worker threads as
// the service calls it) on the embedded SQLite store at 10k, 100k and 1M stored sessions: p50
// and p99 per group_by and with the filters, and the ratio of the largest size's p99 to the
// smallest's (flat = the cost does not follow the stored count).
//
// Each size: a fresh store filled through the store port (creates in bursts sharing a group
// commit), the sessions inserted evenly over the 7 days before "now" with varied channels,
// devices, OSes, apps, countries and UTM sources; those of the last 30 minutes are active (the
// others ended), so "online" (active within 5 minutes) stays a small share as on a real service.
// Then every query runs --calls times (after --warmup calls), one at a time.
//
// Queries: each group_by (and none) with no filter; os_name with status=active, with
// channel=web, with since 90 and 25 minutes before now (a partial first hour: those sessions are
// counted from the sessions table, so that case follows the sessions inserted per hour), and with
// a profile filter (the profile's sessions).
//
// Then the update latency of WatchSessionStats at a fixed rate of changes, per min_interval,
// against the built service (bench/stats-latency.ts has its design).
//
// Options: --only get|latency (one part; default both), --json FILE ({ get, latency }).
// GetSessionStats: --sizes 10000,100000,1000000, --calls N (default 1000), --warmup N (default 50).
// WatchSessionStats: --min-intervals 1s,100ms, --latency-rate N (changes/s, default 200),
// --latency-duration S (seconds of writes per phase, default 20), --latency-stored N (sessions
// stored before the service starts, default 100000), --sparse N (isolated changes, one every
// 1.5 s, min_interval 1s, default 10; 0 = none).

import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { emptySessionDoc, STATUS_ACTIVE, STATUS_ENDED, type SessionDoc } from "../src/domain/session";
import type { StatsField, StatsQuery } from "../src/domain/store";
import { SqliteSessionStore } from "../src/store/sqlite";
import { durationMs, int, list, oneOf, parseArgs } from "./lib/options";
import { runMain } from "./lib/processes";
import { dist, type Dist } from "./lib/stats";
import { ms, ratio, table, writeJson } from "./lib/table";
import { latencyBench, renderLatency, type LatencyOptions, type LatencyResult } from "./stats-latency";

interface Options {
  only?: "get" | "latency";
  sizes: number[];
  calls: number;
  warmup: number;
  latency: LatencyOptions;
  json?: string;
}

function parseOptions(argv: string[]): Options {
  const o: Options = {
    sizes: [10_000, 100_000, 1_000_000],
    calls: 1000,
    warmup: 50,
    latency: { rate: 200, durationS: 20, stored: 100_000, intervalsMs: [1000, 100], sparse: 10 },
  };
  const interval = (x: string, n: string): number => {
    const v = durationMs(x.trim());
    if (v < 100 || v > 60_000) throw new Error(`${n}: each from 100ms to 60s (the service's range), got ${x}`);
    return v;
  };
  parseArgs(argv, {
    "--only": (v, n) => (o.only = oneOf(v(), n, ["get", "latency"] as const)),
    "--sizes": (v, n) => (o.sizes = list(v(), (x) => int(x, n))),
    "--calls": (v, n) => (o.calls = int(v(), n)),
    "--warmup": (v, n) => (o.warmup = int(v(), n, 0)),
    "--min-intervals": (v, n) => (o.latency.intervalsMs = list(v(), (x) => interval(x, n))),
    "--latency-rate": (v, n) => (o.latency.rate = int(v(), n, 1, 5000)),
    "--latency-duration": (v, n) => (o.latency.durationS = int(v(), n, 1, 120)),
    "--latency-stored": (v, n) => (o.latency.stored = int(v(), n, 0)),
    "--sparse": (v, n) => (o.latency.sparse = int(v(), n, 0, 1000)),
    "--json": (v) => (o.json = v()),
  });
  return o;
}

const NOW = new Date("2026-11-27T12:00:00Z").getTime();
const SPAN_MS = 7 * 24 * 3600_000;
const ACTIVE_MS = 30 * 60_000;
const ONLINE_SINCE = new Date(NOW - 5 * 60_000);
const PROFILE = "bench-profile";

const CHANNELS = ["web", "app", "email"];
const DEVICES = ["mobile", "desktop", "tablet", null];
const OSES = ["iOS", "Android", "Windows", "macOS", "Linux", "Other"];
const APPS = ["Chrome", "Safari", "Firefox", "Edge", "Mobile Safari", "Samsung Internet", "Opera", "App"];
const COUNTRIES = [...Array.from({ length: 30 }, (_, i) => String.fromCharCode(65 + (i % 26), 65 + ((i * 7) % 26))), null];
const SOURCES = ["google", "news", "newsletter", "facebook", "x", "linkedin", "partner", "ads", "direct", null];

const pick = <T>(xs: readonly T[], i: number, salt: number): T => xs[(i * salt + (i >> 3)) % xs.length];

/** The i-th of n sessions, inserted evenly over the span before NOW. */
function sessionAt(i: number, n: number): SessionDoc {
  const insert = NOW - SPAN_MS + Math.floor(((i + 1) * SPAN_MS) / n);
  const doc = emptySessionDoc(randomUUID(), new Date(insert));
  const m = doc.metadata;
  m.channel = pick(CHANNELS, i, 1);
  m.status = insert > NOW - ACTIVE_MS ? STATUS_ACTIVE : STATUS_ENDED;
  m.time.update = new Date(Math.min(NOW, insert + 60_000 * (i % 20)));
  doc.profile = { id: i % 1000 === 0 ? PROFILE : randomUUID(), primary_id: null, metadata: null };
  doc.context = { ip: "203.0.113.24", referrer: "https://news.example/spring-sale" };
  doc.properties = { cart_value: 129.9, currency: "EUR", items: 3, logged_in: true };
  doc.os = { name: pick(OSES, i, 7), version: "17.4" };
  doc.device.type = pick(DEVICES, i, 5);
  doc.device.geo.country.code = pick(COUNTRIES, i, 11);
  doc.app = { type: "browser", name: pick(APPS, i, 13), version: "17.4", language: "en-US", bot: false, resolution: "390x844" };
  doc.utm = { source: pick(SOURCES, i, 3), medium: "email", campaign: "spring", term: null, content: null };
  doc.activity = { page_views: 1 + (i % 9), entry_page: "https://shop.example/", exit_page: "https://shop.example/", end_reason: "" };
  return doc;
}

async function fill(store: SqliteSessionStore, count: number): Promise<void> {
  const BURST = 1000;
  for (let n = 0; n < count;) {
    const burst: Promise<unknown>[] = [];
    for (let i = 0; i < BURST && n < count; i++, n++) burst.push(store.create(sessionAt(n, count)));
    await Promise.all(burst);
  }
}

const GROUPS: Array<StatsField | undefined> = [
  undefined,
  "channel",
  "status",
  "device_type",
  "os_name",
  "app_name",
  "country_code",
  "utm_source",
];

/** The queries timed: [label, is a group_by case (the target), query]. */
function queries(): Array<[string, boolean, StatsQuery]> {
  const q: Array<[string, boolean, StatsQuery]> = GROUPS.map((g) => [
    `group_by ${g ?? "(none)"}`,
    true,
    { groupBy: g, onlineSince: ONLINE_SINCE },
  ]);
  const os: StatsQuery = { groupBy: "os_name", onlineSince: ONLINE_SINCE };
  q.push(["os_name, status=active", false, { ...os, status: STATUS_ACTIVE }]);
  q.push(["os_name, channel=web", false, { ...os, channel: "web" }]);
  q.push(["os_name, since 90 min", false, { ...os, insertFrom: new Date(NOW - 90 * 60_000) }]);
  q.push(["os_name, since 25 min", false, { ...os, insertFrom: new Date(NOW - 25 * 60_000) }]);
  q.push(["os_name, since 3 days", false, { ...os, insertFrom: new Date(NOW - 3 * 24 * 3600_000 - 17 * 60_000) }]);
  q.push(["os_name, profile", false, { ...os, profileId: PROFILE }]);
  return q;
}

interface SizeResult {
  stored: number;
  fillSeconds: number;
  dbBytes: number;
  queries: Record<string, Dist>;
}

async function measure(stored: number, o: Options): Promise<SizeResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stats-bench-"));
  const store = SqliteSessionStore.open(dir);
  try {
    const t0 = Date.now();
    await fill(store, stored);
    const fillSeconds = (Date.now() - t0) / 1000;
    const dbBytes = fs.readdirSync(dir).reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0);
    process.stdout.write(`  ${stored} sessions stored in ${fillSeconds.toFixed(1)} s (${(dbBytes / 1e6).toFixed(0)} MB)\n`);
    const result: SizeResult = { stored, fillSeconds, dbBytes, queries: {} };
    for (const [label, , query] of queries()) {
      const check = await store.stats(query);
      if (check.total <= 0) throw new Error(`${label}: no sessions counted`);
      for (let i = 0; i < o.warmup; i++) await store.stats(query);
      const samples: number[] = [];
      for (let i = 0; i < o.calls; i++) {
        const start = process.hrtime.bigint();
        await store.stats(query);
        samples.push(Number(process.hrtime.bigint() - start) / 1e6);
      }
      result.queries[label] = dist(samples);
    }
    return result;
  } finally {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Fills a fresh store in `dir` with `n` sessions of the data set above (the service opens it next). */
async function seed(dir: string, n: number): Promise<void> {
  const store = SqliteSessionStore.open(dir);
  try {
    await fill(store, n);
  } finally {
    await store.close();
  }
}

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  console.log(
    `bench:stats: node ${process.version}, ${os.cpus().length} cores, load average ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")}`,
  );
  const get = o.only === "latency" ? undefined : await getStats(o);
  let latency: LatencyResult | undefined;
  if (o.only !== "get") {
    console.log(`\nWatchSessionStats update latency (the built service, ${o.latency.rate} changes/s):`);
    latency = await latencyBench(o.latency, seed);
    console.log("\n" + renderLatency(latency));
  }
  if (o.json) writeJson(o.json, { get, latency });
  return 0;
}

async function getStats(o: Options): Promise<SizeResult[]> {
  const sizes = [...o.sizes].sort((a, b) => a - b);
  console.log(`GetSessionStats on the embedded SQLite store (store.stats), ${o.calls} calls per query:`);
  const results: SizeResult[] = [];
  for (const size of sizes) results.push(await measure(size, o));
  const first = results[0];
  const last = results[results.length - 1];
  const head = [
    "query",
    ...results.flatMap((r) => [`p50 ${r.stored}`, `p99 ${r.stored}`]),
    `p50 ${last.stored}/${first.stored}`,
    `p99 ${last.stored}/${first.stored}`,
  ];
  const rows = queries().map(([label]) => [
    label,
    ...results.flatMap((r) => [ms(r.queries[label].p50), ms(r.queries[label].p99)]),
    ratio(last.queries[label].p50, first.queries[label].p50),
    ratio(last.queries[label].p99, first.queries[label].p99),
  ]);
  console.log("\nlatency in ms:\n" + table(head, rows));
  const target = queries().filter(([, isGroup]) => isGroup);
  const worst = Math.max(...target.map(([label]) => last.queries[label].p99));
  const flat50 = Math.max(...target.map(([label]) => last.queries[label].p50 / first.queries[label].p50));
  const flat99 = Math.max(...target.map(([label]) => last.queries[label].p99 / first.queries[label].p99));
  console.log(
    `\ngroup_by cases at ${last.stored} stored: worst p99 ${ms(worst)} ms (target < 50 ms: ${worst < 50 ? "met" : "MISSED"}); ` +
      `largest ratio ${last.stored}/${first.stored}: p50 ${flat50.toFixed(2)}x, p99 ${flat99.toFixed(2)}x`,
  );
  return results;
}

runMain("bench:stats", main);
