// The SQLite store's file: sessions and the revision counter (the schema's meta row) survive
// closing and opening the store again.

import fs from "node:fs";

import { SqliteSessionStore } from "../../../src/store/sqlite";
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
});
