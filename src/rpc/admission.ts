// Global admission control of unary calls, shared by both engines (gRPC and HTTP ports): at most
// `max` calls run at once; one more fails at once with RESOURCE_EXHAUSTED and a RetryInfo. There
// is no waiting room: a queue would only add latency to calls that the store could not serve
// sooner anyway, and a burst of cancelled calls would pile up in it.
//
// A slot is freed when the call settles or when its signal aborts (the client cancelled or reset
// the stream, the deadline passed), whichever comes first: a burst of reset calls never holds
// slots for work nobody waits for. The store drops queued work whose signal aborted, and a
// write under way completes or fails as a whole, so freeing the slot early cannot pile up work.
// Health and reflection are not admitted here: health must answer when everything else is full.

import { ResourceExhaustedError } from "../domain/errors";

/** The RetryInfo delay of a call refused for lack of a slot. */
export const RETRY_AFTER_MS = 100;

export class Admission {
  private running = 0;

  constructor(readonly max: number) {}

  /** Calls in flight now. */
  get inFlight(): number {
    return this.running;
  }

  /**
   * Takes a slot and returns the function that frees it (idempotent), or throws
   * ResourceExhaustedError (reason TOO_MANY_CALLS) when every slot is taken. The caller frees it
   * when the call settles or is cancelled, whichever comes first.
   */
  enter(): () => void {
    if (this.running >= this.max) {
      throw new ResourceExhaustedError(
        "TOO_MANY_CALLS",
        `the server is at its limit of ${this.max} concurrent calls (MAX_CONCURRENT_CALLS); retry later`,
        RETRY_AFTER_MS,
        { limit: String(this.max) },
      );
    }
    this.running++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.running--;
    };
  }

  /**
   * Runs `call` in a slot freed when it settles or `signal` aborts; throws like enter() when
   * every slot is taken, and the signal's reason when it has already aborted (nobody waits for
   * the answer: the engine answers nothing, or the deadline status).
   */
  async run<T>(signal: AbortSignal, call: () => Promise<T>): Promise<T> {
    if (signal.aborted) throw signal.reason ?? new Error("the call was cancelled before it started");
    const release = this.enter();
    signal.addEventListener("abort", release, { once: true });
    try {
      return await call();
    } finally {
      signal.removeEventListener("abort", release);
      release();
    }
  }
}
