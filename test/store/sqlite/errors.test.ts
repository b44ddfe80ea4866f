// Typed errors cross the hop from the worker threads: the main thread rebuilds them as the same
// classes with the same fields.

import fs from "node:fs";

import { AlreadyExistsError, NotFoundError, RevisionConflictError } from "../../../src/domain/errors";
import { SqliteSessionStore } from "../../../src/store/sqlite";
import { fullDoc, rejection, tempDir } from "./support";

describe("SqliteSessionStore: typed errors from the threads", () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("rebuilds typed errors as the same classes with their fields", async () => {
    const store = SqliteSessionStore.open(dir);
    try {
      const { session } = await store.create(fullDoc("e-1"));
      const conflict = await rejection(store.update("e-1", { set: [], unset: [] }, { expectedRevision: session.revision + 5 }));
      expect(conflict).toBeInstanceOf(RevisionConflictError);
      expect(conflict).toMatchObject({ id: "e-1", expected: session.revision + 5, actual: session.revision, reason: "REVISION_MISMATCH" });
      const missing = await rejection(store.get("nope"));
      expect(missing).toBeInstanceOf(NotFoundError);
      expect(missing).toMatchObject({ id: "nope", metadata: { id: "nope" }, message: 'session "nope" not found' });
      expect(await rejection(store.create(fullDoc("e-1")))).toBeInstanceOf(AlreadyExistsError);
    } finally {
      await store.close();
    }
  });
});
