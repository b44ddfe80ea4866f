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
// The store runs its SQLite work on worker threads (src/store/sqlite/index.ts): "main-thread CPU" is
// what a create costs the event loop (posting the call, taking the answer), "process CPU" adds
// the writer thread's work. Measured 2026-12-01 on the shared 2-core machine, 30,000 creates in
// bursts of 25, median of 3: before the threads main-thread 19.3 us, process 23.6 us, wall
// 22.3 us; with them main-thread 7.3 us, process 37.2 us, wall 35.4 us.
//
// Options: --count N (creates, default 100000), --batch N (default 25), --rounds N (default 3;
// every round uses a fresh data directory, the median is printed), --ids v7|random (UUIDv7 as
// the service makes them, default; or random UUIDv4s, as it made them before; "ordered" is an
// alias of v7), --no-visits (creates without visit numbering; the service numbers every create
// with a profile, as here by default: all in the bench's one profile), --keep (leave the data
// dirs).

import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { create } from "@bufbuild/protobuf";
import { CreateSessionRequestSchema } from "../gen/session/v1/session_service_pb";
import { newSessionId, Sessions } from "../src/domain/sessions";
import type { SessionDoc } from "../src/domain/session";
import { sessionToDoc } from "../src/rpc/convert";
import type { SessionStore } from "../src/domain/store";
import { SqliteSessionStore } from "../src/store/sqlite";
import { BENCH_PAGE_URL, BENCH_SESSION, BENCH_USER_AGENT } from "./requests";

interface Options {
  count: number;
  batch: number;
  rounds: number;
  ids: "random" | "v7";
  visits: boolean;
  keep: boolean;
}

function parseOptions(argv: string[]): Options {
  const o: Options = { count: 100_000, batch: 25, rounds: 3, ids: "v7", visits: true, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const int = (): number => {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${a}: expected a positive whole number`);
      return n;
    };
    if (a === "--count") o.count = int();
    else if (a === "--batch") o.batch = int();
    else if (a === "--rounds") o.rounds = int();
    else if (a === "--ids") {
      const v = argv[++i];
      if (v !== "random" && v !== "v7" && v !== "ordered") throw new Error("--ids: expected v7 or random");
      o.ids = v === "random" ? "random" : "v7";
    } else if (a === "--no-visits") o.visits = false;
    else if (a === "--keep") o.keep = true;
    else throw new Error(`unknown option ${a}`);
  }
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

/** CPU time of the calling thread in µs, from /proc/thread-self/stat (Linux), else NaN. */
function threadCpuUs(): number {
  try {
    const stat = fs.readFileSync("/proc/thread-self/stat", "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of the line, in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return NaN;
  }
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
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const wall = rounds.map((r) => r.wallUs);
  const main = rounds.map((r) => r.mainCpuUs);
  console.log(
    `store create, ${o.count} creates (${o.ids} ids, ${o.visits ? "with" : "without"} visit numbering) in bursts of ${o.batch}, per create (median / min of ${o.rounds}): ` +
      `wall ${median(wall).toFixed(1)} / ${Math.min(...wall).toFixed(1)} us, ` +
      `main-thread CPU ${median(main).toFixed(1)} / ${Math.min(...main).toFixed(1)} us, ` +
      `process CPU ${median(rounds.map((r) => r.cpuUs)).toFixed(1)} us, ${median(rounds.map((r) => r.bytes)).toFixed(0)} bytes on disk`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
