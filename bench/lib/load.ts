// Closed-loop load: a fixed number of workers, each issuing its next call as soon as the last
// one answered, for a fixed time.

import { nowMs } from "./processes";

export interface ClosedLoopResult {
  /** Completed calls per second. */
  rate: number;
  ok: number;
  errors: number;
  firstError?: string;
}

/** Runs `worker` in `concurrency` loops for `seconds` (each loop stops at the deadline). */
export async function closedLoop(concurrency: number, seconds: number, worker: () => Promise<void>): Promise<ClosedLoopResult> {
  const start = nowMs();
  const end = start + seconds * 1000;
  let ok = 0;
  let errors = 0;
  let firstError: string | undefined;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (nowMs() < end) {
        try {
          await worker();
          ok++;
        } catch (err) {
          errors++;
          firstError ??= err instanceof Error ? err.message : String(err);
        }
      }
    }),
  );
  return { rate: ok / ((nowMs() - start) / 1000), ok, errors, firstError };
}
