// Reading environment variables: whole numbers, booleans, one-of values and durations, the
// naming rule (a duration's unit is in its value, a size ends in _BYTES) and the deprecated names
// still read. src/config.ts says which variables there are; this file says how one is read.

import type { Logger } from "./log";

export class ConfigError extends Error {}

export function bool(env: Record<string, string | undefined>, name: string): boolean {
  const raw = env[name];
  if (raw === undefined || raw === "" || raw === "false") return false;
  if (raw === "true") return true;
  throw new ConfigError(`${name}=${JSON.stringify(raw)} is invalid: expected true or false`);
}

export type Env = Record<string, string | undefined>;

export function int(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return def;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)} is invalid: expected a whole number from ${min} to ${max}`);
  }
  return n;
}

export const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 };

/** A duration: a number with a unit (ms, s, m, h, d), e.g. "30m", "1500ms", "24h"; a bare number is seconds. */
export function parseDurationMs(raw: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(raw.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * UNIT_MS[m[2] ?? "s"];
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

/** `ms` in the largest unit that divides it exactly: 600000 -> "10m", 1500 -> "1500ms". */
export function formatDuration(ms: number): string {
  for (const unit of ["d", "h", "m", "s"]) {
    if (ms !== 0 && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}

/**
 * The naming rule: a duration's name carries no unit and its value does ("500ms", "30s", "15m",
 * "24h", "7d"; a bare number is seconds); a size ends in _BYTES and is a byte count; a count is a
 * plain number. The variables below had their unit in the name: the old name is still read, as
 * a whole number in its old unit, and startup logs a deprecation warning (deprecatedVariables).
 * Setting both names is refused, as the two values could disagree. A name can have several old
 * ones: SESSION_RETENTION was MONGODB_RETENTION (a duration, `unit: "duration"`), which was
 * MONGODB_RETENTION_DAYS.
 */
type OldUnit = "ms" | "h" | "d" | "duration";
const RENAMED: Record<string, Array<{ old: string; unit: OldUnit }>> = Object.fromEntries(
  Object.entries({
    SESSION_RETENTION: [
      { old: "MONGODB_RETENTION", unit: "duration" },
      { old: "MONGODB_RETENTION_DAYS", unit: "d" },
    ],
    STORE_TIMEOUT: { old: "STORE_TIMEOUT_MS", unit: "ms" },
    HEALTH_PROBE_INTERVAL: { old: "HEALTH_PROBE_INTERVAL_MS", unit: "ms" },
    HEALTH_PROBE_TIMEOUT: { old: "HEALTH_PROBE_TIMEOUT_MS", unit: "ms" },
    SHUTDOWN_GRACE: { old: "SHUTDOWN_GRACE_MS", unit: "ms" },
    WATCH_POLL_INTERVAL: { old: "WATCH_POLL_MS", unit: "ms" },
    WATCH_RETENTION: { old: "WATCH_RETENTION_HOURS", unit: "h" },
    HEADERS_TIMEOUT: { old: "HEADERS_TIMEOUT_MS", unit: "ms" },
    GRPC_IDLE_TIMEOUT: { old: "GRPC_IDLE_TIMEOUT_MS", unit: "ms" },
    GRPC_KEEPALIVE_TIME: { old: "GRPC_KEEPALIVE_TIME_MS", unit: "ms" },
    GRPC_KEEPALIVE_TIMEOUT: { old: "GRPC_KEEPALIVE_TIMEOUT_MS", unit: "ms" },
    HTTP_REQUEST_TIMEOUT: { old: "HTTP_REQUEST_TIMEOUT_MS", unit: "ms" },
    HTTP_KEEP_ALIVE_TIMEOUT: { old: "HTTP_KEEP_ALIVE_TIMEOUT_MS", unit: "ms" },
  } as Record<string, { old: string; unit: OldUnit } | Array<{ old: string; unit: OldUnit }>>).map(([name, olds]) => [
    name,
    Array.isArray(olds) ? olds : [olds],
  ]),
);

/** A variable set under its deprecated name, and the setting that replaces it. */
export interface DeprecatedVariable {
  old: string;
  name: string;
  /** The old value with its unit, e.g. "5000ms" for STORE_TIMEOUT_MS=5000. */
  value: string;
}

/** The deprecated names set in `env` (loadConfig has accepted them). */
export function deprecatedVariables(env: Env = process.env): DeprecatedVariable[] {
  return Object.entries(RENAMED).flatMap(([name, olds]) =>
    olds
      .filter(({ old }) => env[old] !== undefined && env[old] !== "")
      .map(({ old, unit }) => ({ old, name, value: `${(env[old] ?? "").trim()}${unit === "duration" ? "" : unit}` })),
  );
}

/** Logs one warning per deprecated name set in `env`, naming the new setting. */
export function warnDeprecatedVariables(log: Pick<Logger, "warn">, env: Env = process.env): void {
  for (const { old, name, value } of deprecatedVariables(env)) {
    log.warn(`${old} is deprecated: set ${name}=${value} instead`, { variable: old, replacement: name });
  }
}

export const DAY_MS = UNIT_MS.d;

/** Whether `name` or its deprecated name is set to a non-empty value. */
export function isSet(env: Env, name: string): boolean {
  return nameSet(env, name) !== name || (env[name] !== undefined && env[name] !== "");
}

/** The name `name` is set under in `env` (its deprecated one, if that is the one set). */
export function nameSet(env: Env, name: string): string {
  return oldSet(env, name)?.old ?? name;
}

/** The deprecated name of `name` set in `env`, if any; refuses two names of one setting. */
function oldSet(env: Env, name: string): { old: string; unit: OldUnit } | undefined {
  const given = (n: string) => env[n] !== undefined && env[n] !== "";
  const olds = (RENAMED[name] ?? []).filter(({ old }) => given(old));
  if (olds.length === 0) return undefined;
  const other = given(name) ? name : olds.length > 1 ? olds[1].old : undefined;
  if (other !== undefined) {
    throw new ConfigError(`${olds[0].old} and ${other} are both set: ${olds[0].old} is a deprecated name of ${name}, remove it`);
  }
  return olds[0];
}

export function duration(env: Env, name: string, defMs: number, minMs: number, maxMs: number): number {
  const renamed = oldSet(env, name);
  if (renamed && renamed.unit !== "duration") {
    const unitMs = UNIT_MS[renamed.unit];
    return int(env, renamed.old, defMs / unitMs, minMs / unitMs, maxMs / unitMs) * unitMs;
  }
  const varName = renamed?.old ?? name;
  const raw = env[varName];
  if (raw === undefined || raw === "") return defMs;
  const ms = parseDurationMs(raw);
  if (ms === undefined || ms < minMs || ms > maxMs) {
    throw new ConfigError(
      `${varName}=${JSON.stringify(raw)} is invalid: expected a duration such as "500ms", "30s", "15m" or "24h", from ${formatDuration(minMs)} to ${formatDuration(maxMs)}`,
    );
  }
  return ms;
}

export function oneOf<T extends string>(env: Env, name: string, def: T, allowed: readonly T[]): T {
  const raw = env[name];
  if (raw === undefined || raw === "") return def;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)} is invalid: expected one of ${allowed.join(", ")}`);
  }
  return raw as T;
}
