// `node dist/bench/store-bench.js`: the embedded SQLite store's create path alone, without
// gRPC, protobuf or the domain. It measures what a CreateSession call costs the event loop in
// the store, which the end-to-end bench (bench.ts) can only show as a share of a noisy profile.
//
// It builds the bench's realistic session once (the same request as bench.ts, converted and
// enriched by the real domain code), then issues creates in bursts of --batch calls that share
// one group commit (as concurrent RPCs do: under `npm run bench` most commits hold 10-50 writes),
// and reports per create: the event loop's wall time, the process's CPU time, and the bytes the
// database and WAL grew by.
//
// The store runs its SQLite work on worker threads (src/store/sqlite/): "main-thread CPU" is
// what a create costs the event loop (posting the call, taking the answer), "process CPU" adds
// the writer thread's work.
//
// Options: --count N (creates, default 100000), --batch N (default 25), --rounds N (default 3;
// every round uses a fresh data directory, the median is printed), --ids v7|random (UUIDv7 as
// the service makes them, default; or random UUIDv4s; "ordered" is an alias of v7), --no-visits (creates without visit numbering; the service numbers every create
// with a profile, as here by default: all in the bench's one profile), --keep (leave the data
// dirs), --json FILE (the rounds and medians as JSON).

import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { create } from "@bufbuild/protobuf";
import { CreateSessionRequestSchema } from "../gen/session/v1/session_service_pb";
import { newSessionId } from "../src/domain/ids";
import { Sessions } from "../src/domain/sessions";
import type { SessionDoc } from "../src/domain/session";
import { sessionToDoc } from "../src/rpc/convert";
import type { SessionStore } from "../src/domain/store";
import { SqliteSessionStore } from "../src/store/sqlite";
import { threadCpuUs } from "./lib/cpu";
import { int, oneOf, parseArgs } from "./lib/options";
import { runMain } from "./lib/processes";
import { upperMedian } from "./lib/stats";
import { writeJson } from "./lib/table";
import { BENCH_PAGE_URL, BENCH_SESSION, BENCH_USER_AGENT } from "./requests";

interface Options {
  count: number;
  batch: number;
  rounds: number;
  ids: "random" | "v7";
  visits: boolean;
  keep: boolean;
  json?: string;
}

function parseOptions(argv: string[]): Options {
  const o: Options = { count: 100_000, batch: 25, rounds: 3, ids: "v7", visits: true, keep: false };
  parseArgs(argv, {
    "--count": (v, n) => (o.count = int(v(), n)),
    "--batch": (v, n) => (o.batch = int(v(), n)),
    "--rounds": (v, n) => (o.rounds = int(v(), n)),
    "--ids": (v, n) => (o.ids = oneOf(v(), n, ["v7", "random", "ordered"] as const) === "random" ? "random" : "v7"),
    "--no-visits": () => (o.visits = false),
    "--keep": () => (o.keep = true),
    "--json": (v) => (o.json = v()),
  });
  return o;
}

/** The document CreateSession hands to the store for the bench's request (bench.ts). */
async function benchDoc(): Promise<SessionDoc> {
  const req = create(CreateSessionRequestSchema, { session: BENCH_SESSION, userAgent: BENCH_USER_AGENT, pageUrl: BENCH_PAGE_URL });
  let captured: SessionDoc | undefined;
  const capture = {
    create: async (doc: SessionDoc) => {
      captured = doc;
      return { session: doc, created: true };
    },
  } as unknown as SessionStore;
  await new Sessions(capture).create({ session: sessionToDoc(req.session), userAgent: req.userAgent, pageUrl: req.pageUrl, requestId: "" });
  return captured!;
}

interface Round {
  wallUs: number;
  /** CPU time of the whole process (all threads). */
  cpuUs: number;
  /** CPU time of the main thread (the event loop) alone; NaN where /proc is missing. */
  mainCpuUs: number;
  bytes: number;
}

function dirBytes(dir: string): number {
  return fs.readdirSync(dir).reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0);
}

async function round(template: SessionDoc, o: Options): Promise<Round> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "store-bench-"));
  const store = SqliteSessionStore.open(dir);
  let n = 0;
  const cpu0 = process.cpuUsage();
  const main0 = threadCpuUs();
  const t0 = process.hrtime.bigint();
  while (n < o.count) {
    const burst: Promise<unknown>[] = [];
    for (let i = 0; i < o.batch && n < o.count; i++, n++) {
      // A fresh document per call, as the RPC edge converts one per request.
      const id = o.ids === "random" ? randomUUID() : newSessionId();
      const doc = { ...template, id };
      burst.push(store.create(doc, o.visits ? { numberVisitIn: template.profile!.id } : {}));
    }
    await Promise.all(burst);
  }
  const wallUs = Number(process.hrtime.bigint() - t0) / 1000 / o.count;
  const cpu = process.cpuUsage(cpu0);
  const mainCpuUs = (threadCpuUs() - main0) / o.count;
  await store.close();
  const bytes = dirBytes(dir) / o.count;
  if (o.keep) console.log(`kept ${dir}`);
  else fs.rmSync(dir, { recursive: true, force: true });
  return { wallUs, cpuUs: (cpu.user + cpu.system) / o.count, mainCpuUs, bytes };
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const template = await benchDoc();
  const rounds: Round[] = [];
  for (let r = 0; r < o.rounds; r++) {
    const res = await round(template, o);
    rounds.push(res);
    console.log(
      `round ${r + 1}: ${res.wallUs.toFixed(1)} us wall, ${res.mainCpuUs.toFixed(1)} us CPU of the main thread, ` +
        `${res.cpuUs.toFixed(1)} us CPU of the process, ${res.bytes.toFixed(0)} bytes on disk per create`,
    );
  }
  const wall = rounds.map((r) => r.wallUs);
  const main = rounds.map((r) => r.mainCpuUs);
  console.log(
    `store create, ${o.count} creates (${o.ids} ids, ${o.visits ? "with" : "without"} visit numbering) in bursts of ${o.batch}, per create (median / min of ${o.rounds}): ` +
      `wall ${upperMedian(wall).toFixed(1)} / ${Math.min(...wall).toFixed(1)} us, ` +
      `main-thread CPU ${upperMedian(main).toFixed(1)} / ${Math.min(...main).toFixed(1)} us, ` +
      `process CPU ${upperMedian(rounds.map((r) => r.cpuUs)).toFixed(1)} us, ${upperMedian(rounds.map((r) => r.bytes)).toFixed(0)} bytes on disk`,
  );
  if (o.json) {
    const med = (k: keyof Round): number => upperMedian(rounds.map((r) => r[k]));
    writeJson(o.json, {
      date: new Date().toISOString(),
      options: o,
      rounds,
      median: { wallUs: med("wallUs"), mainCpuUs: med("mainCpuUs"), cpuUs: med("cpuUs"), bytes: med("bytes") },
    });
  }
}

runMain("store-bench", main);
