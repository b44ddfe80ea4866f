// Command-line options: one loop for every bench, and the value checks they share.

import * as fs from "node:fs";
import * as path from "node:path";

/** A handler per option; `value()` takes the option's value (the next argument). */
export type OptionHandlers = Record<string, (value: () => string, name: string) => void>;

/** Runs the handler of each option in `argv`; an unknown option or a missing value throws. */
export function parseArgs(argv: string[], handlers: OptionHandlers): void {
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    const handler = Object.prototype.hasOwnProperty.call(handlers, name) ? handlers[name] : undefined;
    if (!handler) throw new Error(`unknown option ${name}`);
    handler(() => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${name} needs a value`);
      return v;
    }, name);
  }
}

/** A whole number in [min, max]. */
export function int(v: string, name: string, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name}: expected a whole number >= ${min}, got ${JSON.stringify(v)}`);
  return n;
}

/** A positive number (fractions allowed). */
export function positive(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}: expected a positive number, got ${JSON.stringify(v)}`);
  return n;
}

/** One of `allowed`. */
export function oneOf<T extends string>(v: string, name: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v))
    throw new Error(`${name}: expected one of ${allowed.join(", ")}, got ${JSON.stringify(v)}`);
  return v as T;
}

/** A comma-separated list, each item checked by `item`. */
export function list<T>(v: string, item: (s: string) => T): T[] {
  return v.split(",").map(item);
}

/** A duration as ghz takes it: 500ms, 10s, 2m. */
export function duration(v: string, name: string): string {
  if (!/^\d+(ms|s|m)$/.test(v)) throw new Error(`${name}: expected a duration like 10s, got ${JSON.stringify(v)}`);
  return v;
}

export function durationMs(d: string): number {
  const m = /^(\d+)(ms|s|m)$/.exec(d);
  if (!m) throw new Error(`not a duration: ${d}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] as "ms" | "s" | "m"];
}

/** --baseline DIR: another checkout, built (DIR/dist/bench/<script> must exist); its absolute path. */
export function baselineDir(dir: string, script: string): string {
  const abs = path.resolve(dir);
  if (!fs.existsSync(path.join(abs, "dist", "bench", script)))
    throw new Error(`--baseline: ${abs}/dist/bench/${script} not found (build that checkout first)`);
  return abs;
}
