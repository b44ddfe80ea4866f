// Erased sessions in the change feed (src/domain/watch/erased.ts): buffered changes of an erased
// session become tombstones when the feed reads the erasure, the profile id is forgotten after
// it, what filters an erased change passes, and the feed's caughtUp.

import { erasedDoc } from "../../../src/domain/erasure";
import type { ChangeRecord } from "../../../src/domain/store";
import { forgetErasedProfile, HeadWaiters, scrubErasedIds, tombstoneOf } from "../../../src/domain/watch/erased";
import { classifyChange } from "../../../src/domain/watch/filter";
import { consume, filter, MemoryLog, newFeed, until } from "./memory-log";

const a = { profileId: "person", status: "active", channel: "web" };
const b = { profileId: "someone", status: "active", channel: "web" };

/** The erased change of `id` as the store logs it while its erasure runs (profile id, before-fields). */
function erasedLive(log: MemoryLog, id: string, profileId = "person"): ChangeRecord {
  const revision = ++log.head;
  log.docs.delete(id);
  const change: ChangeRecord = {
    revision,
    kind: "deleted",
    id,
    doc: erasedDoc(id, profileId, revision),
    before: { profileId, status: "active", channel: "web", channelGroup: null },
    erased: true,
  };
  log.changes.push(change);
  return change;
}

describe("scrubErasedIds and forgetErasedProfile", () => {
  it("turns the older changes of an erased id into tombstones, and later forgets the profile id", () => {
    const log = new MemoryLog();
    const buffer = [log.write("created", "x", a), log.write("updated", "x", a), log.write("created", "y", b)];
    const erasure = erasedLive(log, "x");
    buffer.push(erasure);
    scrubErasedIds(buffer, [erasure]);
    expect(buffer.map((c) => [c.revision, c.kind, c.id, c.erased ?? false, c.doc.profile?.id ?? null])).toEqual([
      [1, "deleted", "x", true, null],
      [2, "deleted", "x", true, null],
      [3, "created", "y", false, "someone"],
      [4, "deleted", "x", true, "person"],
    ]);
    expect(buffer[0]).toStrictEqual({ revision: 1, kind: "deleted", id: "x", doc: erasedDoc("x", null, 1), before: null, erased: true });
    // A batch without an erasure changes nothing.
    const before = [...buffer];
    scrubErasedIds(buffer, [buffer[2]]);
    expect(buffer).toEqual(before);

    forgetErasedProfile(buffer, "someone");
    expect(buffer[3]).toBe(erasure);
    forgetErasedProfile(buffer, "person");
    expect(buffer[3]).toStrictEqual(tombstoneOf(erasure));
    expect(buffer[2].kind).toBe("created");
  });
});

describe("classifyChange of erased changes", () => {
  it("matches live ones by their before-fields, tombstones every filter its ids allow", () => {
    const log = new MemoryLog();
    log.write("created", "x", a);
    const live = erasedLive(log, "x");
    expect(classifyChange(filter({ profileId: "person" }), live)).toBe("deleted");
    expect(classifyChange(filter({}), live)).toBe("deleted");
    expect(classifyChange(filter({ profileId: "someone" }), live)).toBeNull();
    expect(classifyChange(filter({ ids: ["other"] }), live)).toBeNull();
    const tombstone = tombstoneOf(live);
    expect(classifyChange(filter({ profileId: "someone", status: "ended" }), tombstone)).toBe("deleted");
    expect(classifyChange(filter({ ids: ["x"] }), tombstone)).toBe("deleted");
    expect(classifyChange(filter({ ids: ["other"] }), tombstone)).toBeNull();
  });
});

describe("HeadWaiters", () => {
  it("resolves at the revision, at the timeout, on abort and on close", async () => {
    const waiters = new HeadWaiters();
    let reached = false;
    const at5 = waiters.wait(5, 60_000, undefined).then(() => (reached = true));
    waiters.reached(4);
    await Promise.resolve();
    expect(reached).toBe(false);
    waiters.reached(5);
    await at5;
    await waiters.wait(9, 10, undefined); // the timeout
    const abort = new AbortController();
    const aborted = waiters.wait(9, 60_000, abort.signal);
    abort.abort();
    await aborted;
    const closed = waiters.wait(9, 60_000, undefined);
    waiters.closeAll();
    await closed;
  });
});

describe("ChangeFeed and erasures", () => {
  it("serves tombstones from memory once it has read the erasure; caughtUp waits for it", async () => {
    const log = new MemoryLog();
    const feed = newFeed(log);
    const live = consume(feed, log, { filter: filter({ profileId: "person" }) });
    await until(() => feed.watchers === 1);
    log.write("created", "x", a);
    log.write("updated", "x", a);
    feed.kick();
    await until(() => live.changes().length === 2);

    const erasure = erasedLive(log, "x");
    const caughtUp = feed.caughtUp(erasure.revision, 60_000);
    await caughtUp;
    expect(feed.headRevision).toBe(erasure.revision);
    await until(() => live.changes().length === 3);
    expect(live.changes()[2]).toMatchObject({ kind: "deleted", erased: true, session: { id: "x", profile: { id: "person" } } });

    // A resume from the feed's memory: the older changes are tombstones now.
    expect(feed.read(0, 10)!.map((c) => [c.kind, c.erased, c.doc.profile?.id ?? null])).toEqual([
      ["deleted", true, null],
      ["deleted", true, null],
      ["deleted", true, "person"],
    ]);
    feed.forgetProfile("person");
    expect(feed.read(0, 10)!.every((c) => c.erased === true && c.doc.profile === null && c.before === null)).toBe(true);
    // Nobody watching: nothing to wait for.
    live.abort.abort();
    await live.done;
    await feed.caughtUp(erasure.revision + 100, 60_000);
    feed.close();
  });
});
