// The printed report of `npm run bench:watch` (bench/watch-bench.ts): a table per store and
// build, the targets' verdicts, and with --baseline the two builds' key figures side by side.

import { CORES } from "./lib/cpu";
import { ms, table } from "./lib/table";
import type { CpuShare, Replica, StoreResult, WatchRun } from "./watch-replicas";

export const TARGET_SAME_P99_MS = 50;
export const TARGET_CROSS_P99_MS = 250;
export const TARGET_KB_PER_WATCHER = 50;
export const TARGET_WATCHERS = 1000;

export interface ReportSettings {
  rate: number;
  durationS: number;
  sessions: number;
  profiles: number;
  clientProcs: number;
  channels: number;
}

/** "A / B / clients / other" CPU, % of one core, and FerretDB when it runs. */
function cpuCell(c: CpuShare): string {
  return `${c.A.toFixed(0)} / ${c.B.toFixed(0)} / ${c.clients.toFixed(0)} / ${c.other.toFixed(0)}${c.db > 0 ? ` (+FerretDB ${c.db.toFixed(0)})` : ""}`;
}

export function render(results: StoreResult[], o: ReportSettings): string {
  const out: string[] = [];
  out.push("");
  out.push(
    `WatchSessions delivery: ${o.rate} changes/s requested (UpdateSession via replica A, open loop) for ${o.durationS} s per run, ` +
      `${o.sessions} sessions in ${o.profiles} profiles; filtered watcher = one profile; ${o.clientProcs} client processes x ` +
      `${o.channels} channels; latency = receipt at the watcher - write ack at the writer; ${CORES} cores, node ${process.version}`,
  );
  for (const r of results) {
    out.push("");
    const of = r.build ? ` (baseline build ${r.build})` : "";
    if (r.error) {
      out.push(`${r.store}${of}: not measured: ${r.error}`);
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
      `${r.store === "sqlite" ? "embedded SQLite store (2 processes, one file)" : "MongoDB store on FerretDB (2 processes, one database)"}${of}: ` +
        `${r.rate} changes/s; write capacity ${r.capacity!.toFixed(0)} changes/s (closed loop, 8 concurrent writers, no watchers)`,
    );
    out.push("");
    out.push(
      table(
        [
          "run",
          "deliveries/change",
          "p50 ms",
          "p99 ms",
          "max ms",
          "from write start p50 / p99 ms",
          "delivered",
          "changes/s",
          "ack p50 / p99 ms",
          "idle KB/watcher",
          "CPU % A / B / clients / other",
          "loop delay p99 ms",
        ],
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
    const at = (replica: Replica): WatchRun | undefined =>
      r.runs.find((x) => x.filtered && x.watchers === TARGET_WATCHERS && x.replica === replica);
    const slow = r.rate! < o.rate;
    const verdict = (ok: boolean): string =>
      slow ? `MISS (measured at ${r.rate} changes/s: the store takes only ${r.capacity!.toFixed(0)}/s)` : ok ? "PASS" : "MISS";
    const target = `target ${r.store}${of}`;
    if (slow) out.push(`${target}: ${o.rate} changes/s: MISS: the write path alone sustains ${r.capacity!.toFixed(0)} changes/s`);
    const a = at("A");
    const bb = at("B");
    if (a)
      out.push(
        `${target}: ${TARGET_WATCHERS} watchers, p99 same replica ${ms(a.latency.p99)} ms < ${TARGET_SAME_P99_MS} ms: ${verdict(a.latency.p99 < TARGET_SAME_P99_MS && a.missing === 0)}`,
      );
    if (bb)
      out.push(
        `${target}: ${TARGET_WATCHERS} watchers, p99 cross replica ${ms(bb.latency.p99)} ms < ${TARGET_CROSS_P99_MS} ms: ${verdict(bb.latency.p99 < TARGET_CROSS_P99_MS && bb.missing === 0)}`,
      );
    const mem = r.runs.filter((x) => x.watchers === TARGET_WATCHERS && x.filtered);
    if (mem.length > 0) {
      const worst = Math.max(...mem.map((x) => x.kbPerWatcher));
      // Idle memory does not depend on the write rate.
      out.push(
        `${target}: idle watcher ${worst.toFixed(1)} KB of server RSS (worst of ${mem.map((x) => x.replica).join(", ")}) < ${TARGET_KB_PER_WATCHER} KB: ${worst < TARGET_KB_PER_WATCHER ? "PASS" : "MISS"}`,
      );
    }
    const onA = r.runs.filter((x) => x.replica === "A");
    if (onA.length > 0) {
      out.push(
        `write path of ${r.store}${of} with watchers on the writing replica: ack p99 ${ms(b.ack.p99)} ms alone, ` +
          onA
            .map(
              (x) =>
                `${ms(x.write.ack.p99)} ms with ${x.watchers}${x.filtered ? "" : " unfiltered"} (replica A CPU ${x.cpu.A.toFixed(0)}%)`,
            )
            .join(", "),
      );
    }
    if (r.profile) out.push("", r.profile);
  }
  const pairs = comparison(results);
  if (pairs) out.push("", pairs);
  return out.join("\n");
}

/** With --baseline: the key figures of each run of this build beside the baseline build's. */
function comparison(results: StoreResult[]): string | undefined {
  const out: string[] = [];
  for (const base of results.filter((r) => r.build && !r.error)) {
    const ours = results.find((r) => r.store === base.store && !r.build && !r.error);
    if (!ours) continue;
    const pair = (a: number, b: number, f: (x: number) => string = ms): string => `${f(a)} / ${f(b)}`;
    const pct = (x: number): string => x.toFixed(0);
    const rows: string[][] = [];
    const ob = ours.baseline!;
    const bb = base.baseline!;
    rows.push([
      "baseline: writes only, no watchers",
      "-",
      "-",
      pair(ob.ack.p99, bb.ack.p99),
      pair(ob.cpu.A, bb.cpu.A, pct),
      pair(ob.cpu.B, bb.cpu.B, pct),
      "-",
    ]);
    for (const x of ours.runs) {
      const y = base.runs.find((b) => b.replica === x.replica && b.watchers === x.watchers && b.filtered === x.filtered);
      if (!y) continue;
      rows.push([
        `${x.watchers} ${x.filtered ? "" : "unfiltered "}watchers on ${x.replica}`,
        pair(x.latency.p50, y.latency.p50),
        pair(x.latency.p99, y.latency.p99),
        pair(x.write.ack.p99, y.write.ack.p99),
        pair(x.cpu.A, y.cpu.A, pct),
        pair(x.cpu.B, y.cpu.B, pct),
        pair(x.kbPerWatcher, y.kbPerWatcher, (v) => v.toFixed(1)),
      ]);
    }
    out.push(`${base.store}: this build / baseline build (${base.build}), same rounds, ${ours.rate} / ${base.rate} changes/s`, "");
    out.push(table(["run", "p50 ms", "p99 ms", "ack p99 ms", "CPU % A", "CPU % B", "idle KB/watcher"], rows));
  }
  return out.length ? out.join("\n") : undefined;
}
