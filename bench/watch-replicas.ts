// The parts of `npm run bench:watch` (bench/watch-bench.ts) that one measured run is made of:
// the service replicas and watch-client processes it drives, the open-loop writer, the CPU
// accounting of every bench process, and one watch run (open N watchers, write, collect).

import * as fs from "node:fs";
import * as path from "node:path";
import type { SessionClient } from "../test/support/clients";
import type { Stats } from "./child";
import { CORES, machineCpu, machineTicks, procCpuUs, type Ticks } from "./lib/cpu";
import { closedLoop } from "./lib/load";
import { BenchChild, nowMs, sleep, spawnNode } from "./lib/processes";
import { dist, type Dist } from "./lib/stats";

export type StoreKind = "sqlite" | "mongodb";
export type Replica = "A" | "B";

/** What one watch run needs of the options (bench/watch-bench.ts). */
export interface WatchSettings {
  durationS: number;
  sessions: number;
  profiles: number;
  channels: number;
}

const DRAIN_TIMEOUT_MS = 10_000;
const MAX_IN_FLIGHT = 500;

export const log = (s: string): void => void process.stderr.write(s + "\n");
export const profileName = (p: number): string => `bench-profile-${p}`;
export const sessionId = (s: number): string => `bench-session-${s}`;

// ---------------------------------------------------------------------------------------------
// Child processes

/** A service replica: bench/watch-server.js of this checkout or of the --baseline one. */
export class Server extends BenchChild {
  port = 0;

  static async start(name: string, repo: string, env: NodeJS.ProcessEnv, nodeArgs: string[]): Promise<Server> {
    const proc = spawnNode(path.join(repo, "dist", "bench", "watch-server.js"), { nodeArgs: ["--expose-gc", ...nodeArgs], env, cwd: repo });
    const s = new Server(name, proc, { logLimit: 5 });
    s.port = Number((await s.ready).port);
    return s;
  }

  /** Stats after two full GCs. */
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

/** A watcher-client process (bench/watch-client.ts). */
export class WatchClient extends BenchChild {
  static start(i: number): WatchClient {
    return new WatchClient(`watch client ${i}`, spawnNode(path.join(__dirname, "watch-client.js")), { logLimit: 5 });
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
// Writer: UpdateSession calls through replica A.

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

function update(client: SessionClient, s: number, k: number, sent: number): Promise<{ session?: { revision: bigint } }> {
  return client.updateSession(
    { session: { id: sessionId(s), properties: { n: k, sent } }, updateMask: { paths: ["properties"] } },
    { timeoutMs: 10_000 },
  );
}

/** The write path's capacity: closed loop, `concurrency` writers for `seconds` (changes/s). */
export async function capacityProbe(
  client: SessionClient,
  o: WatchSettings,
  concurrency: number,
  seconds: number,
  seq: { k: number },
): Promise<{ rate: number; ack: Dist; errors: number }> {
  const acks: number[] = [];
  // Bounded: each writer stops at the deadline, and every call has a 10 s deadline.
  const r = await closedLoop(concurrency, seconds, async () => {
    const k = seq.k++;
    const sent = nowMs();
    await update(client, k % o.sessions, k, sent);
    acks.push(nowMs() - sent);
  });
  return { rate: r.rate, ack: dist(acks), errors: r.errors };
}

/** Open loop: a write every 1/rate s whatever the answers do; records ack time and revision. */
export async function runWriter(
  client: SessionClient,
  o: WatchSettings,
  rate: number,
  durationS: number,
  seq: { k: number },
): Promise<WriteRun> {
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
// CPU of every process of the bench

/** Cumulative CPU (µs) of every process of the bench, and the machine's ticks. */
export interface CpuSnap {
  A: number;
  B: number;
  clients: number;
  bench: number;
  db: number;
  machine: Ticks;
}

/** CPU over an interval, % of one core: each replica, the watch clients, this process (the
 * writer), the database (FerretDB), the whole machine, and the rest ("other": not this bench). */
export interface CpuShare {
  A: number;
  B: number;
  clients: number;
  bench: number;
  db: number;
  machine: number;
  other: number;
}

export async function cpuSnap(servers: Record<Replica, Server>, clients: WatchClient[], dbPid: number | undefined): Promise<CpuSnap> {
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

export function cpuShare(s0: CpuSnap, s1: CpuSnap, seconds: number): CpuShare {
  const pct = (k: "A" | "B" | "clients" | "bench" | "db"): number => (100 * (s1[k] - s0[k])) / 1e6 / seconds;
  const share = {
    A: pct("A"),
    B: pct("B"),
    clients: pct("clients"),
    bench: pct("bench"),
    db: pct("db"),
    machine: machineCpu(s0.machine, s1.machine),
    other: 0,
  };
  share.other = Math.max(0, share.machine - share.A - share.B - share.clients - share.bench - share.db);
  return share;
}

export const cpuText = (c: CpuShare): string =>
  `CPU % of a core: A ${c.A.toFixed(0)}, B ${c.B.toFixed(0)}, clients ${c.clients.toFixed(0)}, writer ${c.bench.toFixed(0)}` +
  `${c.db > 0 ? `, FerretDB ${c.db.toFixed(0)}` : ""}, other processes ${c.other.toFixed(0)} (machine ${c.machine.toFixed(0)} of ${CORES * 100})`;

// ---------------------------------------------------------------------------------------------
// One watch run

export interface WatchRun {
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

/** The write path alone at the run's rate, no watcher open anywhere. */
export interface Baseline {
  store: StoreKind;
  rate: number;
  ack: Dist;
  errors: number;
  issued: number;
  lateIssues: number;
  cpu: CpuShare;
  loopP99: number;
}

export interface StoreResult {
  store: StoreKind;
  /** Absent for this checkout; the --baseline checkout's directory for its figures. */
  build?: string;
  error?: string;
  /** Closed-loop write capacity (changes/s) and the rate the runs used. */
  capacity?: number;
  rate?: number;
  baseline?: Baseline;
  runs: WatchRun[];
  profile?: string;
}

/** The replicas of one build on one store, its writer and its write sequence. */
export interface Side {
  store: StoreKind;
  /** "" for this checkout, "baseline" for the --baseline one. */
  build: string;
  servers: Record<Replica, Server>;
  writer: SessionClient;
  seq: { k: number };
  dbPid: number | undefined;
}

export async function openWatchers(clients: WatchClient[], server: Server, n: number, filtered: boolean, o: WatchSettings): Promise<void> {
  const per: { w: number; profile: string }[][] = clients.map(() => []);
  for (let w = 0; w < n; w++) per[w % clients.length].push({ w, profile: filtered ? profileName(w % o.profiles) : "" });
  await Promise.all(
    clients.map((c, i) =>
      per[i].length === 0
        ? Promise.resolve()
        : c.send("opened", { cmd: "open", port: server.port, channels: Math.min(o.channels, per[i].length), watchers: per[i] }),
    ),
  );
  await server.waitWatchers(n, 60_000);
}

export async function closeWatchers(clients: WatchClient[], server: Server): Promise<void> {
  await Promise.all(clients.map((c) => c.send("closed", { cmd: "close" })));
  await server.waitWatchers(0, 30_000);
}

/** N watchers on one replica: idle RSS, then --duration of writes, then every delivery collected. */
export async function measureWatch(
  side: Side,
  replica: Replica,
  clients: WatchClient[],
  n: number,
  filtered: boolean,
  o: WatchSettings,
  rate: number,
  tmp: string,
): Promise<WatchRun> {
  const { store, servers, dbPid } = side;
  const server = servers[replica];
  // Idle RSS: after a full GC with none, then with n idle watchers (settled for 2 s).
  const before = await server.gcStats();
  await openWatchers(clients, server, n, filtered, o);
  await sleep(2000);
  const idle = await server.gcStats();

  const s0 = await cpuSnap(servers, clients, dbPid);
  await server.expect("loop", 10_000, "loop");
  const w = await runWriter(side.writer, o, rate, o.durationS, side.seq);
  const loop = await server.expect("loop", 10_000, "loop");
  const s1 = await cpuSnap(servers, clients, dbPid);

  // Every delivery: wait until nothing is missing (at most DRAIN_TIMEOUT_MS).
  const ackFile = path.join(tmp, `acks-${store}${side.build}-${replica}-${n}-${filtered ? "f" : "u"}.json`);
  fs.writeFileSync(
    ackFile,
    JSON.stringify({
      revs: w.revs,
      ack: w.ack,
      sent: w.sent,
      profile: w.profile,
      profiles: [...Array(o.profiles).keys()].map(profileName),
    }),
  );
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
