// The budget of each port call. Deadlines are enforced on the client with an AbortSignal per call
// (driver 7's timeoutMS does nothing), plus maxTimeMS so that the server stops the work too. A
// write's budget is capped (MAX_WRITE_MS): the change log's lease relies on it (changes.ts,
// docs/watch.md). Details: docs/mongodb.md ("Deadlines").

import { setMaxListeners } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";

import { StoreUnavailableError } from "../../domain/errors";
import type { CallOptions } from "../../domain/store";
import { toStoreError } from "./errors";

const DEFAULT_CALL_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_CALL_MS = 30_000;
/** How much longer than a call's budget the server may work on it (maxTimeMS). */
export const SERVER_TIME_MARGIN_MS = 1_000;
/**
 * The budget of a write call (create, update, delete) is capped here, whatever the deadline:
 * every operation of a write is issued within this of its reservation (taken inside the call).
 */
export const MAX_WRITE_MS = 10_000;

/** The budget of one port call: an AbortSignal for the driver and maxTimeMS for the server. */
export class Call {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  readonly end: number;
  private unfollow?: () => void;
  /** `follow`: the caller's signal (client cancelled, RPC deadline); the call aborts with it. */
  constructor(budgetMs: number, follow?: AbortSignal) {
    // Every driver operation of the call adds two listeners to the signal while it runs (measured
    // with driver 7), and a call may run many at once: 32 lookups in outcomesFrom, one visit
    // search per profile in a batch of creates. The signal is this call's own and every listener
    // goes when its operation ends, so there is no leak to warn about: no limit.
    setMaxListeners(0, this.controller.signal);
    this.end = Date.now() + budgetMs;
    this.timer = setTimeout(() => this.controller.abort(new Error("deadline exceeded")), budgetMs);
    this.timer.unref();
    if (follow?.aborted) this.controller.abort(follow.reason);
    else if (follow) {
      const onAbort = (): void => this.controller.abort(follow.reason);
      follow.addEventListener("abort", onAbort, { once: true });
      this.unfollow = () => follow.removeEventListener("abort", onAbort);
    }
  }
  get signal(): AbortSignal {
    return this.controller.signal;
  }
  /**
   * Options for a driver call; `signal` is honoured by every operation in driver 7. The server's
   * maxTimeMS runs a little longer than the budget, so the client gives up first and the
   * outcome is always the same error (also on FerretDB: docs/mongodb.md, "Errors").
   */
  get opts(): { signal: AbortSignal; maxTimeMS: number } {
    return { signal: this.controller.signal, maxTimeMS: Math.max(1, Math.ceil(this.end - Date.now())) + SERVER_TIME_MARGIN_MS };
  }
  done(): void {
    clearTimeout(this.timer);
    this.unfollow?.();
  }
}

/** Limits of the call budgets (MongoStoreOptions). */
export interface CallLimits {
  /** Budget of a call that has no deadline; default 5 s. */
  timeoutMs?: number;
  /** Upper bound of any call's budget, also with a later deadline; default 30 s. */
  maxCallMs?: number;
}

/** Runs port calls inside their budgets; refuses them once the store is closed. */
export class CallRunner {
  closed = false;

  constructor(private readonly limits: CallLimits) {}

  /**
   * Runs one port call inside its budget and maps every error to the port's errors. A write's
   * budget is at most MAX_WRITE_MS (see CLAIM_LEASE_MS in changes.ts).
   */
  async run<T>(options: CallOptions, write: boolean | ((call: Call) => Promise<T>), body?: (call: Call) => Promise<T>): Promise<T> {
    if (typeof write === "function") return this.run(options, false, write);
    if (this.closed) throw new StoreUnavailableError("the session store is closed");
    const max = this.limits.maxCallMs ?? DEFAULT_MAX_CALL_MS;
    let budget = this.limits.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    if (options.deadline !== undefined) budget = Math.min(options.deadline.getTime() - Date.now(), max);
    if (write) budget = Math.min(budget, MAX_WRITE_MS);
    if (budget <= 0) throw new StoreUnavailableError("the deadline has passed");
    const call = new Call(budget, options.signal);
    try {
      return await body!(call);
    } catch (err) {
      throw toStoreError(err, call);
    } finally {
      call.done();
    }
  }
}

/** Settles like `promise`, or rejects with the signal's reason when it aborts first. */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

export async function backoff(attempt: number, call: Call): Promise<void> {
  const ms = 1 + Math.random() * Math.min(50, 2 ** attempt);
  await sleep(ms, undefined, { signal: call.signal });
}
