// GetSessionStats: session counts over a filter, grouped by one field and by up to 9 more
// (breakdowns), plus how many sessions had activity within the online window and, when asked,
// how many started in each minute of the last hour. The store counts, in one call (one
// snapshot); this checks the input, picks the window and the minutes, and orders the groups.

import { DEFAULT_LIMITS } from "./limits";
import { systemClock, type Clock } from "./time";
import type { FieldViolation } from "./errors";
import { checkId, checkLength, fail } from "./validate";
import { MINUTE_MS, type CallOptions, type SessionStore, type StatsField, type StatsGroupCount } from "./store";

export interface StatsOptions {
  /** Longest filter string (MAX_STRING_LENGTH). */
  maxStringLength: number;
}

export const DEFAULT_STATS_OPTIONS: StatsOptions = { maxStringLength: DEFAULT_LIMITS.maxStringLength };

export const DEFAULT_ONLINE_WINDOW_MS = 15 * 60_000;
export const MAX_ONLINE_WINDOW_MS = 24 * 3600_000;
/** At most this many breakdowns: one per field (the contract's limit). */
export const MAX_BREAKDOWNS = 9;
/** started_per_minute covers this many minutes: the last hour, the current minute last. */
export const STARTED_MINUTES = 60;

export interface StatsInput {
  profileId: string;
  status: string;
  channel: string;
  groupBy?: StatsField;
  /** More fields to group by; undefined stands for STATS_GROUP_BY_UNSPECIFIED (rejected). */
  breakdowns?: Array<StatsField | undefined>;
  /** Also count the sessions started in each minute of the last hour. */
  startedPerMinute?: boolean;
  since?: Date;
  /** 0 = the default window. */
  onlineWindowMs: number;
}

export interface MinuteCount {
  /** The start of the minute (whole minutes of the server clock). */
  start: Date;
  count: number;
}

export interface Stats {
  total: number;
  /** Largest first, then by key (null last). */
  groups: StatsGroupCount[];
  /** One per requested breakdown, in the request's order; groups ordered as `groups`. */
  breakdowns: Array<{ field: StatsField; groups: StatsGroupCount[] }>;
  /** With startedPerMinute: STARTED_MINUTES entries, oldest first; else empty. */
  startedPerMinute: MinuteCount[];
  online: number;
  computedAt: Date;
}

export class SessionStats {
  private readonly options: StatsOptions;

  constructor(
    private readonly store: SessionStore,
    options: Partial<StatsOptions> = {},
    private readonly clock: Clock = systemClock,
  ) {
    this.options = { ...DEFAULT_STATS_OPTIONS, ...options };
  }

  /** Throws InvalidArgumentError naming the field when `input` is not a valid request. */
  check(input: StatsInput): void {
    const violations = [
      ...checkId("filter.profile_id", input.profileId, false),
      ...checkLength("filter.status", input.status, this.options.maxStringLength),
      ...checkLength("filter.channel", input.channel, this.options.maxStringLength),
      ...(input.onlineWindowMs < 0 ? [{ field: "online_window", description: "must not be negative" }] : []),
      ...(input.onlineWindowMs > MAX_ONLINE_WINDOW_MS ? [{ field: "online_window", description: "must be at most 24 hours" }] : []),
      ...checkBreakdowns(input.breakdowns ?? []),
    ];
    fail(violations);
  }

  /** The server clock's "now" the figures are computed at. */
  now(): Date {
    return this.clock.now();
  }

  /** Session counts: see GetSessionStats in the contract. Groups come largest first. */
  async compute(input: StatsInput, options: CallOptions = {}): Promise<Stats> {
    this.check(input);
    const now = this.clock.now();
    const windowMs = input.onlineWindowMs === 0 ? DEFAULT_ONLINE_WINDOW_MS : input.onlineWindowMs;
    const minutes = input.startedPerMinute === true ? firstMinute(now) : undefined;
    const result = await this.store.stats(
      {
        profileId: input.profileId || undefined,
        status: input.status || undefined,
        channel: input.channel || undefined,
        insertFrom: input.since,
        groupBy: input.groupBy,
        breakdowns: input.breakdowns?.length ? (input.breakdowns as StatsField[]) : undefined,
        startedPerMinute: minutes === undefined ? undefined : { from: minutes, minutes: STARTED_MINUTES },
        onlineSince: new Date(now.getTime() - windowMs),
      },
      options,
    );
    return {
      total: result.total,
      groups: ordered(result.groups),
      breakdowns: result.breakdowns.map((b) => ({ field: b.field, groups: ordered(b.groups) })),
      startedPerMinute:
        minutes === undefined
          ? []
          : result.startedPerMinute.map((count, i) => ({ start: new Date(minutes.getTime() + i * MINUTE_MS), count })),
      online: result.online,
      computedAt: now,
    };
  }
}

/** The start of the first of the STARTED_MINUTES minutes that end with the one `now` is in. */
export function firstMinute(now: Date): Date {
  const current = Math.floor(now.getTime() / MINUTE_MS) * MINUTE_MS;
  return new Date(current - (STARTED_MINUTES - 1) * MINUTE_MS);
}

/** Violations of `breakdowns`: too many, UNSPECIFIED (undefined), repeats; named by index. */
function checkBreakdowns(breakdowns: Array<StatsField | undefined>): FieldViolation[] {
  if (breakdowns.length > MAX_BREAKDOWNS) return [{ field: "breakdowns", description: `must have at most ${MAX_BREAKDOWNS} entries` }];
  const out: FieldViolation[] = [];
  const seen = new Set<StatsField>();
  breakdowns.forEach((field, i) => {
    if (field === undefined) out.push({ field: `breakdowns[${i}]`, description: "must name a field (not STATS_GROUP_BY_UNSPECIFIED)" });
    else if (seen.has(field)) out.push({ field: `breakdowns[${i}]`, description: `repeats ${field}` });
    else seen.add(field);
  });
  return out;
}

/** Largest first, then by key. */
function ordered(groups: StatsGroupCount[]): StatsGroupCount[] {
  return [...groups].sort((a, b) => b.count - a.count || compareKeys(a.key, b.key));
}

/** Null last, then string order. */
function compareKeys(a: string | null, b: string | null): number {
  if (a === b) return 0;
  if (a === null) return 1;
  if (b === null) return -1;
  return a < b ? -1 : 1;
}
