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
//   --poll-ms N         WATCH_POLL_MS of the replicas (default: the service's default, 100)
//   --cpu-prof A|B      run that replica under node --cpu-prof; prints its top frames at the end
//   --json FILE         also write every result as JSON

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import { formatSummary, summarize } from "./profile-summary";
import type { Stats } from "./child";
import { grpcClient, type SessionClient } from "../test/support/clients";

const REPO = path.resolve(__dirname, "..", "..");
const DIST_BENCH = __dirname;
const CORES = os.cpus().length;
const TARGET_SAME_P99_MS = 50;
const TARGET_CROSS_P99_MS = 250;
const TARGET_KB_PER_WATCHER = 50;
const TARGET_WATCHERS = 1000;
const DRAIN_TIMEOUT_MS = 10_000;

type StoreKind = "sqlite" | "mongodb";
type Replica = "A" | "B";

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
  const int = (v: string, name: string, min = 1): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > 1_000_000) throw new Error(`${name}: expected a whole number >= ${min}, got ${JSON.stringify(v)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    switch (a) {
      case "--stores":
        o.stores = next().split(",").map((s) => {
          if (s !== "sqlite" && s !== "mongodb") throw new Error(`--stores: expected sqlite and/or mongodb, got ${s}`);
          return s;
        });
        break;
      case "--watchers": o.watchers = next().split(",").map((s) => int(s, a)); break;
      case "--replicas":
        o.replicas = next().split(",").map((s) => {
          if (s !== "A" && s !== "B") throw new Error(`--replicas: expected A and/or B, got ${s}`);
          return s;
        });
        break;
      case "--unfiltered": o.unfiltered = int(next(), a, 0); break;
      case "--duration": o.durationS = int(next(), a); break;
      case "--rate": o.rate = int(next(), a); break;
      case "--sessions": o.sessions = int(next(), a); break;
      case "--profiles": o.profiles = int(next(), a); break;
      case "--client-procs": o.clientProcs = int(next(), a); break;
      case "--channels": o.channels = int(next(), a); break;
      case "--poll-ms": o.pollMs = int(next(), a, 5); break;
      case "--cpu-prof": {
        const r = next();
        if (r !== "A" && r !== "B") throw new Error("--cpu-prof: expected A or B");
        o.cpuProf = r;
        break;
      }
      case "--json": o.json = next(); break;
      default:
        throw new Error(`unknown option ${a}`);
    }
  }
  if (o.durationS > 60) throw new Error("--duration: at most 60 s");
  return o;
}

// ---------------------------------------------------------------------------------------------
// Cleanup: children, FerretDB and temp dirs go away on every exit path.

const children = new Set<ChildProcess>();
const tempDirs: string[] = [];
const ferretDirs: string[] = [];
const FERRET = path.join(REPO, "scripts", "ferretdb.sh");

function cleanupSync(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  }
  children.clear();
  for (const d of ferretDirs.splice(0)) spawnSync("bash", [FERRET, "stop", d], { stdio: "ignore", timeout: 20_000 });
  for (const d of tempDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}
process.on("exit", cleanupSync);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    process.stderr.write(`\nbench:watch: ${sig}, stopping\n`);
    cleanupSync();
    process.exit(130);
  });
}

function tempDir(prefix: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const loadText = (l: number[]): string => l.map((x) => x.toFixed(2)).join(" / ");
const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;
const log = (s: string): void => void process.stderr.write(s + "\n");

// ---------------------------------------------------------------------------------------------
// Child processes speaking `BENCH {json}` lines (bench/child.ts protocol and watch-client.ts).

class Child {
  private readonly waiters: { type: string; resolve: (msg: Record<string, unknown>) => void }[] = [];
  private exited?: string;
  /** Log lines forwarded in the current 10 s window, and how many were left out. */
  private forwarded = 0;
  private suppressed = 0;
  private window = 0;
  readonly ready: Promise<Record<string, unknown>>;

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    children.add(proc);
    this.ready = this.expect("ready", 60_000);
    readline.createInterface({ input: proc.stdout! }).on("line", (line) => {
      if (!line.startsWith("BENCH ")) {
        // At most 5 log lines per 10 s from one child (an overloaded store logs every failure).
        const w = Math.floor(Date.now() / 10_000);
        if (w !== this.window) {
          if (this.suppressed > 0) process.stderr.write(`[${name}] (${this.suppressed} more log lines left out)\n`);
          this.window = w;
          this.forwarded = this.suppressed = 0;
        }
        if (this.forwarded++ < 5) process.stderr.write(`[${name}] ${line}\n`);
        else this.suppressed++;
        return;
      }
      const msg = JSON.parse(line.slice(6)) as Record<string, unknown>;
      const i = this.waiters.findIndex((w) => w.type === msg.type);
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve(msg);
    });
    proc.on("exit", (code, signal) => {
      children.delete(proc);
      this.exited = `exited (code ${code}, signal ${signal})`;
      for (const w of this.waiters.splice(0)) w.resolve({ type: "exit", error: this.exited });
    });
  }

  /** Waits for the next message of `type`, after sending `command` (a line) if given. */
  expect(type: string, timeoutMs: number, command?: string): Promise<Record<string, unknown>> {
    if (this.exited) return Promise.reject(new Error(`${this.name} ${this.exited}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no "${type}" within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        type,
        resolve: (msg) => {
          clearTimeout(timer);
          if (msg.type === "exit") reject(new Error(`${this.name} ${String(msg.error)}`));
          else resolve(msg);
        },
      });
      if (command !== undefined) this.proc.stdin!.write(command + "\n");
    });
  }

  /** Asks the child to exit (so a --cpu-prof profile gets written); kills it after 10 s. */
  async stop(command = "exit"): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.proc.once("exit", () => resolve()));
    this.proc.stdin!.write(command + "\n");
    this.proc.stdin!.end();
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 10_000);
    await done;
    clearTimeout(timer);
  }
}

class Server extends Child {
  port = 0;

  static async start(replica: Replica, env: NodeJS.ProcessEnv, nodeArgs: string[]): Promise<Server> {
    const proc = spawn(process.execPath, ["--expose-gc", ...nodeArgs, path.join(DIST_BENCH, "watch-server.js")], {
      cwd: REPO,
      env: { ...process.env, ...env },
      stdio: ["pipe", "pipe", "inherit"],
    });
    const s = new Server(`replica ${replica}`, proc);
    s.port = Number((await s.ready).port);
    return s;
  }

  stats(): Promise<Stats> {
    return this.expect("stats", 10_000, "stats") as unknown as Promise<Stats>;
  }

  async gcStats(): Promise<Stats> {
    await this.expect("gc", 10_000, "gc");
    await sleep(200);
    await this.expect("gc", 10_000, "gc");
    return this.stats();
  }

  async watchers(): Promise<number> {
    return Number((await this.expect("watchers", 10_000, "watchers")).watchers);
  }

  /** Waits until the replica's change feed counts `n` open watchers. */
  async waitWatchers(n: number, timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    let seen = -1;
    while (Date.now() < until) {
      seen = await this.watchers();
      if (seen === n) return;
      await sleep(100);
    }
    throw new Error(`${this.name}: ${seen} watchers open after ${timeoutMs} ms, expected ${n}`);
  }
}

class WatchClient extends Child {
  static start(i: number): WatchClient {
    const proc = spawn(process.execPath, [path.join(DIST_BENCH, "watch-client.js")], {
      cwd: REPO,
      stdio: ["pipe", "pipe", "inherit"],
    });
    return new WatchClient(`watch client ${i}`, proc);
  }

  send(type: string, cmd: Record<string, unknown>, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    return this.expect(type, timeoutMs, JSON.stringify(cmd));
  }

  async cpuUs(): Promise<number> {
    const c = await this.send("cpu", { cmd: "cpu" });
    return Number(c.user) + Number(c.system);
  }
}

// ---------------------------------------------------------------------------------------------
// Writer: open-loop UpdateSession calls at a fixed rate through replica A.

interface WriteRun {
  revs: number[];
  ack: number[];
  sent: number[];
  profile: number[];
  ackLatency: number[];
  issued: number;
  errors: number;
  firstError?: string;
  lateIssues: number;
  seconds: number;
}

const profileName = (p: number): string => `bench-profile-${p}`;
const sessionId = (s: number): string => `bench-session-${s}`;
const MAX_IN_FLIGHT = 500;

function update(client: SessionClient, s: number, k: number, sent: number): Promise<{ session?: { revision: bigint } }> {
  return client.updateSession({ session: { id: sessionId(s), properties: { n: k, sent } }, updateMask: { paths: ["properties"] } }, { timeoutMs: 10_000 });
}

/** The write path's capacity: closed loop, `concurrency` writers for `seconds` (changes/s). */
async function capacityProbe(client: SessionClient, o: Options, concurrency: number, seconds: number, seq: { k: number }): Promise<{ rate: number; ack: Dist; errors: number }> {
  const acks: number[] = [];
  let errors = 0;
  const t0 = nowMs();
  const end = t0 + seconds * 1000;
  await Promise.all(
    [...Array(concurrency).keys()].map(async () => {
      // Bounded: each writer stops at `end`, and every call has a 10 s deadline.
      while (nowMs() < end) {
        const k = seq.k++;
        const sent = nowMs();
        try {
          await update(client, k % o.sessions, k, sent);
          acks.push(nowMs() - sent);
        } catch {
          errors++;
        }
      }
    }),
  );
  return { rate: acks.length / ((nowMs() - t0) / 1000), ack: dist(acks), errors };
}

async function runWriter(client: SessionClient, o: Options, rate: number, durationS: number, seq: { k: number }): Promise<WriteRun> {
  const total = Math.round(rate * durationS);
  const run: WriteRun = { revs: [], ack: [], sent: [], profile: [], ackLatency: [], issued: 0, errors: 0, lateIssues: 0, seconds: 0 };
  let inFlight = 0;
  const pending: Promise<void>[] = [];
  const t0 = nowMs();
  const interval = 1000 / rate;
  const issue = (): void => {
    const k = seq.k++;
    const s = k % o.sessions;
    const sent = nowMs();
    inFlight++;
    run.issued++;
    pending.push(
      update(client, s, k, sent)
        .then(
          (res) => {
            const ack = nowMs();
            run.revs.push(Number(res.session!.revision));
            run.ack.push(ack);
            run.sent.push(sent);
            run.profile.push(s % o.profiles);
            run.ackLatency.push(ack - sent);
          },
          (err: unknown) => {
            run.errors++;
            run.firstError ??= err instanceof Error ? err.message : String(err);
          },
        )
        .finally(() => inFlight--),
    );
  };
  // Bounded: exactly `total` writes, each at its slot t0 + i * interval (or as soon after as the
  // event loop allows; more than 2 ms late counts as a late issue).
  for (let i = 0; i < total; i++) {
    const due = t0 + i * interval;
    const wait = due - nowMs();
    if (wait > 1) await sleep(wait);
    if (nowMs() - due > 2) run.lateIssues++;
    while (inFlight >= MAX_IN_FLIGHT) await sleep(1);
    issue();
  }
  await Promise.all(pending);
  run.seconds = (nowMs() - t0) / 1000;
  return run;
}

// ---------------------------------------------------------------------------------------------
// Statistics

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

interface Dist {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

function dist(xs: number[]): Dist {
  const s = Float64Array.from(xs).sort();
  const arr = Array.from(s);
  return { count: arr.length, p50: percentile(arr, 50), p99: percentile(arr, 99), max: arr.length ? arr[arr.length - 1] : NaN };
}

function machineTicks(): { busy: number; total: number } {
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = v[3] + (v[4] ?? 0);
  return { busy: total - idle, total };
}

async function backgroundCpu(ms: number): Promise<number> {
  const a = machineTicks();
  await sleep(ms);
  const b = machineTicks();
  return (100 * CORES * (b.busy - a.busy)) / Math.max(1, b.total - a.total);
}

const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/** CPU time (user + system) of a process so far, µs; 0 once it is gone. */
function procCpuUs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) / CLK_TCK) * 1e6;
  } catch {
    return 0;
  }
}

/** Cumulative CPU (µs) of every process of the bench, and the machine's ticks. */
interface CpuSnap {
  A: number;
  B: number;
  clients: number;
  bench: number;
  db: number;
  machine: { busy: number; total: number };
}

/** CPU over an interval, % of one core: each replica, the watch clients, this process (the
 * writer), the database (FerretDB), the whole machine, and the rest ("other": not this bench). */
interface CpuShare {
  A: number;
  B: number;
  clients: number;
  bench: number;
  db: number;
  machine: number;
  other: number;
}

async function cpuSnap(servers: Record<Replica, Server>, clients: WatchClient[], dbPid: number | undefined): Promise<CpuSnap> {
  const [a, b, ...c] = await Promise.all([servers.A.stats(), servers.B.stats(), ...clients.map((x) => x.cpuUs())]);
  const self = process.cpuUsage();
  return {
    A: a.cpuUser + a.cpuSystem,
    B: b.cpuUser + b.cpuSystem,
    clients: c.reduce((x, y) => x + y, 0),
    bench: self.user + self.system,
    db: procCpuUs(dbPid),
    machine: machineTicks(),
  };
}

function cpuShare(s0: CpuSnap, s1: CpuSnap, seconds: number): CpuShare {
  const pct = (k: "A" | "B" | "clients" | "bench" | "db"): number => (100 * (s1[k] - s0[k])) / 1e6 / seconds;
  const machine = (100 * CORES * (s1.machine.busy - s0.machine.busy)) / Math.max(1, s1.machine.total - s0.machine.total);
  const share = { A: pct("A"), B: pct("B"), clients: pct("clients"), bench: pct("bench"), db: pct("db"), machine, other: 0 };
  share.other = Math.max(0, machine - share.A - share.B - share.clients - share.bench - share.db);
  return share;
}

const cpuText = (c: CpuShare): string =>
  `CPU % of a core: A ${c.A.toFixed(0)}, B ${c.B.toFixed(0)}, clients ${c.clients.toFixed(0)}, writer ${c.bench.toFixed(0)}` +
  `${c.db > 0 ? `, FerretDB ${c.db.toFixed(0)}` : ""}, other processes ${c.other.toFixed(0)} (machine ${c.machine.toFixed(0)} of ${CORES * 100})`;

// ---------------------------------------------------------------------------------------------
// One store: two replicas, phases.

interface WatchRun {
  store: StoreKind;
  replica: Replica;
  watchers: number;
  filtered: boolean;
  deliveriesPerChange: number;
  /** receipt - write ack (the measure of the issue). */
  latency: Dist;
  /** receipt - the moment the write was issued (includes the write's own latency). */
  fromSend: Dist;
  /** Event-loop delay of the replica holding the watchers during the writes. */
  loop: { p50: number; p99: number; max: number };
  write: { rate: number; ack: Dist; errors: number };
  expected: number;
  received: number;
  missing: number;
  unknown: number;
  outOfOrder: number;
  streamErrors: number;
  rssBefore: number;
  rssIdle: number;
  kbPerWatcher: number;
  cpu: CpuShare;
}

interface Baseline {
  store: StoreKind;
  rate: number;
  ack: Dist;
  errors: number;
  issued: number;
  lateIssues: number;
  cpu: CpuShare;
  loopP99: number;
}

interface StoreResult {
  store: StoreKind;
  error?: string;
  /** Closed-loop write capacity (changes/s) and the rate the runs used. */
  capacity?: number;
  rate?: number;
  baseline?: Baseline;
  runs: WatchRun[];
  profile?: string;
}

async function startStore(store: StoreKind, o: Options): Promise<{ env: NodeJS.ProcessEnv; describe: string; dbPid?: number }> {
  const env: NodeJS.ProcessEnv = { BENCH_LOG_LEVEL: "warn" };
  if (o.pollMs !== undefined) env.BENCH_WATCH_POLL_MS = String(o.pollMs);
  if (store === "sqlite") {
    const dir = tempDir("session-watch-bench-sqlite-");
    env.BENCH_DATA_DIR = dir;
    return { env, describe: `embedded SQLite, one DATA_DIR shared by both replicas (${dir})` };
  }
  const dir = tempDir("session-watch-bench-ferret-");
  ferretDirs.push(dir);
  const r = spawnSync("bash", [FERRET, "start", dir], { cwd: REPO, encoding: "utf8", timeout: 600_000 });
  if (r.status !== 0) throw new Error(`scripts/ferretdb.sh start failed: ${(r.stderr || r.stdout || String(r.error)).trim()}`);
  const uri = r.stdout.trim();
  env.BENCH_MONGODB_URI = uri;
  env.BENCH_MONGODB_DB = "watchbench";
  const dbPid = Number(fs.readFileSync(path.join(dir, "ferretdb.pid"), "utf8").trim()) || undefined;
  return { env, dbPid, describe: `MongoDB store on FerretDB (${uri}, SQLite backend), one database shared by both replicas` };
}

async function benchStore(store: StoreKind, o: Options, clients: WatchClient[], tmp: string): Promise<StoreResult> {
  const result: StoreResult = { store, runs: [] };
  const { env, describe, dbPid } = await startStore(store, o);
  log(`\n== ${store}: ${describe}`);
  let profDir: string | undefined;
  const argsFor = (r: Replica): string[] => {
    if (o.cpuProf !== r) return [];
    profDir = fs.mkdtempSync(path.join(os.tmpdir(), `session-watch-profile-${store}-${r}-`));
    return ["--cpu-prof", "--cpu-prof-dir", profDir];
  };
  // A first (it creates the schema), then B.
  const A = await Server.start("A", env, argsFor("A"));
  const B = await Server.start("B", env, argsFor("B"));
  const servers: Record<Replica, Server> = { A, B };
  const writer = grpcClient(A.port);
  const seq = { k: 0 };
  try {
    // Seed: the sessions, spread over the profiles (concurrency 50).
    const t0 = Date.now();
    for (let s = 0; s < o.sessions; s += 50) {
      const batch: Promise<unknown>[] = [];
      for (let j = s; j < Math.min(o.sessions, s + 50); j++) {
        batch.push(
          writer.createSession(
            { session: { id: sessionId(j), profile: { id: profileName(j % o.profiles) }, metadata: { channel: "web" }, properties: { n: -1 } } },
            { timeoutMs: 30_000 },
          ),
        );
      }
      await Promise.all(batch);
    }
    log(`  seeded ${o.sessions} sessions in ${o.profiles} profiles in ${Date.now() - t0} ms`);

    // Warm-up: writes alone, then a few watchers on each replica while writing.
    // The write path's capacity decides the rate: the requested one when the store takes at
    // least 1.25x it, else a lower one from a fixed ladder (at most a quarter of the capacity:
    // the watchers' feeds read the same store, and a store whose writes slow down as its change
    // log grows needs the headroom).
    const cap = await capacityProbe(writer, o, 8, 3, seq);
    result.capacity = cap.rate;
    const rate = cap.rate >= o.rate * 1.25 ? o.rate : Math.max(1, [100, 50, 20, 10, 5, 2].find((r) => r < o.rate && r <= cap.rate / 4) ?? 1);
    result.rate = rate;
    log(
      `  write capacity (closed loop, 8 concurrent UpdateSession, 3 s): ${cap.rate.toFixed(0)} changes/s, ack p50 ${cap.ack.p50.toFixed(2)} ms p99 ${cap.ack.p99.toFixed(2)} ms` +
        `${cap.errors ? `, ${cap.errors} errors` : ""}` +
        `${rate !== o.rate ? `; too slow for ${o.rate}/s: measuring at ${rate} changes/s` : ""}`,
    );
    await sleep(1000);
    const w0 = await runWriter(writer, o, rate, 2, seq);
    if (w0.errors > 0) throw new Error(`warm-up writes failed: ${w0.errors} errors, first: ${w0.firstError}`);
    for (const r of ["A", "B"] as Replica[]) {
      await openWatchers(clients, servers[r], 20, true, o);
      await runWriter(writer, o, rate, 1, seq);
      await closeWatchers(clients, servers[r]);
    }

    // Baseline: the write path alone (no watcher open anywhere).
    {
      const s0 = await cpuSnap(servers, clients, dbPid);
      await A.expect("loop", 10_000, "loop");
      const w = await runWriter(writer, o, rate, o.durationS, seq);
      const loop = await A.expect("loop", 10_000, "loop");
      const s1 = await cpuSnap(servers, clients, dbPid);
      result.baseline = {
        store,
        rate: w.revs.length / w.seconds,
        ack: dist(w.ackLatency),
        errors: w.errors,
        issued: w.issued,
        lateIssues: w.lateIssues,
        cpu: cpuShare(s0, s1, w.seconds),
        loopP99: Number(loop.p99),
      };
      const b = result.baseline;
      log(
        `  baseline (no watchers): ${b.rate.toFixed(1)} changes/s, ack p50 ${b.ack.p50.toFixed(2)} ms p99 ${b.ack.p99.toFixed(2)} ms, ` +
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
        const run = await measureWatch(store, r, servers, writer, clients, n, filtered, o, rate, seq, tmp, dbPid);
        result.runs.push(run);
        log(
          `  ${String(n).padStart(5)} ${filtered ? "filtered  " : "unfiltered"} watchers on ${r} (${r === "A" ? "same replica " : "cross replica"}): ` +
            `p50 ${run.latency.p50.toFixed(2)} ms p99 ${run.latency.p99.toFixed(2)} ms max ${run.latency.max.toFixed(1)} ms ` +
            `(${run.latency.count} deliveries, missing ${run.missing}); from write start p50 ${run.fromSend.p50.toFixed(2)} p99 ${run.fromSend.p99.toFixed(2)} ms; ` +
            `loop delay p99 ${run.loop.p99.toFixed(1)} ms; write ${run.write.rate.toFixed(1)}/s ack p99 ${run.write.ack.p99.toFixed(2)} ms, ` +
            `idle RSS +${run.kbPerWatcher.toFixed(1)} KB/watcher; ${cpuText(run.cpu)}`,
        );
      }
    }
  } finally {
    writer.close();
    await Promise.all([A.stop(), B.stop()]);
  }
  if (profDir) {
    const file = fs.readdirSync(profDir).find((f) => f.endsWith(".cpuprofile"));
    if (file) {
      const full = path.join(profDir, file);
      result.profile = `${formatSummary(summarize(full), 30)}\nprofile of replica ${o.cpuProf} (whole run, ${store}): ${full}`;
    } else {
      result.profile = `no .cpuprofile written in ${profDir}`;
    }
  }
  return result;
}

async function openWatchers(clients: WatchClient[], server: Server, n: number, filtered: boolean, o: Options): Promise<void> {
  const per: { w: number; profile: string }[][] = clients.map(() => []);
  for (let w = 0; w < n; w++) per[w % clients.length].push({ w, profile: filtered ? profileName(w % o.profiles) : "" });
  await Promise.all(
    clients.map((c, i) =>
      per[i].length === 0 ? Promise.resolve() : c.send("opened", { cmd: "open", port: server.port, channels: Math.min(o.channels, per[i].length), watchers: per[i] }),
    ),
  );
  await server.waitWatchers(n, 60_000);
}

async function closeWatchers(clients: WatchClient[], server: Server): Promise<void> {
  await Promise.all(clients.map((c) => c.send("closed", { cmd: "close" })));
  await server.waitWatchers(0, 30_000);
}

async function measureWatch(
  store: StoreKind,
  replica: Replica,
  servers: Record<Replica, Server>,
  writer: SessionClient,
  clients: WatchClient[],
  n: number,
  filtered: boolean,
  o: Options,
  rate: number,
  seq: { k: number },
  tmp: string,
  dbPid: number | undefined,
): Promise<WatchRun> {
  const server = servers[replica];
  // Idle RSS: after a full GC with none, then with n idle watchers (settled for 2 s).
  const before = await server.gcStats();
  await openWatchers(clients, server, n, filtered, o);
  await sleep(2000);
  const idle = await server.gcStats();

  const s0 = await cpuSnap(servers, clients, dbPid);
  await server.expect("loop", 10_000, "loop");
  const w = await runWriter(writer, o, rate, o.durationS, seq);
  const loop = await server.expect("loop", 10_000, "loop");
  const s1 = await cpuSnap(servers, clients, dbPid);

  // Every delivery: wait until nothing is missing (at most DRAIN_TIMEOUT_MS).
  const ackFile = path.join(tmp, `acks-${store}-${replica}-${n}-${filtered ? "f" : "u"}.json`);
  fs.writeFileSync(ackFile, JSON.stringify({ revs: w.revs, ack: w.ack, sent: w.sent, profile: w.profile, profiles: [...Array(o.profiles).keys()].map(profileName) }));
  let reports: Record<string, unknown>[] = [];
  const until = Date.now() + DRAIN_TIMEOUT_MS;
  for (;;) {
    reports = await Promise.all(clients.map((c) => c.send("report", { cmd: "report", ackFile })));
    const missing = reports.reduce((m, r) => m + Number(r.missing), 0);
    if (missing === 0 || Date.now() > until) break;
    await sleep(250);
  }
  await closeWatchers(clients, server);

  const sum = (k: string): number => reports.reduce((m, r) => m + Number(r[k]), 0);
  const latencies = reports.flatMap((r) => r.latencies as number[]);
  const fromSend = reports.flatMap((r) => r.fromSend as number[]);
  const firstError = reports.map((r) => r.firstError).find((e) => e !== undefined);
  if (firstError) log(`  watch stream error: ${String(firstError)}`);
  if (w.errors > 0) log(`  write errors: ${w.errors}, first: ${w.firstError}`);
  const secs = w.seconds;
  return {
    store,
    replica,
    watchers: n,
    filtered,
    deliveriesPerChange: filtered ? n / o.profiles : n,
    latency: dist(latencies),
    fromSend: dist(fromSend),
    loop: { p50: Number(loop.p50), p99: Number(loop.p99), max: Number(loop.max) },
    write: { rate: w.revs.length / secs, ack: dist(w.ackLatency), errors: w.errors },
    expected: sum("expected"),
    received: sum("received"),
    missing: sum("missing"),
    unknown: sum("unknown"),
    outOfOrder: sum("outOfOrder"),
    streamErrors: sum("streamErrors"),
    rssBefore: before.rss,
    rssIdle: idle.rss,
    kbPerWatcher: (idle.rss - before.rss) / 1024 / n,
    cpu: cpuShare(s0, s1, secs),
  };
}

// ---------------------------------------------------------------------------------------------
// Output

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(" | ")} |`;
  return [line(head), `|${w.map((n, i) => (i === 0 ? "-".repeat(n + 2) : "-".repeat(n + 1) + ":")).join("|")}|`, ...rows.map(line)].join("\n");
}

/** "A / B / clients / other" CPU, % of one core, and FerretDB when it runs. */
function cpuCell(c: CpuShare): string {
  return `${c.A.toFixed(0)} / ${c.B.toFixed(0)} / ${c.clients.toFixed(0)} / ${c.other.toFixed(0)}${c.db > 0 ? ` (+FerretDB ${c.db.toFixed(0)})` : ""}`;
}

const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(x < 10 ? 2 : 1) : "n/a");

function render(results: StoreResult[], o: Options): string {
  const out: string[] = [];
  out.push("");
  out.push(
    `WatchSessions delivery: ${o.rate} changes/s requested (UpdateSession via replica A, open loop) for ${o.durationS} s per run, ` +
      `${o.sessions} sessions in ${o.profiles} profiles; filtered watcher = one profile; ${o.clientProcs} client processes x ` +
      `${o.channels} channels; latency = receipt at the watcher - write ack at the writer; ${CORES} cores, node ${process.version}`,
  );
  for (const r of results) {
    out.push("");
    if (r.error) {
      out.push(`${r.store}: not measured: ${r.error}`);
      continue;
    }
    const b = r.baseline!;
    const rows: string[][] = [
      [
        "baseline: writes only, no watchers",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        `${b.rate.toFixed(1)}`,
        `${ms(b.ack.p50)} / ${ms(b.ack.p99)}`,
        "-",
        cpuCell(b.cpu),
        ms(b.loopP99),
      ],
    ];
    for (const x of r.runs) {
      rows.push([
        `${x.watchers} ${x.filtered ? "" : "unfiltered "}watchers on ${x.replica} (${x.replica === "A" ? "same replica" : "cross replica"})`,
        `${x.deliveriesPerChange}`,
        ms(x.latency.p50),
        ms(x.latency.p99),
        ms(x.latency.max),
        `${ms(x.fromSend.p50)} / ${ms(x.fromSend.p99)}`,
        `${x.received}/${x.expected}`,
        `${x.write.rate.toFixed(1)}`,
        `${ms(x.write.ack.p50)} / ${ms(x.write.ack.p99)}`,
        `${x.kbPerWatcher.toFixed(1)}`,
        cpuCell(x.cpu),
        ms(x.loop.p99),
      ]);
    }
    out.push(
      `${r.store === "sqlite" ? "embedded SQLite store (2 processes, one file)" : "MongoDB store on FerretDB (2 processes, one database)"}: ` +
        `${r.rate} changes/s; write capacity ${r.capacity!.toFixed(0)} changes/s (closed loop, 8 concurrent writers, no watchers)`,
    );
    out.push("");
    out.push(
      table(
        ["run", "deliveries/change", "p50 ms", "p99 ms", "max ms", "from write start p50 / p99 ms", "delivered", "changes/s", "ack p50 / p99 ms", "idle KB/watcher", "CPU % A / B / clients / other", "loop delay p99 ms"],
        rows,
      ),
    );
    const problems = r.runs.filter((x) => x.missing > 0 || x.outOfOrder > 0 || x.unknown > 0 || x.streamErrors > 0);
    for (const x of problems) {
      out.push(
        `  ! ${x.watchers} watchers on ${x.replica}: missing ${x.missing}, out of order/duplicate ${x.outOfOrder}, unknown revisions ${x.unknown}, stream errors ${x.streamErrors}`,
      );
    }
    out.push("");
    const at = (replica: Replica): WatchRun | undefined => r.runs.find((x) => x.filtered && x.watchers === TARGET_WATCHERS && x.replica === replica);
    const slow = r.rate! < o.rate;
    const verdict = (ok: boolean): string => (slow ? `MISS (measured at ${r.rate} changes/s: the store takes only ${r.capacity!.toFixed(0)}/s)` : ok ? "PASS" : "MISS");
    if (slow) out.push(`target ${r.store}: ${o.rate} changes/s: MISS: the write path alone sustains ${r.capacity!.toFixed(0)} changes/s`);
    const a = at("A");
    const bb = at("B");
    if (a) out.push(`target ${r.store}: ${TARGET_WATCHERS} watchers, p99 same replica ${ms(a.latency.p99)} ms < ${TARGET_SAME_P99_MS} ms: ${verdict(a.latency.p99 < TARGET_SAME_P99_MS && a.missing === 0)}`);
    if (bb) out.push(`target ${r.store}: ${TARGET_WATCHERS} watchers, p99 cross replica ${ms(bb.latency.p99)} ms < ${TARGET_CROSS_P99_MS} ms: ${verdict(bb.latency.p99 < TARGET_CROSS_P99_MS && bb.missing === 0)}`);
    const mem = r.runs.filter((x) => x.watchers === TARGET_WATCHERS && x.filtered);
    if (mem.length > 0) {
      const worst = Math.max(...mem.map((x) => x.kbPerWatcher));
      // Idle memory does not depend on the write rate.
      out.push(`target ${r.store}: idle watcher ${worst.toFixed(1)} KB of server RSS (worst of ${mem.map((x) => x.replica).join(", ")}) < ${TARGET_KB_PER_WATCHER} KB: ${worst < TARGET_KB_PER_WATCHER ? "PASS" : "MISS"}`);
    }
    const onA = r.runs.filter((x) => x.replica === "A");
    if (onA.length > 0) {
      out.push(
        `write path of ${r.store} with watchers on the writing replica: ack p99 ${ms(b.ack.p99)} ms alone, ` +
          onA.map((x) => `${ms(x.write.ack.p99)} ms with ${x.watchers}${x.filtered ? "" : " unfiltered"} (replica A CPU ${x.cpu.A.toFixed(0)}%)`).join(", "),
      );
    }
    if (r.profile) out.push("", r.profile);
  }
  return out.join("\n");
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  const started = Date.now();
  log(`bench:watch: node ${process.version}, ${CORES} cores (${os.cpus()[0]?.model ?? "?"}), stores ${o.stores.join(", ")}`);
  const background = await backgroundCpu(1500);
  // The load average says how busy the machine was over the last minutes (other test suites and
  // benchmarks share it); the CPU share above is a 1.5 s sample.
  const loadBefore = os.loadavg();
  log(`bench:watch: background CPU before start ${background.toFixed(0)}% of one core (other processes), load average ${loadText(loadBefore)}`);
  const tmp = tempDir("session-watch-bench-");
  const clients = [...Array(o.clientProcs).keys()].map((i) => WatchClient.start(i));
  await Promise.all(clients.map((c) => c.ready));
  const results: StoreResult[] = [];
  for (const store of o.stores) {
    try {
      results.push(await benchStore(store, o, clients, tmp));
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      log(`bench:watch: ${store}: ${msg}`);
      results.push({ store, error: msg, runs: [] });
      // A failed store may leave streams open in the clients.
      await Promise.all(clients.map((c) => c.send("closed", { cmd: "close" }).catch(() => undefined)));
    }
    // Each store's FerretDB stops as soon as its runs are done.
    for (const d of ferretDirs.splice(0)) spawnSync("bash", [FERRET, "stop", d], { stdio: "ignore", timeout: 20_000 });
  }
  await Promise.all(clients.map((c) => c.stop("")));
  process.stdout.write(render(results, o) + "\n");
  const loadAfter = os.loadavg();
  log(
    `bench:watch: done in ${((Date.now() - started) / 1000).toFixed(0)} s (background CPU before start ${background.toFixed(0)}%; ` +
      `load average before ${loadText(loadBefore)}, after ${loadText(loadAfter)})`,
  );
  if (o.json) {
    fs.writeFileSync(
      o.json,
      JSON.stringify(
        { date: new Date().toISOString(), options: o, backgroundCpu: background, loadAverage: { before: loadBefore, after: loadAfter }, machine: { cores: CORES, cpu: os.cpus()[0]?.model, node: process.version }, results },
        null,
        2,
      ) + "\n",
    );
  }
  return results.every((r) => !r.error) ? 0 : 1;
}

main().then(
  (code) => {
    cleanupSync();
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`bench:watch: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    cleanupSync();
    process.exit(1);
  },
);
