// The change feed's buffer of recent changes: bounded by count and by bytes of documents, the
// newest kept, and a cursor older than what it holds sent to the store (read returns null).

import type { ChangeRecord } from "../../../src/domain/store";
import type { SessionDoc } from "../../../src/domain/session";
import { createLogger } from "../../../src/log";
import { CHANGES_READ_BYTES } from "../../../src/domain/store";
import { ChangeBuffer, changeBytes, CHANGE_OVERHEAD_BYTES } from "../../../src/domain/watch/buffer";
import { ChangeFeed, DEFAULT_FEED_OPTIONS } from "../../../src/domain/watch/feed";
import { consume, filter, MemoryLog, newFeed, until } from "./memory-log";

function change(revision: number, padChars: number): ChangeRecord {
  const doc = {
    id: `s-${String(revision).padStart(4, "0")}`,
    revision,
    properties: { pad: "x".repeat(padChars) },
  } as unknown as SessionDoc;
  return { revision, kind: "updated", id: doc.id, doc, before: null };
}

describe("ChangeBuffer", () => {
  it("counts a change as its document's JSON plus a fixed overhead", () => {
    const c = change(1, 1000);
    expect(changeBytes(c)).toBe(JSON.stringify(c.doc).length + CHANGE_OVERHEAD_BYTES);
  });

  it("counts the size the store read a change's document at, when it gives one", () => {
    const c = { ...change(1, 1000), bytes: 5000 };
    expect(changeBytes(c)).toBe(5000 + CHANGE_OVERHEAD_BYTES);
  });

  it("keeps at most `size` changes, the newest", () => {
    const buffer = new ChangeBuffer(3);
    buffer.reset(0);
    buffer.append([1, 2, 3, 4, 5].map((r) => change(r, 10)));
    expect(buffer.length).toBe(3);
    expect(buffer.read(2, 10)!.map((c) => c.revision)).toEqual([3, 4, 5]);
    // Older than what it holds: the store answers.
    expect(buffer.read(1, 10)).toBeNull();
  });

  it("keeps at most `maxBytes` of changes, the newest, whatever their number", () => {
    const one = changeBytes(change(1, 10_000));
    const buffer = new ChangeBuffer(4096, 3 * one + one / 2);
    buffer.reset(0);
    for (let r = 1; r <= 20; r += 4) buffer.append([r, r + 1, r + 2, r + 3].map((x) => change(x, 10_000)));
    expect(buffer.length).toBe(3);
    expect(buffer.bytes).toBe([18, 19, 20].reduce((n, r) => n + changeBytes(change(r, 10_000)), 0));
    expect(buffer.read(17, 10)!.map((c) => c.revision)).toEqual([18, 19, 20]);
    expect(buffer.read(16, 10)).toBeNull();
    // Small changes after big ones: the big ones go first, as many small ones fit.
    buffer.append([21, 22, 23, 24].map((x) => change(x, 10)));
    expect(buffer.read(17, 10)!.map((c) => c.revision)).toEqual([18, 19, 20, 21, 22, 23, 24]);
    buffer.append([change(25, 10_000)]);
    expect(buffer.read(18, 10)!.map((c) => c.revision)).toEqual([19, 20, 21, 22, 23, 24, 25]);
    expect(buffer.bytes).toBeLessThanOrEqual(3 * one + one / 2);
  });

  it("holds nothing when the newest change alone is over the bound, and starts after it", () => {
    const buffer = new ChangeBuffer(4096, 1000);
    buffer.reset(0);
    buffer.append([change(1, 10), change(2, 5000)]);
    expect(buffer.length).toBe(0);
    expect(buffer.bytes).toBe(0);
    expect(buffer.read(2, 10)).toEqual([]);
    expect(buffer.read(1, 10)).toBeNull();
  });

  it("starts empty again on reset", () => {
    const buffer = new ChangeBuffer(10, 1_000_000);
    buffer.reset(0);
    buffer.append([change(1, 100), change(2, 100)]);
    buffer.reset(7);
    expect(buffer.length).toBe(0);
    expect(buffer.bytes).toBe(0);
    expect(buffer.read(7, 10)).toEqual([]);
    expect(buffer.read(6, 10)).toBeNull();
  });
});

describe("ChangeFeed with a byte-bounded buffer", () => {
  it("reads on at once when the store cuts a read at CHANGES_READ_BYTES", async () => {
    const log = new MemoryLog();
    log.readBytes = CHANGES_READ_BYTES;
    log.changeBytes = Math.ceil(CHANGES_READ_BYTES / 3);
    // No polling during the test: only the one kick below makes the feed read.
    const feed = new ChangeFeed(log.store, createLogger("silent"), { ...DEFAULT_FEED_OPTIONS, pollIntervalMs: 60_000 });
    const live = consume(feed, log, { filter: filter({}) });
    await until(() => feed.waiting === 1);
    // Ten changes, three per read: the feed must read four times on one kick.
    log.muted = true;
    for (let i = 0; i < 10; i++) log.write("created", `s-${i}`, { profileId: "a", status: "active", channel: "web" });
    feed.kick();
    await until(() => live.changes().length === 10);
    expect(feed.headRevision).toBe(log.head);
    live.abort.abort();
    await live.done;
    feed.close();
  });

  const fields = { profileId: "a", status: "active", channel: "web" };

  it("stays within WATCH_BUFFER_BYTES, and a watcher behind it gets every change from the store", async () => {
    const log = new MemoryLog();
    const first = log.write("created", "s-0", fields);
    const budget = 4 * changeBytes(first);
    const feed = newFeed(log, 4096, budget);
    // The feed reads while a watcher is open.
    const live = consume(feed, log, { filter: filter({}) });
    await until(() => feed.waiting === 1);
    for (let i = 1; i <= 50; i++) log.write("created", `s-${i}`, fields);
    await until(() => live.changes().length === 50);
    expect(feed.buffered.bytes).toBeLessThanOrEqual(budget);
    expect(feed.buffered.changes).toBeGreaterThan(0);
    expect(feed.buffered.changes).toBeLessThan(50);
    // From the start: older than the buffer, so read from the store; every change once, in order.
    const w = consume(feed, log, { filter: filter({}), afterRevision: first.revision });
    await until(() => w.changes().length === 50);
    expect(w.changes().map((e) => e.type === "change" && e.revision)).toEqual(Array.from({ length: 50 }, (_, i) => i + 2));
    for (const x of [w, live]) {
      x.abort.abort();
      await x.done;
    }
    feed.close();
  });
});
