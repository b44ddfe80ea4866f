import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { SqliteSessionStore } from "../../src/store/sqlite";
import { fullDoc, runStoreConformance } from "./conformance";

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "sessions-sqlite-"));
}

runStoreConformance("sqlite", async () => {
  const dir = tempDir();
  const store = SqliteSessionStore.open(dir);
  return {
    store,
    cleanup: async () => {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe("SqliteSessionStore (file specifics)", () => {
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

  it("shares one revision sequence between connections to the same file (as separate processes would)", async () => {
    const a = SqliteSessionStore.open(dir);
    const b = SqliteSessionStore.open(dir);
    try {
      const revisions: number[] = [];
      for (let i = 0; i < 5; i++) {
        revisions.push((await a.create(fullDoc(`a-${i}`))).session.revision);
        revisions.push((await b.create(fullDoc(`b-${i}`))).session.revision);
      }
      for (let i = 1; i < revisions.length; i++) expect(revisions[i]).toBeGreaterThan(revisions[i - 1]);
      expect((await b.get("a-4")).revision).toBe(revisions[8]);
      expect(await b.list({ limit: 100 })).toHaveLength(10);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
