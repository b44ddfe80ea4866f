// Summarizes a V8 .cpuprofile (node --cpu-prof): self time by function, self time by module
// (package, node internals, project file) and inclusive time of the project's own functions.
// Usage: node dist/bench/profile-summary.js <file.cpuprofile> [top=25]

import * as fs from "node:fs";
import { REPO as ROOT } from "./lib/processes";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

function shortUrl(url: string): string {
  if (url === "") return "";
  let u = url.replace(/^file:\/\//, "");
  const nm = u.lastIndexOf("/node_modules/");
  if (nm >= 0) return u.slice(nm + "/node_modules/".length);
  if (u.startsWith(ROOT + "/")) u = u.slice(ROOT.length + 1);
  return u;
}

/** The module a frame belongs to: an npm package, "node:<internal>", a project file, or a V8 pseudo frame. */
function moduleOf(frame: CallFrame): string {
  const url = frame.url;
  if (url === "") return frame.functionName.startsWith("(") ? frame.functionName : "(native / V8 builtins)";
  if (url.startsWith("node:")) return url.startsWith("node:internal/") ? "node:internal/" + url.split("/")[1] : url;
  const u = url.replace(/^file:\/\//, "");
  const nm = u.lastIndexOf("/node_modules/");
  if (nm >= 0) {
    const rest = u.slice(nm + "/node_modules/".length).split("/");
    return rest[0].startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  return shortUrl(url);
}

function frameKey(frame: CallFrame): string {
  const name = frame.functionName || "(anonymous)";
  const url = shortUrl(frame.url);
  return url ? `${name}  ${url}:${frame.lineNumber + 1}` : name;
}

export interface ProfileSummary {
  /** Sampled time with the process busy (without "(idle)"), ms. */
  totalMs: number;
  idleMs: number;
  bySelf: [string, number][];
  byModule: [string, number][];
  projectInclusive: [string, number][];
}

export function summarize(file: string): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = new Map<string, number>();
  const mods = new Map<string, number>();
  const incl = new Map<string, number>();
  let total = 0;
  let idle = 0;
  const add = (m: Map<string, number>, k: string, v: number): void => void m.set(k, (m.get(k) ?? 0) + v);
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = (profile.timeDeltas[i] ?? 0) / 1000;
    const node = byId.get(profile.samples[i]);
    if (!node) continue;
    if (node.callFrame.functionName === "(idle)") {
      idle += dt;
      continue;
    }
    total += dt;
    add(self, frameKey(node.callFrame), dt);
    add(mods, moduleOf(node.callFrame), dt);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)!.callFrame;
      const u = shortUrl(f.url);
      if (!(u.startsWith("dist/src/") || u.startsWith("dist/gen/"))) continue;
      const k = frameKey(f);
      if (!seen.has(k)) {
        seen.add(k);
        add(incl, k, dt);
      }
    }
  }
  const sorted = (m: Map<string, number>): [string, number][] => [...m.entries()].sort((a, b) => b[1] - a[1]);
  return { totalMs: total, idleMs: idle, bySelf: sorted(self), byModule: sorted(mods), projectInclusive: sorted(incl) };
}

export function formatSummary(s: ProfileSummary, top = 25): string {
  const pct = (v: number): string => `${((100 * v) / s.totalMs).toFixed(1).padStart(5)}%`;
  const lines: string[] = [];
  const section = (title: string, rows: [string, number][]): void => {
    lines.push(title);
    for (const [k, v] of rows.slice(0, top)) lines.push(`  ${pct(v)}  ${v.toFixed(0).padStart(7)} ms  ${k}`);
    lines.push("");
  };
  lines.push(`profile: ${s.totalMs.toFixed(0)} ms busy (+ ${s.idleMs.toFixed(0)} ms idle); percentages are of busy time`, "");
  section("self time by module", s.byModule);
  section("self time by function", s.bySelf);
  section("inclusive time of the project's functions (dist/src, dist/gen)", s.projectInclusive);
  return lines.join("\n");
}

if (require.main === module) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write("usage: node dist/bench/profile-summary.js <file.cpuprofile> [top]\n");
    process.exit(2);
  }
  process.stdout.write(formatSummary(summarize(file), Number(process.argv[3] ?? 25)) + "\n");
}
