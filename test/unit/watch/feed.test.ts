// The change feed's fan-out: a change wakes only the watchers it can concern, parked watchers
// skip unconcerned changes unread, and watchers are freed on abort, on trimmed history and when
// the feed closes. The watchers are watchSessions streams over an in-memory change log.

import { ChangesTrimmedError, ShuttingDownError } from "../../../src/domain/errors";
import { consume, filter, MemoryLog, newFeed, until } from "./memory-log";

describe("ChangeFeed fan-out", () => {
  const fields = (p: string) => ({ profileId: p, status: "active", channel: "web" });

  it("wakes only the watchers a change concerns", async () => {
    const log = new MemoryLog();
    const feed = newFeed(log);
    const idle = Array.from({ length: 200 }, (_, i) => consume(feed, log, { filter: filter({ profileId: `idle-${i % 20}` }) }));
    const target = consume(feed, log, { filter: filter({ profileId: "a" }) });
    await until(() => feed.waiting === 201);
    const read = jest.spyOn(feed, "read");
    for (let i = 0; i < 50; i++) {
      log.write(i === 0 ? "created" : "updated", "s-a", fields("a"));
      await until(() => target.changes().length === i + 1);
    }
    await until(() => feed.waiting === 201);
    // The target reads twice per change (the change, then nothing before it parks again);
    // waking every watcher on every commit would be at least 201 reads per change.
    expect(read.mock.calls.length).toBeLessThanOrEqual(3 * 50);
    expect(idle.every((w) => w.events.length === 0)).toBe(true);
    for (const w of [...idle, target]) w.abort.abort();
    await Promise.all([...idle, target].map((w) => w.done));
    expect(feed.watchers).toBe(0);
    expect(feed.waiting).toBe(0);
    feed.close();
  });

  it("wakes the watchers of the profile a session leaves", async () => {
    const log = new MemoryLog();
    const feed = newFeed(log);
    const x = consume(feed, log, { filter: filter({ profileId: "x" }) });
    const y = consume(feed, log, { filter: filter({ profileId: "y", channel: "web" }) });
    const id = consume(feed, log, { filter: filter({ ids: ["s"] }) });
    await until(() => feed.waiting === 3);
    // One change at a time, each delivered before the next: a watcher must be woken by the
    // change itself, not find it while reading for an earlier one.
    const step = async (write: () => void, counts: [number, number, number]) => {
      write();
      await until(
        () =>
          x.changes().length === counts[0] && y.changes().length === counts[1] && id.changes().length === counts[2] && feed.waiting === 3,
      );
    };
    await step(() => log.write("created", "s", fields("x")), [1, 0, 1]);
    await step(() => log.write("updated", "s", fields("y")), [2, 1, 2]);
    await step(() => log.write("updated", "s", { profileId: "y", status: "active", channel: "app" }), [2, 2, 3]);
    await step(() => log.write("deleted", "s"), [2, 2, 4]);
    const kinds = (w: ReturnType<typeof consume>) => w.changes().map((e) => (e.type === "change" ? `${e.kind}@${e.revision}` : ""));
    expect(kinds(x)).toEqual(["created@1", "left@2"]);
    expect(kinds(y)).toEqual(["entered@2", "left@3"]);
    expect(kinds(id)).toEqual(["created@1", "updated@2", "updated@3", "deleted@4"]);
    for (const w of [x, y, id]) w.abort.abort();
    await Promise.all([x, y, id].map((w) => w.done));
    feed.close();
  });

  it("gives a parked watcher a heartbeat at the head without reading the changes it skipped", async () => {
    const log = new MemoryLog();
    // A buffer of 4: reading the skipped changes would have to go to the store.
    const feed = newFeed(log, 4);
    const w = consume(feed, log, { filter: filter({ profileId: "b" }), heartbeatMs: 60 });
    await until(() => feed.waiting === 1);
    log.reads = [];
    for (let i = 0; i < 40; i++) log.write(i === 0 ? "created" : "updated", "s-a", fields("a"));
    await until(() => w.events.some((e) => e.type === "progress" && e.revision === log.head));
    // Only the feed read the log, always from its own (rising) head: the watcher read nothing.
    for (let i = 1; i < log.reads.length; i++) expect(log.reads[i]).toBeGreaterThanOrEqual(log.reads[i - 1]);
    expect(w.changes()).toEqual([]);
    // Resuming from that heartbeat continues with the next change of the profile.
    w.abort.abort();
    await w.done;
    const resumed = consume(feed, log, { filter: filter({ profileId: "b" }), afterRevision: log.head });
    log.write("created", "s-b", fields("b"));
    await until(() => resumed.changes().length === 1);
    expect(resumed.changes()[0]).toMatchObject({ kind: "created", revision: log.head });
    resumed.abort.abort();
    await resumed.done;
    feed.close();
  });

  it("wakes parked watchers when the feed skips trimmed history, so they get OUT_OF_RANGE", async () => {
    const log = new MemoryLog();
    const feed = newFeed(log);
    const w = consume(feed, log, { filter: filter({ profileId: "b" }) });
    await until(() => feed.waiting === 1);
    // Another process wrote and trimmed past this feed's head before the feed read anything.
    log.head = 5;
    log.trimmedThrough = 5;
    feed.kick();
    await w.done;
    expect(w.state.error).toBeInstanceOf(ChangesTrimmedError);
    expect(feed.watchers).toBe(0);
    feed.close();
  });

  it("frees the watcher on abort and ends open streams with UNAVAILABLE when the feed closes", async () => {
    const log = new MemoryLog();
    const feed = newFeed(log);
    const a = consume(feed, log, { filter: filter({ profileId: "a" }) });
    const b = consume(feed, log, {});
    await until(() => feed.waiting === 2);
    a.abort.abort();
    await a.done;
    expect(a.state.error).toBeUndefined();
    expect(feed.watchers).toBe(1);
    expect(feed.waiting).toBe(1);
    feed.close();
    await b.done;
    expect(b.state.error).toBeInstanceOf(ShuttingDownError);
    expect(feed.watchers).toBe(0);
    expect(feed.waiting).toBe(0);
  });
});
