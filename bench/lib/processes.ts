// Child processes of the benches: spawning (optionally pinned to CPUs), the `BENCH` line protocol
// (bench/lib/protocol.ts) from the parent's side, FerretDB, temp dirs, and a cleanup that stops
// every child and removes every temp dir on any exit path.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import type { Stats } from "../child";
import { parseLine } from "./protocol";

/** The checkout this build belongs to (this file is dist/bench/lib/processes.js). */
export const REPO = path.resolve(__dirname, "..", "..", "..");

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** CLOCK_MONOTONIC in ms: one clock for every process of the machine. */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

// ---------------------------------------------------------------------------------------------
// Cleanup

const children = new Set<ChildProcess>();
const tempDirs: string[] = [];
const hooks: (() => void)[] = [];

/** Kills `proc` at cleanup if it still runs. */
export function track(proc: ChildProcess): ChildProcess {
  children.add(proc);
  proc.on("exit", () => children.delete(proc));
  return proc;
}

/** Runs `fn` at cleanup (once, in reverse order of registration). */
export function onCleanup(fn: () => void): void {
  hooks.push(fn);
}

/** A fresh temp dir, removed at cleanup. */
export function tempDir(prefix: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

export function cleanupSync(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  children.clear();
  for (const fn of hooks.splice(0).reverse()) fn();
  for (const d of tempDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

/**
 * Runs a bench's main: cleans up on exit and on SIGINT/SIGTERM/SIGHUP, prints a failure as
 * `name: stack` and exits 1; otherwise exits with main's code (0 when it returns nothing).
 */
export function runMain(name: string, main: () => Promise<number | void>): void {
  process.on("exit", cleanupSync);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(sig, () => {
      process.stderr.write(`\n${name}: ${sig}, stopping\n`);
      cleanupSync();
      process.exit(130);
    });
  }
  main().then(
    (code) => {
      cleanupSync();
      process.exit(code ?? 0);
    },
    (err: unknown) => {
      process.stderr.write(`${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      cleanupSync();
      process.exit(1);
    },
  );
}

// ---------------------------------------------------------------------------------------------
// Spawning

/** `cmd args`, run through `taskset -c cpus` when `cpus` is set (taskset execs: the pid stays). */
export function pinned(cmd: string, args: string[], cpus?: string): [string, string[]] {
  return cpus === undefined ? [cmd, args] : ["taskset", ["-c", cpus, cmd, ...args]];
}

export interface NodeChildOptions {
  /** Node's own arguments (--cpu-prof, --expose-gc). */
  nodeArgs?: string[];
  /** The script's arguments. */
  args?: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Pin to these CPUs (taskset). */
  cpus?: string;
}

/** Starts `node script` with stdin and stdout piped (the protocol) and stderr inherited. */
export function spawnNode(script: string, o: NodeChildOptions = {}): ChildProcess {
  const [cmd, args] = pinned(process.execPath, [...(o.nodeArgs ?? []), script, ...(o.args ?? [])], o.cpus);
  return track(spawn(cmd, args, { cwd: o.cwd ?? REPO, env: { ...process.env, ...o.env }, stdio: ["pipe", "pipe", "inherit"] }));
}

// ---------------------------------------------------------------------------------------------
// The parent's side of the protocol

/**
 * A child speaking `BENCH {json}` lines. Other stdout lines are forwarded to stderr as
 * `[name] line`, at most `logLimit` per 10 s when set (an overloaded store logs every failure).
 */
export class BenchChild {
  private readonly waiters: { type: string; resolve: (msg: Record<string, unknown>) => void }[] = [];
  private exited?: string;
  private forwarded = 0;
  private suppressed = 0;
  private window = 0;
  /** The child's `ready` message (its port, for a server). */
  readonly ready: Promise<Record<string, unknown>>;

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
    o: { readyTimeoutMs?: number; logLimit?: number } = {},
  ) {
    this.ready = this.expect("ready", o.readyTimeoutMs ?? 60_000);
    this.ready.catch(() => undefined); // the caller that awaits it sees the error
    readline.createInterface({ input: proc.stdout! }).on("line", (line) => {
      const msg = parseLine(line);
      if (!msg) return this.forward(line, o.logLimit);
      const i = this.waiters.findIndex((w) => w.type === msg.type);
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve(msg);
    });
    proc.on("exit", (code, signal) => {
      this.exited = `exited (code ${code}, signal ${signal})`;
      for (const w of this.waiters.splice(0)) w.resolve({ type: "exit", error: this.exited });
    });
  }

  private forward(line: string, limit: number | undefined): void {
    if (limit !== undefined) {
      const w = Math.floor(Date.now() / 10_000);
      if (w !== this.window) {
        if (this.suppressed > 0) process.stderr.write(`[${this.name}] (${this.suppressed} more log lines left out)\n`);
        this.window = w;
        this.forwarded = this.suppressed = 0;
      }
      if (this.forwarded++ >= limit) {
        this.suppressed++;
        return;
      }
    }
    process.stderr.write(`[${this.name}] ${line}\n`);
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

  /** The child's memory and CPU (bench/child.ts `stats`). */
  async stats(): Promise<Stats> {
    return (await this.expect("stats", 10_000, "stats")) as unknown as Stats;
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

// ---------------------------------------------------------------------------------------------
// Tools and FerretDB

/** Where scripts/tools.sh keeps the tools it builds (ghz, ferretdb). */
export function toolsDir(): string {
  return spawnSync("bash", [path.join(REPO, "scripts", "tools.sh"), "--print-dir"], { cwd: REPO, encoding: "utf8" }).stdout.trim();
}

const FERRET = path.join(REPO, "scripts", "ferretdb.sh");

/** Starts a private FerretDB in `dir` (scripts/ferretdb.sh), stopped at cleanup or by stopFerret. */
export function startFerret(dir: string, env: NodeJS.ProcessEnv = process.env): { uri: string; pid?: number } {
  onCleanup(() => stopFerret(dir));
  const r = spawnSync("bash", [FERRET, "start", dir], { cwd: REPO, encoding: "utf8", env, timeout: 600_000 });
  if (r.status !== 0) throw new Error(`scripts/ferretdb.sh start failed: ${(r.stderr || r.stdout || String(r.error)).trim()}`);
  let pid: number | undefined;
  try {
    pid = Number(fs.readFileSync(path.join(dir, "ferretdb.pid"), "utf8").trim()) || undefined;
  } catch {
    pid = undefined;
  }
  return { uri: r.stdout.trim(), pid };
}

const ferretStopped = new Set<string>();

export function stopFerret(dir: string): void {
  if (ferretStopped.has(dir)) return;
  ferretStopped.add(dir);
  spawnSync("bash", [FERRET, "stop", dir], { stdio: "ignore", timeout: 20_000 });
}
