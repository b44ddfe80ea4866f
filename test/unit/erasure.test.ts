// The domain's Erasure (src/domain/erasure.ts) over the embedded store: validation, the order of
// its steps with the live watchers (caughtUp before the traces, forgetProfile after), and
// ErasureContendedError for a profile that keeps getting sessions while it is erased.

import fs from "node:fs";

import { Erasure, type ErasureWatchers } from "../../src/domain/erasure";
import { ErasureContendedError, InvalidArgumentError } from "../../src/domain/errors";
import type { SessionStore } from "../../src/domain/store";
import { SqliteSessionStore } from "../../src/store/sqlite";
import { fullDoc, rejection } from "../store/conformance/support";
import { tempDir } from "../store/sqlite/support";

describe("Erasure", () => {
  let dir: string;
  let store: SqliteSessionStore;

  beforeEach(() => {
    dir = tempDir();
    store = SqliteSessionStore.open(dir);
  });

  afterEach(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("refuses an empty or malformed profile_id, naming the field", async () => {
    const erasure = new Erasure(store, undefined);
    for (const id of ["", "with space", "x".repeat(129)]) {
      const err = await rejection(erasure.erase(id));
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).violations.map((v) => v.field)).toEqual(["profile_id"]);
    }
  });

  it("waits for the live watchers up to its last erased change before the traces, then forgets the profile", async () => {
    for (let i = 0; i < 5; i++) await store.create(fullDoc(`s${i}`, undefined, { profileId: "p" }), { numberVisitIn: "p" });
    const calls: string[] = [];
    const watchers: ErasureWatchers = {
      caughtUp: async (revision, timeoutMs) => {
        // The traces have not started: the erased changes still carry the profile id.
        const latest = (await store.readChanges(revision - 1, 1)).changes[0];
        calls.push(`caughtUp ${revision} ${timeoutMs} ${latest.before?.profileId}`);
      },
      forgetProfile: (profileId) => calls.push(`forget ${profileId}`),
    };
    const head = await store.headRevision();
    expect(await new Erasure(store, watchers, { batchSize: 2, feedWaitMs: 1234 }).erase("p")).toEqual({ erased: 5 });
    expect(calls).toEqual([`caughtUp ${head + 5} 1234 p`, "forget p"]);
    // Nothing erased: no wait, and the in-memory copies are forgotten all the same.
    calls.length = 0;
    expect(await new Erasure(store, watchers).erase("p")).toEqual({ erased: 0 });
    expect(calls).toEqual(["forget p"]);
  });

  it("gives up with ErasureContendedError when sessions of the profile keep being created", async () => {
    let created = 0;
    // A client that creates a session of the person each time the erasure gets to the traces.
    const racing: SessionStore = Object.create(store, {
      eraseTraces: {
        value: async (profileId: string, limit: number) => {
          await store.create(fullDoc(`late-${created++}`, undefined, { profileId }));
          return store.eraseTraces(profileId, limit);
        },
      },
    }) as SessionStore;
    const err = await rejection(new Erasure(racing, undefined).erase("p"));
    expect(err).toBeInstanceOf(ErasureContendedError);
    expect((err as ErasureContendedError).metadata).toEqual({ profile_id: "p", erased_sessions: String(created - 1) });
    // Once the client stops, a retry finishes.
    expect(await new Erasure(store, undefined).erase("p")).toEqual({ erased: 1 });
    expect(await store.list({ profileId: "p", limit: 10 })).toEqual([]);
  });
});
