// `npm run bench:watch`: WatchSessions delivery latency and memory per watcher.
//
// Two service replicas (bench/watch-server.ts, each its own Node process) share one database:
// the embedded SQLite store (one DATA_DIR, several processes on one file) and, when it works,
// the MongoDB store on a private FerretDB (scripts/ferretdb.sh). A writer (in this process)
// updates a fixed set of sessions through replica A's gRPC API at a fixed rate (open loop: a
// write is issued every 1/rate s whatever the answers do) and records the ack time and the
// revision of every write. Watchers (grpc-js, in --client-procs processes of
// bench/watch-client.ts, over --channels HTTP/2 connections each) record the receipt time of
// every change. Delivery latency = receipt at the watcher - ack at the writer, per delivery,
// measured on the writing replica (A) and on the other replica (B), one replica at a time.
// All processes use process.hrtime (CLOCK_MONOTONIC, one clock for the whole machine).
//
// Workload (defaults): 1000 sessions in 100 profiles (10 each), updated round-robin at
// 200 changes/s (UpdateSession of `properties`). A watcher watches one profile (watcher i:
// profile i mod 100), so with 100 watchers a change goes to 1 watcher and with 1000 to 10
// (200 and 2000 deliveries/s). An extra run with --unfiltered N watchers without a filter
// (every change to every watcher: N x 200 deliveries/s) shows the fan-out cost.
//
// Per store the phases are: seed, write capacity (closed loop, 8 writers, 3 s), warm-up (writes,
// then a few watchers on each replica), baseline (the writer alone at the fixed rate, no watcher
// anywhere), then for each watcher count and replica:
// open N watchers, wait until the replica's feed counts N, measure idle RSS (after a full GC),
// write for --duration, wait until every expected delivery arrived (at most 10 s), close.
// RSS per watcher = (RSS with N idle watchers - RSS just before they opened) / N.
// A store whose capacity is below 1.25x --rate is measured at a lower rate (at most a quarter
// of its capacity) with the target's 1000 watchers only, and its latency targets print MISS.
// CPU of every bench process is accounted; "other" is the rest of the machine (not this bench).
//
// Options (npm run bench:watch -- --duration 8 ...):
//   --stores LIST       sqlite,mongodb (default both; mongodb runs on a private FerretDB)
//   --watchers LIST     watcher counts (default 100,1000)
//   --replicas LIST     A,B (default both: A = the writing replica, B = the other one)
//   --unfiltered N      extra run with N unfiltered watchers per replica (default 100; 0 = none)
//   --duration S        seconds of writes per measured run (default 8)
//   --rate R            changes per second (default 200)
//   --sessions N        sessions updated round-robin (default 1000)
//   --profiles N        profiles the sessions and watcher filters are spread over (default 100)
//   --client-procs N    watcher client processes (default 2)
//   --channels N        grpc-js channels (HTTP/2 connections) per client process (default 8)
//   --poll-ms N         WATCH_POLL_INTERVAL (ms) of the replicas (default: the service's default, 100)
//   --cpu-prof A|B      run that replica under node --cpu-prof; prints its top frames at the end
//   --baseline DIR      also run the replicas of another built checkout (DIR/dist) on their own
//                       database, in the same phases (each run: this build, then that one), and
//                       print its figures beside ours: an A/B comparison on one machine state
//   --json FILE         also write every result as JSON

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { grpcClient } from "../test/support/clients";
import { backgroundCpu, CORES } from "./lib/cpu";
import { baselineDir, int, list, oneOf, parseArgs } from "./lib/options";
import { REPO, runMain, sleep, startFerret, stopFerret, tempDir } from "./lib/processes";
import { dist } from "./lib/stats";
import { writeJson } from "./lib/table";
import { formatSummary, summarize } from "./profile-summary";
import { render, TARGET_WATCHERS } from "./watch-report";
import {
  capacityProbe,
  closeWatchers,
  cpuShare,
  cpuSnap,
  cpuText,
  log,
  measureWatch,
  openWatchers,
  profileName,
  runWriter,
  Server,
  sessionId,
  WatchClient,
  type Replica,
  type Side,
  type StoreKind,
  type StoreResult,
} from "./watch-replicas";

interface Options {
  stores: StoreKind[];
  watchers: number[];
  replicas: Replica[];
  unfiltered: number;
  durationS: number;
  rate: number;
  sessions: number;
  profiles: number;
  clientProcs: number;
  channels: number;
  pollMs?: number;
  cpuProf?: Replica;
  baseline?: string;
  json?: string;
}

function parseOptions(argv: string[]): Options {
  const o: Options = {
    stores: ["sqlite", "mongodb"],
    watchers: [100, 1000],
    replicas: ["A", "B"],
    unfiltered: 100,
    durationS: 8,
    rate: 200,
    sessions: 1000,
    profiles: 100,
    clientProcs: 2,
    channels: 8,
  };
  const n = (v: string, name: string, min = 1): number => int(v, name, min, 1_000_000);
  const replica = (v: string, name: string): Replica => oneOf(v, name, ["A", "B"] as const);
  parseArgs(argv, {
    "--stores": (v, a) => (o.stores = list(v(), (s) => oneOf(s, a, ["sqlite", "mongodb"] as const))),
    "--watchers": (v, a) => (o.watchers = list(v(), (s) => n(s, a))),
    "--replicas": (v, a) => (o.replicas = list(v(), (s) => replica(s, a))),
    "--unfiltered": (v, a) => (o.unfiltered = n(v(), a, 0)),
    "--duration": (v, a) => (o.durationS = n(v(), a)),
    "--rate": (v, a) => (o.rate = n(v(), a)),
    "--sessions": (v, a) => (o.sessions = n(v(), a)),
    "--profiles": (v, a) => (o.profiles = n(v(), a)),
    "--client-procs": (v, a) => (o.clientProcs = n(v(), a)),
    "--channels": (v, a) => (o.channels = n(v(), a)),
    "--poll-ms": (v, a) => (o.pollMs = n(v(), a, 5)),
    "--cpu-prof": (v, a) => (o.cpuProf = replica(v(), a)),
    "--baseline": (v) => (o.baseline = baselineDir(v(), "watch-server.js")),
    "--json": (v) => (o.json = v()),
  });
  if (o.durationS > 60) throw new Error("--duration: at most 60 s");
  return o;
}

const loadText = (l: number[]): string => l.map((x) => x.toFixed(2)).join(" / ");

// ---------------------------------------------------------------------------------------------
// One store

/** The replicas' environment per build (each build its own data dir or database), and FerretDB. */
function startStore(
  store: StoreKind,
  o: Options,
): { envFor: (build: string) => NodeJS.ProcessEnv; describe: string; dbPid?: number; ferretDir?: string } {
  const env: NodeJS.ProcessEnv = { BENCH_LOG_LEVEL: "warn" };
  if (o.pollMs !== undefined) env.BENCH_WATCH_POLL_MS = String(o.pollMs);
  if (store === "sqlite") {
    const dir = tempDir("session-watch-bench-sqlite-");
    const dataDir = (build: string): string => (build ? fs.mkdtempSync(path.join(dir, "baseline-")) : dir);
    return {
      envFor: (build) => ({ ...env, BENCH_DATA_DIR: dataDir(build) }),
      describe: `embedded SQLite, one DATA_DIR shared by both replicas (${dir})`,
    };
  }
  const dir = tempDir("session-watch-bench-ferret-");
  const { uri, pid } = startFerret(dir);
  return {
    envFor: (build) => ({ ...env, BENCH_MONGODB_URI: uri, BENCH_MONGODB_DB: build ? "watchbench_baseline" : "watchbench" }),
    dbPid: pid,
    ferretDir: dir,
    describe: `MongoDB store on FerretDB (${uri}, SQLite backend), one database shared by both replicas`,
  };
}

/** Starts one build's replicas (A first: it creates the schema), seeds the sessions. */
async function startSide(
  store: StoreKind,
  build: string,
  repo: string,
  env: NodeJS.ProcessEnv,
  dbPid: number | undefined,
  o: Options,
  profDirs: Map<string, string>,
): Promise<Side> {
  const argsFor = (r: Replica): string[] => {
    if (o.cpuProf !== r) return [];
    const d = fs.mkdtempSync(path.join(os.tmpdir(), `session-watch-profile-${store}${build ? "-baseline" : ""}-${r}-`));
    profDirs.set(build, d);
    return ["--cpu-prof", "--cpu-prof-dir", d];
  };
  const tag = build ? " (baseline)" : "";
  const A = await Server.start(`replica A${tag}`, repo, env, argsFor("A"));
  const B = await Server.start(`replica B${tag}`, repo, env, argsFor("B"));
  const side: Side = { store, build, servers: { A, B }, writer: grpcClient(A.port), seq: { k: 0 }, dbPid };
  // Seed: the sessions, spread over the profiles (concurrency 50).
  const t0 = Date.now();
  for (let s = 0; s < o.sessions; s += 50) {
    const batch: Promise<unknown>[] = [];
    for (let j = s; j < Math.min(o.sessions, s + 50); j++) {
      batch.push(
        side.writer.createSession(
          {
            session: {
              id: sessionId(j),
              profile: { id: profileName(j % o.profiles) },
              metadata: { channel: "web" },
              properties: { n: -1 },
            },
          },
          { timeoutMs: 30_000 },
        ),
      );
    }
    await Promise.all(batch);
  }
  log(`  seeded ${o.sessions} sessions in ${o.profiles} profiles in ${Date.now() - t0} ms${tag}`);
  return side;
}

async function benchStore(store: StoreKind, o: Options, clients: WatchClient[], tmp: string): Promise<StoreResult[]> {
  const { envFor, describe, dbPid, ferretDir } = startStore(store, o);
  log(`\n== ${store}: ${describe}`);
  const builds: { build: string; repo: string }[] = [{ build: "", repo: REPO }];
  if (o.baseline) builds.push({ build: "baseline", repo: o.baseline });
  const profDirs = new Map<string, string>();
  const sides: Side[] = [];
  const results = new Map<string, StoreResult>(builds.map((b) => [b.build, { store, build: b.build ? o.baseline : undefined, runs: [] }]));
  try {
    for (const b of builds) sides.push(await startSide(store, b.build, b.repo, envFor(b.build), dbPid, o, profDirs));

    // The write path's capacity decides the rate: the requested one when the store takes at
    // least 1.25x it, else a lower one from a fixed ladder (at most a quarter of the capacity:
    // the watchers' feeds read the same store, and a store whose writes slow down as its change
    // log grows needs the headroom). With --baseline both builds run at the lower of their rates.
    let rate = o.rate;
    for (const side of sides) {
      const cap = await capacityProbe(side.writer, o, 8, 3, side.seq);
      results.get(side.build)!.capacity = cap.rate;
      const r = cap.rate >= o.rate * 1.25 ? o.rate : Math.max(1, [100, 50, 20, 10, 5, 2].find((x) => x < o.rate && x <= cap.rate / 4) ?? 1);
      rate = Math.min(rate, r);
      log(
        `  write capacity${side.build ? " (baseline)" : ""} (closed loop, 8 concurrent UpdateSession, 3 s): ${cap.rate.toFixed(0)} changes/s, ack p50 ${cap.ack.p50.toFixed(2)} ms p99 ${cap.ack.p99.toFixed(2)} ms` +
          `${cap.errors ? `, ${cap.errors} errors` : ""}` +
          `${r !== o.rate ? `; too slow for ${o.rate}/s: measuring at ${r} changes/s` : ""}`,
      );
    }
    for (const r of results.values()) r.rate = rate;

    // Warm-up: writes alone, then a few watchers on each replica while writing.
    await sleep(1000);
    for (const side of sides) {
      const w0 = await runWriter(side.writer, o, rate, 2, side.seq);
      if (w0.errors > 0) throw new Error(`warm-up writes failed: ${w0.errors} errors, first: ${w0.firstError}`);
      for (const r of ["A", "B"] as Replica[]) {
        await openWatchers(clients, side.servers[r], 20, true, o);
        await runWriter(side.writer, o, rate, 1, side.seq);
        await closeWatchers(clients, side.servers[r]);
      }
    }

    // Baseline: the write path alone (no watcher open anywhere).
    for (const side of sides) {
      const A = side.servers.A;
      const s0 = await cpuSnap(side.servers, clients, dbPid);
      await A.expect("loop", 10_000, "loop");
      const w = await runWriter(side.writer, o, rate, o.durationS, side.seq);
      const loop = await A.expect("loop", 10_000, "loop");
      const s1 = await cpuSnap(side.servers, clients, dbPid);
      const b = {
        store,
        rate: w.revs.length / w.seconds,
        ack: dist(w.ackLatency),
        errors: w.errors,
        issued: w.issued,
        lateIssues: w.lateIssues,
        cpu: cpuShare(s0, s1, w.seconds),
        loopP99: Number(loop.p99),
      };
      results.get(side.build)!.baseline = b;
      log(
        `  baseline${side.build ? " (baseline build)" : ""} (no watchers): ${b.rate.toFixed(1)} changes/s, ack p50 ${b.ack.p50.toFixed(2)} ms p99 ${b.ack.p99.toFixed(2)} ms, ` +
          `errors ${b.errors}; ${cpuText(b.cpu)}`,
      );
      if (w.errors > 0) log(`  first write error: ${w.firstError}`);
    }

    // A store too slow for the requested rate is a MISS already: only the target's watcher count
    // is measured on it (at the lower rate), to keep the run short.
    const counts = rate === o.rate || !o.watchers.includes(TARGET_WATCHERS) ? o.watchers : [TARGET_WATCHERS];
    const scenarios: { n: number; filtered: boolean }[] = counts.map((n) => ({ n, filtered: true }));
    // The fan-out run only at the requested rate (a store too slow for it is already a MISS).
    if (o.unfiltered > 0 && rate === o.rate) scenarios.push({ n: o.unfiltered, filtered: false });
    for (const { n, filtered } of scenarios) {
      for (const r of o.replicas) {
        for (const side of sides) {
          const run = await measureWatch(side, r, clients, n, filtered, o, rate, tmp);
          results.get(side.build)!.runs.push(run);
          log(
            `  ${String(n).padStart(5)} ${filtered ? "filtered  " : "unfiltered"} watchers on ${r} (${r === "A" ? "same replica " : "cross replica"})${side.build ? " [baseline]" : ""}: ` +
              `p50 ${run.latency.p50.toFixed(2)} ms p99 ${run.latency.p99.toFixed(2)} ms max ${run.latency.max.toFixed(1)} ms ` +
              `(${run.latency.count} deliveries, missing ${run.missing}); from write start p50 ${run.fromSend.p50.toFixed(2)} p99 ${run.fromSend.p99.toFixed(2)} ms; ` +
              `loop delay p99 ${run.loop.p99.toFixed(1)} ms; write ${run.write.rate.toFixed(1)}/s ack p99 ${run.write.ack.p99.toFixed(2)} ms, ` +
              `idle RSS +${run.kbPerWatcher.toFixed(1)} KB/watcher; ${cpuText(run.cpu)}`,
          );
        }
      }
    }
  } finally {
    for (const side of sides) side.writer.close();
    await Promise.all(sides.flatMap((side) => [side.servers.A.stop(), side.servers.B.stop()]));
    // Each store's FerretDB stops as soon as its runs are done.
    if (ferretDir) stopFerret(ferretDir);
  }
  for (const [build, profDir] of profDirs) {
    const file = fs.readdirSync(profDir).find((f) => f.endsWith(".cpuprofile"));
    const full = file && path.join(profDir, file);
    results.get(build)!.profile = full
      ? `${formatSummary(summarize(full), 30)}\nprofile of replica ${o.cpuProf}${build ? " (baseline build)" : ""} (whole run, ${store}): ${full}`
      : `no .cpuprofile written in ${profDir}`;
  }
  return [...results.values()];
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  const started = Date.now();
  log(
    `bench:watch: node ${process.version}, ${CORES} cores (${os.cpus()[0]?.model ?? "?"}), stores ${o.stores.join(", ")}${o.baseline ? `, baseline build ${o.baseline}` : ""}`,
  );
  const background = await backgroundCpu(1500);
  // The load average says how busy the machine was over the last minutes (other test suites and
  // benchmarks share it); the CPU share above is a 1.5 s sample.
  const loadBefore = os.loadavg();
  log(
    `bench:watch: background CPU before start ${background.toFixed(0)}% of one core (other processes), load average ${loadText(loadBefore)}`,
  );
  const tmp = tempDir("session-watch-bench-");
  const clients = [...Array(o.clientProcs).keys()].map((i) => WatchClient.start(i));
  await Promise.all(clients.map((c) => c.ready));
  const results: StoreResult[] = [];
  for (const store of o.stores) {
    try {
      results.push(...(await benchStore(store, o, clients, tmp)));
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      log(`bench:watch: ${store}: ${msg}`);
      results.push({ store, error: msg, runs: [] });
      // A failed store may leave streams open in the clients.
      await Promise.all(clients.map((c) => c.send("closed", { cmd: "close" }).catch(() => undefined)));
    }
  }
  await Promise.all(clients.map((c) => c.stop("")));
  process.stdout.write(render(results, o) + "\n");
  const loadAfter = os.loadavg();
  log(
    `bench:watch: done in ${((Date.now() - started) / 1000).toFixed(0)} s (background CPU before start ${background.toFixed(0)}%; ` +
      `load average before ${loadText(loadBefore)}, after ${loadText(loadAfter)})`,
  );
  if (o.json) {
    writeJson(o.json, {
      date: new Date().toISOString(),
      options: o,
      backgroundCpu: background,
      loadAverage: { before: loadBefore, after: loadAfter },
      machine: { cores: CORES, cpu: os.cpus()[0]?.model, node: process.version },
      results,
    });
  }
  return results.every((r) => !r.error) ? 0 : 1;
}

runMain("bench:watch", main);
