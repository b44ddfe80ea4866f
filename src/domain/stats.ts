// GetSessionStats: session counts over a filter, grouped by one field, plus how many sessions
// had activity within the online window. The store counts; this checks the input, picks the
// window and orders the groups.

import { DEFAULT_LIMITS } from "./limits";
import { systemClock, type Clock } from "./time";
import { checkId, checkLength, fail } from "./validate";
import type { CallOptions, SessionStore, StatsField, StatsResult } from "./store";

export interface StatsOptions {
  /** Longest filter string (MAX_STRING_LENGTH). */
  maxStringLength: number;
}

export const DEFAULT_STATS_OPTIONS: StatsOptions = { maxStringLength: DEFAULT_LIMITS.maxStringLength };

export const DEFAULT_ONLINE_WINDOW_MS = 15 * 60_000;
export const MAX_ONLINE_WINDOW_MS = 24 * 3600_000;

export interface StatsInput {
  profileId: string;
  status: string;
  channel: string;
  groupBy?: StatsField;
  since?: Date;
  /** 0 = the default window. */
  onlineWindowMs: number;
}

export interface Stats extends StatsResult {
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
    ];
    fail(violations);
  }

  /** Session counts: see GetSessionStats in the contract. Groups come largest first. */
  async compute(input: StatsInput, options: CallOptions = {}): Promise<Stats> {
    this.check(input);
    const now = this.clock.now();
    const windowMs = input.onlineWindowMs === 0 ? DEFAULT_ONLINE_WINDOW_MS : input.onlineWindowMs;
    const result = await this.store.stats(
      {
        profileId: input.profileId || undefined,
        status: input.status || undefined,
        channel: input.channel || undefined,
        insertFrom: input.since,
        groupBy: input.groupBy,
        onlineSince: new Date(now.getTime() - windowMs),
      },
      options,
    );
    const groups = [...result.groups].sort((a, b) => b.count - a.count || compareKeys(a.key, b.key));
    return { ...result, groups, computedAt: now };
  }
}

/** Null last, then string order. */
function compareKeys(a: string | null, b: string | null): number {
  if (a === b) return 0;
  if (a === null) return 1;
  if (b === null) return -1;
  return a < b ? -1 : 1;
}
