// GetSessionStats in the domain (src/domain/stats.ts): the checks of `breakdowns`, and what
// compute() makes of the store's counts: breakdowns in the asked order with their groups
// ordered, and the minutes of `started_per_minute` (the last hour of the clock, the current
// minute last). The store is the real embedded one, on a temporary file.

import fs from "node:fs";

import { InvalidArgumentError } from "../../src/domain/errors";
import { MAX_BREAKDOWNS, SessionStats, STARTED_MINUTES, firstMinute, type StatsInput } from "../../src/domain/stats";
import type { StatsField } from "../../src/domain/store";
import { SqliteSessionStore } from "../../src/store/sqlite";
import { fullDoc, tempDir } from "../store/sqlite/support";

const input = (i: Partial<StatsInput> = {}): StatsInput => ({ profileId: "", status: "", channel: "", onlineWindowMs: 0, ...i });

/** The violations check() reports for `i`, as "field: description". */
function violations(stats: SessionStats, i: StatsInput): string[] {
  try {
    stats.check(i);
    return [];
  } catch (err) {
    if (!(err instanceof InvalidArgumentError)) throw err;
    return err.violations.map((v) => `${v.field}: ${v.description}`);
  }
}

describe("SessionStats", () => {
  // 07:44:23.243 UTC: the last hour's minutes are 06:45 ... 07:44.
  const NOW = new Date("2024-05-30T07:44:23.243Z");
  let dir: string;
  let store: SqliteSessionStore;
  let stats: SessionStats;

  beforeEach(() => {
    dir = tempDir();
    store = SqliteSessionStore.open(dir);
    stats = new SessionStats(store, {}, { now: () => NOW });
  });

  afterEach(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("accepts up to 9 distinct breakdowns, and names the bad entry of any other", () => {
    const all: StatsField[] = [
      "channel",
      "status",
      "device_type",
      "os_name",
      "app_name",
      "country_code",
      "utm_source",
      "channel_group",
      "source",
    ];
    expect(all).toHaveLength(MAX_BREAKDOWNS);
    expect(violations(stats, input({ breakdowns: all }))).toEqual([]);
    expect(violations(stats, input({ breakdowns: [] }))).toEqual([]);
    expect(violations(stats, input({ breakdowns: ["os_name", undefined] }))).toEqual([
      "breakdowns[1]: must name a field (not STATS_GROUP_BY_UNSPECIFIED)",
    ]);
    expect(violations(stats, input({ breakdowns: ["os_name", "channel", "os_name", "channel"] }))).toEqual([
      "breakdowns[2]: repeats os_name",
      "breakdowns[3]: repeats channel",
    ]);
    expect(violations(stats, input({ breakdowns: [...all, "channel"] }))).toEqual(["breakdowns: must have at most 9 entries"]);
    // The same field as group_by is no repeat.
    expect(violations(stats, input({ groupBy: "channel", breakdowns: ["channel"] }))).toEqual([]);
  });

  it("refuses a bad request before asking the store", async () => {
    await store.close();
    await expect(stats.compute(input({ breakdowns: [undefined] }))).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it("orders each breakdown's groups largest first, in the asked order", async () => {
    const oses = ["iOS", "iOS", "Android", "Linux", "Android", "iOS"];
    for (const [i, os] of oses.entries()) {
      const doc = fullDoc(`s${i}`, new Date(NOW.getTime() - (i + 1) * 60_000), { channel: i < 2 ? "web" : "app" });
      doc.os.name = os;
      await store.create(doc);
    }
    const got = await stats.compute(input({ groupBy: "channel", breakdowns: ["os_name", "channel"] }));
    expect(got.groups).toEqual([
      { key: "app", count: 4 },
      { key: "web", count: 2 },
    ]);
    expect(got.breakdowns).toEqual([
      {
        field: "os_name",
        groups: [
          { key: "iOS", count: 3 },
          { key: "Android", count: 2 },
          { key: "Linux", count: 1 },
        ],
      },
      { field: "channel", groups: got.groups },
    ]);
    expect(got.startedPerMinute).toEqual([]);
  });

  it("counts the sessions started in each minute of the last hour, the current minute last", async () => {
    expect(firstMinute(NOW).toISOString()).toBe("2024-05-30T06:45:00.000Z");
    const inserts = [
      "2024-05-30T06:44:59.999Z", // before the hour
      "2024-05-30T06:45:00.000Z", // the first minute
      "2024-05-30T07:10:30.000Z",
      "2024-05-30T07:10:59.999Z",
      "2024-05-30T07:44:00.000Z", // the current minute
      "2024-05-30T07:44:23.243Z",
    ];
    for (const [i, at] of inserts.entries()) await store.create(fullDoc(`m${i}`, new Date(at)));
    const got = await stats.compute(input({ startedPerMinute: true }));
    expect(got.startedPerMinute).toHaveLength(STARTED_MINUTES);
    expect(got.startedPerMinute.map((m) => m.start.getTime())).toEqual(
      Array.from({ length: STARTED_MINUTES }, (_, i) => Date.parse("2024-05-30T06:45:00.000Z") + i * 60_000),
    );
    const counts = new Map(got.startedPerMinute.filter((m) => m.count > 0).map((m) => [m.start.toISOString(), m.count]));
    expect(Object.fromEntries(counts)).toEqual({
      "2024-05-30T06:45:00.000Z": 1,
      "2024-05-30T07:10:00.000Z": 2,
      "2024-05-30T07:44:00.000Z": 2,
    });
    // `since` applies: from 07:10:45 only the later inserts count.
    const since = await stats.compute(input({ startedPerMinute: true, since: new Date("2024-05-30T07:10:45.000Z") }));
    expect(since.startedPerMinute.reduce((n, m) => n + m.count, 0)).toBe(3);
    expect(since.total).toBe(3);
  });
});
