// The statistics reads of the SQLite store (src/store/sqlite/stats.ts): the sessions started per
// minute are one range of an index on the insert time for every filter combination (SQLite's
// own EXPLAIN QUERY PLAN on the store's schema), so that their cost follows the sessions
// inserted in the range, not how many are stored.

import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";

import type { StatsQuery } from "../../../src/domain/store";
import { SqliteSessionStore } from "../../../src/store/sqlite";
import { perMinuteQuery } from "../../../src/store/sqlite/stats";
import { at } from "../conformance/support";
import { tempDir } from "./support";

describe("SQLite stats: sessions started per minute", () => {
  let dir: string;
  let db: Database.Database;

  beforeAll(async () => {
    dir = tempDir();
    await SqliteSessionStore.open(dir).close();
    db = new Database(path.join(dir, "sessions.db"), { readonly: true });
  });

  afterAll(() => {
    db?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const range = { from: at(0), minutes: 60 };
  it.each<[string, Partial<StatsQuery>, RegExp]>([
    ["no filter", {}, /^SEARCH sessions USING COVERING INDEX sessions_by_insert_status_channel \(insert_ms>\? AND insert_ms<\?\)$/],
    [
      "channel",
      { channel: "web" },
      /^SEARCH sessions USING COVERING INDEX sessions_by_insert_status_channel \(insert_ms>\? AND insert_ms<\?\)$/,
    ],
    [
      "status active",
      { status: "active" },
      /^SEARCH sessions USING COVERING INDEX sessions_active_by_insert \(insert_ms>\? AND insert_ms<\?\)$/,
    ],
    [
      "status ended",
      { status: "ended" },
      /^SEARCH sessions USING COVERING INDEX sessions_by_other_status \(status=\? AND insert_ms>\? AND insert_ms<\?\)$/,
    ],
    [
      "since",
      { insertFrom: at(30) },
      /^SEARCH sessions USING COVERING INDEX sessions_by_insert_status_channel \(insert_ms>\? AND insert_ms<\?\)$/,
    ],
    [
      "profile",
      { profileId: "p" },
      /^SEARCH sessions USING COVERING INDEX sessions_by_profile \(profile_id=\? AND insert_ms>\? AND insert_ms<\?\)$/,
    ],
    [
      "profile, status and channel",
      { profileId: "p", status: "ended", channel: "web" },
      /^SEARCH sessions USING (COVERING )?INDEX sessions_by_(profile \(profile_id|other_status \(status)=\? AND insert_ms>\? AND insert_ms<\?\)$/,
    ],
  ])("reads a range of an insert-time index with the filter: %s", (_name, filter, plan) => {
    const { sql, params } = perMinuteQuery({ ...filter, onlineSince: at(0) }, range);
    const steps = db
      .prepare<unknown[], { detail: string }>(`EXPLAIN QUERY PLAN ${sql}`)
      .all(...params)
      .map((r) => r.detail)
      .filter((d) => / sessions/.test(d));
    expect(steps).toHaveLength(1);
    expect(steps[0]).toMatch(plan);
  });
});
