// The update latency of WatchSessionStats, part of `npm run bench:stats` (bench/stats-bench.ts;
// `--only latency` runs it alone): how long after a change is committed a stats stream sends
// figures that count it, at a fixed rate of changes, per min_interval.
//
// The built service (bench/watch-server.ts, its own Node process) runs on the embedded SQLite
// store, pre-filled through the store port with --latency-stored sessions. A writer in this
// process drives --latency-rate changes/s through the gRPC API, open loop (write i is issued at
// t0 + i / rate whatever the answers do): alternately a CreateSession and an UpdateSession.
// Each phase uses channels of its own, so that its figures count its changes exactly:
//   - a create makes a session with channel `new-P`: the group `new-P` counts the creates;
//   - an update moves one session of a pool (created before the phase, channel `pool-P`) to
//     channel `moved-P`, each pool session once: the group `moved-P` counts the updates.
// The store hands out revisions in commit order and a stats read sees a committed snapshot, so
// the creates a message counts are exactly the first `new-P` of the phase's creates in revision
// order (the revision is in each response), the updates likewise. A change's latency = receipt
// of the first stats message counting it - receipt of its RPC's response (the commit as the
// client sees it). One process, one monotonic clock; a message that beats the response gives a
// negative latency (counted as "before ack").
//
// The stream: WatchSessionStats with group_by CHANNEL, no filter, each --min-intervals value.
// The baseline, measured in every phase beside it: a WatchSessions stream (no filter) on its own
// connection, latency of each change = its receipt there - its response, as bench:watch measures
// it. A first phase without a stats stream gives the server's CPU for the writes and the
// WatchSessions stream alone; each stats phase prints the extra CPU beside it. The expected
// shape: the figures are recomputed at most once per min_interval, so a change waits for the next
// recomputation: about uniform over [0, min_interval], i.e. p50 ≈ min_interval / 2 and p99 ≈
// min_interval, plus the feed's delivery and one stats() read. A last, sparse phase (--sparse)
// writes one change every 1.5 s with min_interval 1s: each comes after a quiet time longer than
// the interval, so it should go out at once (the feed's delivery plus one read).

import * as os from "node:os";
import { StatsGroupBy } from "../gen/session/v1/session_service_pb";
import { grpcClient, grpcStatsWatch, grpcWatch, type SessionClient, type StatsStream, type WatchStream } from "../test/support/clients";
import { CORES, machineCpu, machineTicks, procCpuUs, type Ticks } from "./lib/cpu";
import { nowMs, REPO, sleep, tempDir } from "./lib/processes";
import { percentile } from "./lib/stats";
import { ms, table } from "./lib/table";
import { Server } from "./watch-replicas";

export interface LatencyOptions {
  /** Changes per second (creates and updates, alternately). */
  rate: number;
  /** Seconds of writes per phase. */
  durationS: number;
  /** Sessions stored before the service starts. */
  stored: number;
  /** The min_interval of each stats phase, ms. */
  intervalsMs: number[];
  /** Changes of the sparse phase (one every SPARSE_GAP_MS, min_interval SPARSE_INTERVAL_MS); 0 = none. */
  sparse: number;
}

/** The sparse phase: isolated changes, each after a quiet time longer than its min_interval. */
export const SPARSE_GAP_MS = 1500;
export const SPARSE_INTERVAL_MS = 1000;

export interface Latency {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface PhaseResult {
  label: string;
  /** The rate the writer was asked for, changes/s. */
  targetRate: number;
  /** The stats stream's min_interval, ms; undefined for the phase without a stats stream. */
  minIntervalMs?: number;
  writes: number;
  errors: number;
  firstError?: string;
  /** Achieved changes per second. */
  rate: number;
  ack: Latency;
  /** WatchSessions delivery latency (the baseline). */
  watch: Latency;
  watchMissing: number;
  /** WatchSessionStats update latency, creates and updates together. */
  stats?: Latency;
  statsCreates?: Latency;
  statsUpdates?: Latency;
  /** Changes never counted by a stats message within the wait after the phase. */
  statsMissing?: number;
  /** Changes counted by a stats message received before the change's response. */
  beforeAck?: number;
  /** Stats messages received during the writes, and the mean time between them. */
  messages?: number;
  meanGapMs?: number;
  /** CPU during the writes, % of one core: the server, this bench process, the rest of the machine. */
  serverCpu: number;
  benchCpu: number;
  otherCpu: number;
  /** Server CPU per change, µs. */
  serverUsPerChange: number;
  /** The server's event-loop delay p99 during the writes, ms. */
  loopP99: number;
}

export interface LatencyResult {
  options: LatencyOptions;
  loadAverage: { before: number[]; after: number[] };
  phases: PhaseResult[];
}

const log = (s: string): void => void process.stdout.write(s + "\n");

function latency(xs: number[]): Latency {
  const s = Array.from(Float64Array.from(xs).sort());
  return { count: s.length, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s.length ? s[s.length - 1] : NaN };
}

interface Write {
  kind: "create" | "update";
  sent: number;
  ack: number;
  revision: number;
}

/** Receipts of one stream, and a wait for a condition on them that ends when it holds. */
class Receiver {
  private check: (() => void) | undefined;
  error: unknown;

  /** Resolves when `cond` holds (checked after every message) or after `timeoutMs`. */
  until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
    if (cond()) return Promise.resolve(true);
    if (this.error !== undefined) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.check = undefined;
        resolve(false);
      }, timeoutMs);
      this.check = () => {
        if (!cond() && this.error === undefined) return;
        clearTimeout(timer);
        this.check = undefined;
        resolve(this.error === undefined);
      };
    });
  }

  /** Reads `messages` until the stream ends, calling `onMessage` for each. */
  drain<T>(messages: AsyncIterable<T>, onMessage: (m: T) => void): Promise<void> {
    return (async () => {
      try {
        for await (const m of messages) {
          onMessage(m);
          this.check?.();
        }
      } catch (err) {
        this.error = err;
        this.check?.();
      }
    })();
  }
}

interface StatsMessage {
  at: number;
  creates: number;
  updates: number;
}

interface Setup {
  server: Server;
  writer: SessionClient;
  o: LatencyOptions;
}

/** The pool of sessions a phase's updates move (channel `pool-P`), created before it. */
async function createPool(writer: SessionClient, label: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let s = 0; s < n; s += 50) {
    const batch = Array.from({ length: Math.min(50, n - s) }, () =>
      writer.createSession(
        { session: { metadata: { channel: `pool-${label}` }, profile: { id: `pool-${label}` } } },
        { timeoutMs: 30_000 },
      ),
    );
    for (const r of await Promise.all(batch)) ids.push(r.session!.id);
  }
  return ids;
}

async function runPhase(setup: Setup, label: string, minIntervalMs: number | undefined, rate: number, total: number): Promise<PhaseResult> {
  const { server, writer } = setup;
  const pool = await createPool(writer, label, Math.ceil(total / 2));

  // The baseline stream: every change, by revision.
  const watchAt = new Map<number, number>();
  const watchRx = new Receiver();
  const watch: WatchStream = grpcWatch(server.port, {});
  const watchDone = watchRx.drain(watch.messages, (m) => {
    if (m.event.case === "change") watchAt.set(Number(m.event.value.revision), nowMs());
  });
  // The stats stream: the counts of this phase's groups per message.
  const messages: StatsMessage[] = [];
  const statsRx = new Receiver();
  let stats: StatsStream | undefined;
  let statsDone: Promise<void> = Promise.resolve();
  if (minIntervalMs !== undefined) {
    stats = grpcStatsWatch(server.port, {
      groupBy: StatsGroupBy.CHANNEL,
      minInterval: { seconds: BigInt(Math.floor(minIntervalMs / 1000)), nanos: (minIntervalMs % 1000) * 1e6 },
    });
    statsDone = statsRx.drain(stats.messages, (m) => {
      if (m.event.case !== "stats") return;
      const groups = m.event.value.groups;
      const count = (key: string): number => Number(groups.find((g) => g.key === key)?.count ?? 0n);
      messages.push({ at: nowMs(), creates: count(`new-${label}`), updates: count(`moved-${label}`) });
    });
    if (!(await statsRx.until(() => messages.length > 0, 10_000)))
      throw new Error(`${label}: no first stats message (${String(statsRx.error)})`);
  }
  // Both streams hold a watcher on the server's feed once they are open.
  await server.waitWatchers(minIntervalMs === undefined ? 1 : 2, 10_000);

  const cpu0 = { server: procCpuUs(server.proc.pid), bench: process.cpuUsage(), machine: machineTicks() as Ticks };
  await server.expect("loop", 10_000, "loop");
  const writes: Write[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const pending: Promise<void>[] = [];
  const t0 = nowMs();
  for (let i = 0; i < total; i++) {
    const due = t0 + ((i + 1) * 1000) / rate;
    const wait = due - nowMs();
    if (wait > 1) await sleep(wait);
    const kind = i % 2 === 0 ? "create" : "update";
    const sent = nowMs();
    const call =
      kind === "create"
        ? writer.createSession(
            { session: { metadata: { channel: `new-${label}` }, profile: { id: `new-${label}` } } },
            { timeoutMs: 30_000 },
          )
        : writer.updateSession(
            { session: { id: pool[i >> 1], metadata: { channel: `moved-${label}` } }, updateMask: { paths: ["metadata.channel"] } },
            { timeoutMs: 30_000 },
          );
    pending.push(
      call.then(
        (r) => void writes.push({ kind, sent, ack: nowMs(), revision: Number(r.session!.revision) }),
        (err: unknown) => {
          errors++;
          firstError ??= err instanceof Error ? err.message : String(err);
        },
      ),
    );
  }
  await Promise.all(pending);
  const seconds = (nowMs() - t0) / 1000;
  const loop = await server.expect("loop", 10_000, "loop");
  const machine1 = machineTicks();
  const serverUs = procCpuUs(server.proc.pid) - cpu0.server;
  const benchUse = process.cpuUsage(cpu0.bench);
  const serverCpu = serverUs / 1e4 / seconds;
  const benchCpu = (benchUse.user + benchUse.system) / 1e4 / seconds;
  const otherCpu = Math.max(0, machineCpu(cpu0.machine, machine1) - serverCpu - benchCpu);
  const writeEnd = nowMs();

  // Wait (at most 10 s) until both streams show every change.
  const creates = writes.filter((w) => w.kind === "create").sort((a, b) => a.revision - b.revision);
  const updates = writes.filter((w) => w.kind === "update").sort((a, b) => a.revision - b.revision);
  await watchRx.until(() => writes.every((w) => watchAt.has(w.revision)), 10_000);
  if (stats) {
    const last = (): StatsMessage | undefined => messages[messages.length - 1];
    await statsRx.until(() => (last()?.creates ?? 0) >= creates.length && (last()?.updates ?? 0) >= updates.length, 10_000);
  }
  watch.cancel();
  stats?.cancel();
  await Promise.all([watchDone, statsDone]);

  const watchLat = writes.filter((w) => watchAt.has(w.revision)).map((w) => watchAt.get(w.revision)! - w.ack);
  const result: PhaseResult = {
    label,
    targetRate: rate,
    minIntervalMs,
    writes: writes.length,
    errors,
    firstError,
    rate: writes.length / seconds,
    ack: latency(writes.map((w) => w.ack - w.sent)),
    watch: latency(watchLat),
    watchMissing: writes.length - watchLat.length,
    serverCpu,
    benchCpu,
    otherCpu,
    serverUsPerChange: serverUs / Math.max(1, writes.length),
    loopP99: Number(loop.p99),
  };
  if (stats) {
    // The k-th change of a kind (in revision order) is in the first message whose count is >= k.
    const attribute = (list: Write[], countOf: (m: StatsMessage) => number): number[] => {
      const out: number[] = [];
      let m = 0;
      for (let k = 1; k <= list.length; k++) {
        while (m < messages.length && countOf(messages[m]) < k) m++;
        if (m === messages.length) break;
        out.push(messages[m].at - list[k - 1].ack);
      }
      return out;
    };
    for (let i = 1; i < messages.length; i++) {
      if (messages[i].creates < messages[i - 1].creates || messages[i].updates < messages[i - 1].updates)
        throw new Error(`${label}: a stats message counts fewer changes than the one before it`);
    }
    const final = messages[messages.length - 1];
    if (final.creates > creates.length || final.updates > updates.length)
      throw new Error(`${label}: the figures count more changes (${final.creates}, ${final.updates}) than were acknowledged`);
    const c = attribute(creates, (m) => m.creates);
    const u = attribute(updates, (m) => m.updates);
    const during = messages.filter((m) => m.at >= t0 && m.at <= writeEnd);
    result.stats = latency([...c, ...u]);
    result.statsCreates = latency(c);
    result.statsUpdates = latency(u);
    result.statsMissing = writes.length - c.length - u.length;
    result.beforeAck = [...c, ...u].filter((x) => x < 0).length;
    result.messages = during.length;
    result.meanGapMs = during.length > 1 ? (during[during.length - 1].at - during[0].at) / (during.length - 1) : NaN;
  }
  return result;
}

/** Fills a fresh data dir (`seed`), starts the built service on it, and runs every phase. */
export async function latencyBench(o: LatencyOptions, seed: (dir: string, n: number) => Promise<void>): Promise<LatencyResult> {
  const loadBefore = os.loadavg();
  const dir = tempDir("stats-latency-");
  const t0 = Date.now();
  await seed(dir, o.stored);
  log(
    `  ${o.stored} sessions stored in ${((Date.now() - t0) / 1000).toFixed(1)} s; starting the built service (dist/bench/watch-server.js)`,
  );
  const server = await Server.start("service", REPO, { BENCH_DATA_DIR: dir, BENCH_LOG_LEVEL: "silent" }, []);
  const writer = grpcClient(server.port);
  const setup: Setup = { server, writer, o };
  const phases: PhaseResult[] = [];
  try {
    // Warm-up (not reported): the same writes with a stats stream, short.
    const total = Math.round(o.rate * o.durationS);
    await runPhase(setup, "warmup", 100, o.rate, Math.round(o.rate * Math.min(3, o.durationS)));
    phases.push(await runPhase(setup, "nostats", undefined, o.rate, total));
    for (const i of o.intervalsMs) phases.push(await runPhase(setup, `i${i}`, i, o.rate, total));
    // Isolated changes: each comes after a quiet time longer than the interval.
    if (o.sparse > 0) phases.push(await runPhase(setup, "sparse", SPARSE_INTERVAL_MS, 1000 / SPARSE_GAP_MS, o.sparse));
  } finally {
    writer.close();
    await server.stop();
  }
  return { options: o, loadAverage: { before: loadBefore, after: os.loadavg() }, phases };
}

const pct = (x: number): string => `${x.toFixed(0)}%`;

/** The tables of a run. */
export function renderLatency(r: LatencyResult): string {
  const base = r.phases.find((p) => p.minIntervalMs === undefined);
  const statsRows = r.phases
    .filter((p) => p.stats)
    .map((p) => {
      const s = p.stats!;
      const i = p.minIntervalMs!;
      return [
        `${i} ms`,
        p.label === "sparse" ? `1 per ${SPARSE_GAP_MS / 1000} s` : p.targetRate.toFixed(0),
        String(s.count),
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max),
        `${(s.p50 / i).toFixed(2)}x`,
        `${(s.p99 / i).toFixed(2)}x`,
        `${ms(p.watch.p50)} / ${ms(p.watch.p99)}`,
        `${p.messages} / ${ms(p.meanGapMs!)}`,
        `${p.statsMissing} / ${p.beforeAck}`,
      ];
    });
  const cpuRows = r.phases
    .filter((p) => p.targetRate === r.options.rate)
    .map((p) => [
      p.minIntervalMs === undefined ? "no stats stream" : `stats stream, ${p.minIntervalMs} ms`,
      p.rate.toFixed(1),
      `${p.errors}`,
      pct(p.serverCpu),
      base && p !== base ? `${p.serverCpu - base.serverCpu >= 0 ? "+" : ""}${(p.serverCpu - base.serverCpu).toFixed(1)} pts` : "",
      p.serverUsPerChange.toFixed(0),
      ms(p.loopP99),
      `${ms(p.ack.p50)} / ${ms(p.ack.p99)}`,
      `${ms(p.watch.p50)} / ${ms(p.watch.p99)}`,
      pct(p.benchCpu),
      pct(p.otherCpu),
    ]);
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(" ");
  return [
    `WatchSessionStats update latency, ms (group_by CHANNEL, ${r.options.durationS} s of writes per phase, ` +
      `${r.options.stored} stored sessions, ${CORES} cores; p50/interval and p99/interval: against the min_interval):`,
    table(
      [
        "min_interval",
        "changes/s",
        "changes",
        "p50",
        "p90",
        "p99",
        "max",
        "p50/interval",
        "p99/interval",
        "WatchSessions p50 / p99",
        "messages / mean gap",
        "missing / before ack",
      ],
      statsRows,
    ),
    "\nserver CPU while writing (% of one core; pts = beside the phase without a stats stream):",
    table(
      [
        "phase",
        "changes/s",
        "errors",
        "server CPU",
        "vs no stats",
        "server µs/change",
        "loop p99 ms",
        "ack p50 / p99",
        "WatchSessions p50 / p99",
        "bench CPU",
        "other CPU",
      ],
      cpuRows,
    ),
    `load average before ${load(r.loadAverage.before)}, after ${load(r.loadAverage.after)}`,
  ].join("\n");
}
