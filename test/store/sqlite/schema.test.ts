// The SQLite store's file: sessions and the revision counter (the schema's meta row) survive
// closing and opening the store again.

import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";

import { SqliteSessionStore } from "../../../src/store/sqlite";
import { at } from "../conformance/support";
import { fullDoc, tempDir } from "./support";

describe("SqliteSessionStore: the database file", () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("keeps sessions and the revision counter across close and reopen", async () => {
    const first = SqliteSessionStore.open(dir);
    await first.create(fullDoc("kept"));
    await first.create(fullDoc("gone"));
    const updated = await first.update("kept", { set: [{ path: ["properties", "after"], value: "update" }], unset: [] });
    const { revision: deleted } = await first.delete("gone");
    await first.close();

    const reopened = SqliteSessionStore.open(dir);
    try {
      expect(await reopened.get("kept")).toStrictEqual(updated);
      expect((await reopened.list({ limit: 10 })).map((d) => d.id)).toEqual(["kept"]);
      const { session } = await reopened.create(fullDoc("next"));
      expect(session.revision).toBeGreaterThan(deleted);
    } finally {
      await reopened.close();
    }
  });

  it("gives a file made before traffic its channel_group column, filled from the documents, and its index", async () => {
    const first = SqliteSessionStore.open(dir);
    await first.create(fullDoc("old-1", at(0), { channelGroup: null }));
    await first.create(fullDoc("new-1", at(1), { channelGroup: "Email" }));
    await first.create(fullDoc("new-2", at(2), { channelGroup: "Referral" }));
    await first.update("new-1", { set: [{ path: ["properties", "x"], value: 1 }], unset: [] });
    const head = await first.headRevision();
    await first.close();

    // As a file made by older code: no channel_group column, index or before_channel_group.
    const db = new Database(path.join(dir, "sessions.db"));
    db.exec(`DROP INDEX sessions_by_channel_group;
      ALTER TABLE sessions DROP COLUMN channel_group;
      ALTER TABLE changes DROP COLUMN before_channel_group`);
    db.close();

    const reopened = SqliteSessionStore.open(dir);
    try {
      expect((await reopened.list({ channelGroup: "Email", limit: 10 })).map((d) => d.id)).toEqual(["new-1"]);
      expect((await reopened.list({ channelGroup: "Referral", limit: 10 })).map((d) => d.id)).toEqual(["new-2"]);
      expect((await reopened.get("old-1")).traffic).toBeNull();
      // Older change rows have no channel group before; new ones do.
      await reopened.update("new-2", { set: [{ path: ["properties", "y"], value: 2 }], unset: [] });
      const { changes } = await reopened.readChanges(head - 1, 10);
      expect(changes.map((c) => [c.id, c.before?.channelGroup])).toEqual([
        ["new-1", null],
        ["new-2", "Referral"],
      ]);
    } finally {
      await reopened.close();
    }
    const check = new Database(path.join(dir, "sessions.db"), { readonly: true });
    try {
      const plan = check
        .prepare("EXPLAIN QUERY PLAN SELECT doc FROM sessions WHERE channel_group = ? ORDER BY insert_ms DESC, id DESC LIMIT 10")
        .all("Email") as Array<{ detail: string }>;
      expect(plan.map((p) => p.detail).join("; ")).toContain("sessions_by_channel_group");
    } finally {
      check.close();
    }
  });
});
