// Every background job of a process, started and stopped together by src/server.ts:
// - the expiry pass (src/domain/lifecycle.ts): ends idle and over-long sessions;
// - the change-log trim: drops changes older than the watch resume window (WATCH_RETENTION);
// - the retention sweep (SESSION_RETENTION, src/domain/retention.ts): deletes old sessions.
// Each job runs on an unref'd timer (a job never keeps the process alive), never overlaps
// itself in this process, and logs a failure and tries again on its next tick. Other replicas
// run the same jobs; each one is safe to run concurrently (conditional writes, idempotent trims).

import type { ExpiryPass, Lifecycle } from "./lifecycle";
import { purgeRetained } from "./retention";
import type { CallOptions, SessionStore } from "./store";

interface JobLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/** How often the change log is trimmed. */
export const DEFAULT_TRIM_INTERVAL_MS = 60_000;
/** How often the retention sweep runs. */
export const DEFAULT_RETENTION_INTERVAL_MS = 3600_000;

export interface JobsOptions {
  /** How often an expiry pass runs (SESSION_EXPIRY_INTERVAL). */
  expiryIntervalMs: number;
  /** How long the change log keeps changes: the resume window of WatchSessions. */
  changeRetentionMs: number;
  trimIntervalMs?: number;
  /** Sessions inserted longer ago than this are deleted (SESSION_RETENTION); undefined keeps them. */
  sessionRetentionMs?: number;
  retentionIntervalMs?: number;
  /** Told of every expiry pass: its outcome, or null when it failed (the metrics count them). */
  onExpiryPass?: (pass: ExpiryPass | null) => void;
}

export interface Jobs {
  /** Stops every timer and waits for the jobs in progress (a trim or sweep is asked to stop). */
  stop(): Promise<void>;
}

export function startJobs(store: SessionStore, lifecycle: Lifecycle, log: JobLog, options: JobsOptions): Jobs {
  const stopping = new AbortController();
  const call: CallOptions = { signal: stopping.signal };
  const expiry = startExpiry(lifecycle, options.expiryIntervalMs, log, options.onExpiryPass);
  const trim = every(options.trimIntervalMs ?? DEFAULT_TRIM_INTERVAL_MS, stopping.signal, async () => {
    try {
      await store.trimChanges(new Date(Date.now() - options.changeRetentionMs), call);
    } catch (err) {
      if (!stopping.signal.aborted) log.warn("change log trim failed", { error: String(err) });
    }
  });
  const retentionMs = options.sessionRetentionMs;
  const retention =
    retentionMs !== undefined &&
    every(options.retentionIntervalMs ?? DEFAULT_RETENTION_INTERVAL_MS, stopping.signal, async () => {
      try {
        const deleted = await purgeRetained(store, retentionMs, new Date(), call);
        if (deleted > 0) log.info("sessions past their retention deleted", { deleted });
      } catch (err) {
        if (!stopping.signal.aborted) log.warn("retention sweep failed; retried on the next tick", { error: String(err) });
      }
    });
  return {
    async stop() {
      stopping.abort();
      await Promise.all([expiry.stop(), trim.stop(), retention ? retention.stop() : undefined]);
    },
  };
}

/** Runs `job` every `intervalMs` (not at once), skipping a tick while the previous run is in progress. */
function every(intervalMs: number, stopped: AbortSignal, job: () => Promise<void>): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running || stopped.aborted) return;
    running = job().finally(() => (running = undefined));
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}

export interface ExpiryRunner {
  /** Stops the timer and waits for a pass in progress. */
  stop(): Promise<void>;
}

/**
 * Runs an expiry pass at once and then every `intervalMs` (never two at once in this process;
 * other replicas' passes are harmless, see expire()). A pass that stopped at maxPerPass is
 * followed by the next one at once, so a backlog (after downtime) drains without waiting an
 * interval per batch.
 * Failures are logged and the next pass tries again.
 */
export function startExpiry(
  lifecycle: Lifecycle,
  intervalMs: number,
  log: { info(msg: string, fields?: Record<string, unknown>): void; warn(msg: string, fields?: Record<string, unknown>): void },
  onPass?: (pass: ExpiryPass | null) => void,
): ExpiryRunner {
  let running: Promise<void> | undefined;
  let stopped = false;
  const run = (): void => {
    if (running || stopped) return;
    running = lifecycle
      .expire()
      .then(
        (pass) => {
          onPass?.(pass);
          if (pass.ended > 0) log.info("sessions expired", { ended: pass.ended, skipped: pass.skipped });
          return pass.ended >= lifecycle.maxPerPass;
        },
        (err: unknown) => {
          onPass?.(null);
          log.warn("expiry pass failed; the next one retries", { error: err instanceof Error ? err.message : String(err) });
          return false;
        },
      )
      .then((more) => {
        running = undefined;
        if (more) setImmediate(run);
      });
  };
  const timer = setInterval(run, intervalMs);
  timer.unref();
  setImmediate(run);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
