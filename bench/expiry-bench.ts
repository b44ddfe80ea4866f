// `npm run bench:expiry` (and the last part of `npm run bench`): how long one expiry pass
// (Lifecycle.expire) takes on the embedded SQLite store with 100k and 1M stored sessions of
// which the same number are due, and (on the smallest) with ten times as many due. The ratios show whether the
// pass costs what the due sessions cost (flat in the stored count, proportional to the due count)
// or what a scan of every session would. Baseline in the same run: the smallest store's pass.
//
// Each configuration: a fresh store filled through the store port (creates in bursts sharing a
// group commit), with the bench's realistic session; due sessions were inserted 2 hours before
// "now", the others 5 minutes before (idle timeout 30 minutes). Then --rounds passes, each after
// inserting a fresh set of due sessions; the median pass time is printed.
//
// Options: --sizes 100000,1000000 (stored sessions), --due N (default 1000), --rounds N
// (default 3), --json FILE.

import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { Lifecycle } from "../src/domain/lifecycle";
import { emptySessionDoc, type SessionDoc } from "../src/domain/session";
import { SqliteSessionStore } from "../src/store/sqlite";
import { int, list, parseArgs } from "./lib/options";
import { runMain } from "./lib/processes";
import { upperMedian } from "./lib/stats";
import { ratio, writeJson } from "./lib/table";

interface Options {
  sizes: number[];
  due: number;
  rounds: number;
  json?: string;
}

function parseOptions(argv: string[]): Options {
  const o: Options = { sizes: [100_000, 1_000_000], due: 1000, rounds: 3 };
  parseArgs(argv, {
    "--sizes": (v, n) => (o.sizes = list(v(), (x) => int(x, n))),
    "--due": (v, n) => (o.due = int(v(), n)),
    "--rounds": (v, n) => (o.rounds = int(v(), n)),
    "--json": (v) => (o.json = v()),
  });
  return o;
}

const IDLE_MS = 30 * 60_000;
const NOW = new Date("2026-11-27T12:00:00Z");
const DUE_INSERT = new Date(NOW.getTime() - 2 * 3600_000);
const FRESH_INSERT = new Date(NOW.getTime() - 5 * 60_000);

/** A session shaped like the bench's CreateSession result (bench.ts), inserted at `insert`. */
function sessionAt(insert: Date): SessionDoc {
  const doc = emptySessionDoc(randomUUID(), insert);
  doc.metadata.channel = "web";
  doc.profile = { id: randomUUID(), primary_id: null, metadata: null };
  doc.context = { ip: "203.0.113.24", referrer: "https://news.example/spring-sale" };
  doc.properties = { cart_value: 129.9, currency: "EUR", items: 3, logged_in: true };
  doc.os = { name: "iOS", version: "17.4" };
  doc.device.type = "mobile";
  doc.app = { type: "browser", name: "Mobile Safari", version: "17.4", language: "en-US", bot: false, resolution: "390x844" };
  doc.utm = { source: "news", medium: "email", campaign: "spring", term: null, content: null };
  doc.activity = { page_views: 1, entry_page: "https://shop.example/", exit_page: "https://shop.example/", end_reason: "" };
  return doc;
}

async function fill(store: SqliteSessionStore, count: number, insert: Date): Promise<void> {
  const BURST = 1000;
  for (let n = 0; n < count;) {
    const burst: Promise<unknown>[] = [];
    for (let i = 0; i < BURST && n < count; i++, n++) burst.push(store.create(sessionAt(insert)));
    await Promise.all(burst);
  }
}

interface Result {
  stored: number;
  due: number;
  passMs: number[];
  medianMs: number;
}

async function measure(stored: number, due: number, rounds: number): Promise<Result> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "expiry-bench-"));
  const store = SqliteSessionStore.open(dir);
  try {
    const t0 = Date.now();
    await fill(store, stored, FRESH_INSERT);
    process.stdout.write(`  filled ${stored} sessions in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    const lifecycle = new Lifecycle(store, { idleMs: IDLE_MS }, { now: () => NOW });
    const passMs: number[] = [];
    for (let r = 0; r < rounds; r++) {
      await fill(store, due, DUE_INSERT);
      const start = process.hrtime.bigint();
      const pass = await lifecycle.expire(NOW);
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (pass.ended !== due) throw new Error(`expected ${due} sessions to end, the pass ended ${pass.ended}`);
      passMs.push(ms);
    }
    return { stored, due, passMs, medianMs: upperMedian(passMs) };
  } finally {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const sizes = [...o.sizes].sort((a, b) => a - b);
  console.log(`expiry pass on the embedded SQLite store (idle timeout 30 min), ${o.rounds} rounds per line, median:`);
  const results: Result[] = [];
  for (const size of sizes) {
    // Ten times as many due sessions on the smallest store only (what grows with the due count).
    for (const due of size === sizes[0] ? [o.due, o.due * 10] : [o.due]) {
      if (due > size) continue;
      const r = await measure(size, due, o.rounds);
      results.push(r);
      console.log(
        `  ${String(size).padStart(9)} stored, ${String(due).padStart(6)} due: pass ${r.medianMs.toFixed(1)} ms (${((r.medianMs / due) * 1000).toFixed(1)} us per ended session; rounds ${r.passMs.map((x) => x.toFixed(0)).join(", ")} ms)`,
      );
    }
  }
  const base = results.find((r) => r.stored === sizes[0] && r.due === o.due)!;
  console.log(`ratios against the baseline (${base.stored} stored, ${base.due} due, ${base.medianMs.toFixed(1)} ms):`);
  for (const r of results) {
    console.log(
      `  ${String(r.stored).padStart(9)} stored, ${String(r.due).padStart(6)} due: ${ratio(r.medianMs, base.medianMs)}  (stored ${(r.stored / base.stored).toFixed(0)}x, due ${(r.due / base.due).toFixed(0)}x)`,
    );
  }
  if (o.json) writeJson(o.json, results);
}

runMain("bench:expiry", main);
