// The statistics counts of the SQLite store (src/store/sqlite/counts.ts): a file made by older
// code (no count tables) gets them filled from its sessions when opened, and the counts of a
// file survive closing and opening it again; in both cases stats answer like a count over the
// stored documents; and rows that come down to 0 are removed.

import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";

import type { StatsField } from "../../../src/domain/store";
import { SqliteSessionStore } from "../../../src/store/sqlite";
import { AlreadyExistsError, NotFoundError, RevisionConflictError } from "../../../src/domain/errors";
import { at } from "../conformance/support";
import { fullDoc, tempDir } from "./support";

const FIELDS: StatsField[] = [
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

async function fill(store: SqliteSessionStore): Promise<void> {
  for (let i = 0; i < 12; i++) {
    const doc = fullDoc(`c${i}`, at(i * 50), { channel: ["web", "app"][i % 2], status: i % 4 === 0 ? "ended" : "active" });
    doc.os.name = i % 3 === 0 ? "iOS" : "Android";
    doc.utm.source = i % 5 === 0 ? null : "news";
    doc.traffic = i % 4 === 1 ? null : { ...doc.traffic!, channel_group: ["Direct", "Email", "Referral"][i % 3], source: `src-${i % 2}` };
    await store.create(doc);
  }
  await store.update("c1", { set: [{ path: ["os", "name"], value: "Linux" }], unset: [] });
  await store.delete("c2");
}

/** stats for every group_by, with and without an `insertFrom` inside an hour. */
async function snapshot(store: SqliteSessionStore) {
  const out = [];
  for (const groupBy of FIELDS)
    for (const insertFrom of [undefined, at(123)]) {
      const r = await store.stats({ groupBy, insertFrom, onlineSince: at(0) });
      out.push({
        groupBy,
        insertFrom,
        total: r.total,
        online: r.online,
        groups: [...r.groups].sort((a, b) => String(a.key).localeCompare(String(b.key))),
      });
    }
  return out;
}

describe("SqliteSessionStore: statistics counts", () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("fills the count tables of a file that has none from its sessions, and keeps them across reopening", async () => {
    const first = SqliteSessionStore.open(dir);
    await fill(first);
    const before = await snapshot(first);
    await first.close();
    expect(before.find((s) => s.groupBy === "os_name" && s.insertFrom === undefined)?.groups).toEqual([
      { key: "Android", count: 6 },
      { key: "iOS", count: 4 },
      { key: "Linux", count: 1 },
    ]);

    const reopened = SqliteSessionStore.open(dir);
    expect(await snapshot(reopened)).toEqual(before);
    await reopened.close();

    // As a file made before the counts existed.
    const db = new Database(path.join(dir, "sessions.db"));
    db.exec("DROP TABLE stats_totals; DROP TABLE stats_hourly");
    db.close();
    const migrated = SqliteSessionStore.open(dir);
    try {
      expect(await snapshot(migrated)).toEqual(before);
      // And they are maintained from there on.
      await migrated.update("c3", { set: [{ path: ["os", "name"], value: "Linux" }], unset: [] });
      const r = await migrated.stats({ groupBy: "os_name", onlineSince: at(0) });
      expect(r.groups.find((g) => g.key === "Linux")?.count).toBe(2);
    } finally {
      await migrated.close();
    }
  });

  it("fills the counts of fields a file did not count yet (channel_group, source), and keeps counting them", async () => {
    const first = SqliteSessionStore.open(dir);
    await fill(first);
    const before = await snapshot(first);
    await first.close();
    expect(before.find((s) => s.groupBy === "channel_group" && s.insertFrom === undefined)?.groups).toEqual([
      { key: "Direct", count: 3 },
      { key: "Email", count: 3 },
      { key: null, count: 3 },
      { key: "Referral", count: 2 },
    ]);

    // As a file made by code that counted the first five fields, without the list of fields.
    const db = new Database(path.join(dir, "sessions.db"));
    db.exec(`DELETE FROM stats_totals WHERE field IN ('channel_group', 'source');
      DELETE FROM stats_hourly WHERE field IN ('channel_group', 'source');
      DROP TABLE stats_fields`);
    db.close();
    const migrated = SqliteSessionStore.open(dir);
    try {
      expect(await snapshot(migrated)).toEqual(before);
      await migrated.delete("c3");
      const r = await migrated.stats({ groupBy: "source", onlineSince: at(0) });
      const docs = await migrated.list({ limit: 100 });
      expect(r.groups.reduce((n, g) => n + g.count, 0)).toBe(docs.length);
    } finally {
      await migrated.close();
    }
    const check = new Database(path.join(dir, "sessions.db"), { readonly: true });
    try {
      expect(check.prepare("SELECT field FROM stats_fields ORDER BY field").pluck().all()).toEqual([...FIELDS.slice(2)].sort());
    } finally {
      check.close();
    }
  });

  it("counts only the writes of a group commit that succeed", async () => {
    const store = SqliteSessionStore.open(dir);
    try {
      const { session } = await store.create(fullDoc("base", at(0)));
      const os = (name: string) => ({ set: [{ path: ["os", "name"], value: name }], unset: [] });
      const results = await Promise.allSettled([
        store.create(fullDoc("one", at(10))),
        store.create(fullDoc("base", at(20))),
        store.update("base", os("Windows"), { expectedRevision: session.revision + 5 }),
        store.update("missing", os("Windows")),
        store.delete("missing"),
        store.update("one", os("Linux")),
        store.create(fullDoc("two", at(30))),
      ]);
      expect(results.map((r) => (r.status === "rejected" ? (r.reason as Error).constructor : "ok"))).toEqual([
        "ok",
        AlreadyExistsError,
        RevisionConflictError,
        NotFoundError,
        NotFoundError,
        "ok",
        "ok",
      ]);
      const docs = await store.list({ limit: 10 });
      const r = await store.stats({ groupBy: "os_name", onlineSince: at(0) });
      expect(r.total).toBe(3);
      const want = new Map<string | null, number>();
      for (const d of docs) want.set(d.os.name, (want.get(d.os.name) ?? 0) + 1);
      expect(new Map(r.groups.map((g) => [g.key, g.count]))).toEqual(want);
    } finally {
      await store.close();
    }
  });

  it("leaves no count rows behind once the sessions counted in them are gone", async () => {
    const store = SqliteSessionStore.open(dir);
    await fill(store);
    await store.update("c3", { set: [{ path: ["metadata", "status"], value: "ended" }], unset: [] });
    for (const d of await store.list({ limit: 100 })) await store.delete(d.id);
    expect(await store.stats({ groupBy: "os_name", onlineSince: at(0) })).toEqual({
      total: 0,
      groups: [],
      breakdowns: [],
      startedPerMinute: [],
      online: 0,
    });
    await store.close();
    const db = new Database(path.join(dir, "sessions.db"), { readonly: true });
    try {
      expect(db.prepare("SELECT (SELECT count(*) FROM stats_totals) + (SELECT count(*) FROM stats_hourly)").pluck().get()).toBe(0);
    } finally {
      db.close();
    }
  });
});
