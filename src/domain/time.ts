// Server-set time fields of a session, from the server clock.

import type { SessionTimeDoc } from "./session";

/** Time fields of a session inserted at `insert`: epoch timestamp, weekday (0 = Sunday, UTC). */
export function insertTimeFields(insert: Date): Pick<SessionTimeDoc, "insert" | "timestamp" | "weekday"> {
  return { insert, timestamp: insert.getTime() / 1000, weekday: insert.getUTCDay() };
}

/** Whole seconds from `insert` to `at`, never negative (a clock step back gives 0). */
export function durationSeconds(insert: Date, at: Date): number {
  return Math.max(0, Math.floor((at.getTime() - insert.getTime()) / 1000));
}

/** Source of "now"; injected so tests can fix the time. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
