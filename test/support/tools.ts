// External programs for end-to-end tests: grpcurl, curl, the example clients. `run` waits for a
// program to exit; `spawnStreaming` keeps one running (a watch) and lets a test await its output.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";

export const ROOT = join(__dirname, "..", "..");

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to its end (killed after timeoutMs) and returns its exit code and output. */
export function run(
  file: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    // A program that exits before reading its input (printf) closes the pipe first: not an error.
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? "");
  });
}

/** A human-readable account of a run, for assertion messages. */
export function describeRun(what: string, r: RunResult): string {
  return `${what}\nexit ${r.code ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

/** The path of a tool from scripts/tools.sh (built into the shared cache when missing). */
export function tool(name: string): string {
  execFileSync("bash", [join(ROOT, "scripts", "tools.sh"), name], { stdio: ["ignore", "ignore", "inherit"], timeout: 600_000 });
  const dir = execFileSync("bash", [join(ROOT, "scripts", "tools.sh"), "--print-dir"], { encoding: "utf8" }).trim();
  return join(dir, name);
}

export interface StreamingProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves with the output once `predicate` holds for it; rejects on exit or after timeoutMs. */
  waitFor(predicate: (output: string) => boolean, timeoutMs: number, what: string): Promise<string>;
  /** Interrupts it (SIGINT, like Ctrl-C) and resolves when it has exited. */
  stop(): Promise<void>;
}

/** Starts a long-running program (e.g. a grpcurl watch) whose output a test follows. */
export function spawnStreaming(file: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): StreamingProcess {
  const child = spawn(file, args, { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let exited = false;
  const listeners = new Set<() => void>();
  const changed = () => listeners.forEach((l) => l());
  child.stdout!.setEncoding("utf8").on("data", (d: string) => ((out += d), changed()));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => ((out += d), changed()));
  const closed = new Promise<void>((resolve) =>
    child.on("close", () => {
      exited = true;
      changed();
      resolve();
    }),
  );
  return {
    child,
    output: () => out,
    waitFor: (predicate, timeoutMs, what) =>
      new Promise((resolve, reject) => {
        const done = (err?: Error) => {
          clearTimeout(timer);
          listeners.delete(check);
          if (err) reject(err);
          else resolve(out);
        };
        const check = () => {
          if (predicate(out)) done();
          else if (exited) done(new Error(`${what}: the process exited first; output:\n${out}`));
        };
        const timer = setTimeout(() => done(new Error(`${what}: not seen within ${timeoutMs} ms; output:\n${out}`)), timeoutMs);
        listeners.add(check);
        check();
      }),
    stop: async () => {
      if (!exited) child.kill("SIGINT");
      await closed;
    },
  };
}

/** Polls `probe` until it returns true, at most `timeoutMs` (a bounded loop, not a fixed sleep). */
export async function eventually(probe: () => Promise<boolean>, timeoutMs: number, what: string, everyMs = 100): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > end) throw new Error(`${what}: not reached within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
