// CPU accounting from /proc (Linux): the machine's ticks, a process's and a thread's CPU time.

import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";

export const CORES = os.cpus().length;
const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

export interface Ticks {
  busy: number;
  total: number;
}

/** The machine's busy and total CPU ticks so far (/proc/stat, all cores). */
export function machineTicks(): Ticks {
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = v[3] + (v[4] ?? 0);
  return { busy: total - idle, total };
}

/** The machine's CPU use between two samples, % of ONE core (so up to CORES x 100). */
export function machineCpu(a: Ticks, b: Ticks): number {
  return (100 * CORES * (b.busy - a.busy)) / Math.max(1, b.total - a.total);
}

/** CPU used by the whole machine over `ms`, % of one core (before a bench starts: other processes). */
export async function backgroundCpu(ms: number): Promise<number> {
  const a = machineTicks();
  await new Promise((r) => setTimeout(r, ms));
  return machineCpu(a, machineTicks());
}

/** user + system ticks of a /proc/.../stat file, in seconds; undefined if it cannot be read. */
function statSeconds(file: string): number | undefined {
  try {
    const stat = fs.readFileSync(file, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) of a process so far, seconds; undefined once it is gone. */
export function procCpuSeconds(pid: number): number | undefined {
  return statSeconds(`/proc/${pid}/stat`);
}

/** CPU time of a process so far, µs; 0 when there is no such process. */
export function procCpuUs(pid: number | undefined): number {
  return pid === undefined ? 0 : (procCpuSeconds(pid) ?? 0) * 1e6;
}

/** CPU time of the calling thread so far, µs (/proc/thread-self/stat); NaN where it is missing. */
export function threadCpuUs(): number {
  const s = statSeconds("/proc/thread-self/stat");
  return s === undefined ? NaN : s * 1e6;
}

/**
 * Samples a child's CPU every 100 ms while it runs; `percent()` is its CPU since the start, %
 * of one core (the last ~100 ms before it exits are missed).
 */
export function sampleCpu(pid: number): { percent: () => number; stop: () => void } {
  const t0 = process.hrtime.bigint();
  let cpu = 0;
  const timer = setInterval(() => {
    const c = procCpuSeconds(pid);
    if (c !== undefined) cpu = (100 * c) / (Number(process.hrtime.bigint() - t0) / 1e9);
  }, 100);
  return { percent: () => cpu, stop: () => clearInterval(timer) };
}
