// Listing: order (insert descending, then id descending), filters, limit, and paging with a
// cursor that stays stable under concurrent inserts.

import type { SessionDoc } from "../../../src/domain/session";
import type { ListCursor, ListQuery, SessionStore } from "../../../src/domain/store";
import { at, fullDoc, ids, type CurrentStore } from "./support";

/** Listing order: metadata.time.insert descending, then id descending. */
function compareListing(a: SessionDoc, b: SessionDoc): number {
  const byInsert = b.metadata.time.insert.getTime() - a.metadata.time.insert.getTime();
  if (byInsert !== 0) return byInsert;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

function matches(doc: SessionDoc, q: ListQuery): boolean {
  const insert = doc.metadata.time.insert.getTime();
  return (
    (q.profileId === undefined || doc.profile?.id === q.profileId) &&
    (q.status === undefined || doc.metadata.status === q.status) &&
    (q.channel === undefined || doc.metadata.channel === q.channel) &&
    (q.channelGroup === undefined || doc.traffic?.channel_group === q.channelGroup) &&
    (q.insertFrom === undefined || insert >= q.insertFrom.getTime()) &&
    (q.insertTo === undefined || insert < q.insertTo.getTime())
  );
}

const cursorOf = (doc: SessionDoc): ListCursor => ({ insert: doc.metadata.time.insert, id: doc.id });

/** 18 sessions for listing tests: inserts in groups of three equal times, mixed filters. */
function listingFixtures(): SessionDoc[] {
  const profiles = ["p1", "p2", null];
  const statuses = ["active", "closed"];
  const channels = ["web", "app", "email"];
  // Every fourth session has no traffic (stored before it was classified): never matched.
  const groups = ["Organic Search", "Paid Social", "Direct", null];
  const docs: SessionDoc[] = [];
  for (let i = 0; i < 18; i++) {
    docs.push(
      fullDoc(`l${String(i).padStart(2, "0")}`, at(Math.floor(i / 3)), {
        profileId: profiles[(i * 5) % 3],
        status: statuses[Math.floor(i / 2) % 2],
        channel: channels[(i + Math.floor(i / 3)) % 3],
        channelGroup: groups[(i * 3) % 4],
      }),
    );
  }
  return docs;
}

/** Creates the documents in an order unrelated to the listing order (7 is coprime to 18). */
async function createShuffled(store: SessionStore, docs: SessionDoc[]): Promise<SessionDoc[]> {
  const stored: SessionDoc[] = [];
  for (let k = 0; k < docs.length; k++) {
    stored.push((await store.create(docs[(k * 7) % docs.length])).session);
  }
  return stored;
}

export function listTests(current: CurrentStore): void {
  let store: SessionStore;
  beforeEach(() => {
    store = current().store;
  });

  describe("list", () => {
    it("returns [] from an empty store", async () => {
      expect(await store.list({ limit: 10 })).toEqual([]);
    });

    it("lists newest first by insert, then by id descending among equal inserts", async () => {
      const docs = listingFixtures();
      const stored = await createShuffled(store, docs);
      const listed = await store.list({ limit: 100 });
      const expected = [...stored].sort(compareListing);
      expect(ids(listed)).toEqual(ids(expected));
      // Spot-check the tie-break: l00..l02 share the oldest insert time.
      expect(ids(listed).slice(-3)).toEqual(["l02", "l01", "l00"]);
      // Whole documents, as stored.
      expect(listed).toStrictEqual(expected);
    });

    it("honours limit", async () => {
      const stored = await createShuffled(store, listingFixtures());
      const expected = ids([...stored].sort(compareListing));
      expect(ids(await store.list({ limit: 1 }))).toEqual(expected.slice(0, 1));
      expect(ids(await store.list({ limit: 5 }))).toEqual(expected.slice(0, 5));
    });

    it("stops after the session that brings the documents to maxBytes, and returns at least one", async () => {
      const pad = "x".repeat(30_000);
      const stored: SessionDoc[] = [];
      for (let i = 0; i < 6; i++) stored.push((await store.create({ ...fullDoc(`mb${i}`, at(i)), properties: { pad } })).session);
      const expected = ids([...stored].sort(compareListing));
      // About 31.5 KB each (stored JSON or BSON): three stay under 100,000 bytes, the fourth reaches it.
      expect(ids(await store.list({ limit: 100, maxBytes: 100_000 }))).toEqual(expected.slice(0, 4));
      expect(ids(await store.list({ limit: 2, maxBytes: 100_000 }))).toEqual(expected.slice(0, 2));
      expect(ids(await store.list({ limit: 100, maxBytes: 1 }))).toEqual(expected.slice(0, 1));
      const page = await store.list({ limit: 100, maxBytes: 100_000, after: cursorOf(stored[3]) });
      expect(ids(page)).toEqual(expected.slice(3, 6));
      expect(page[0]).toStrictEqual(stored[2]);
    });

    const filters: Array<[string, Omit<ListQuery, "limit">]> = [
      ["profileId", { profileId: "p1" }],
      ["a profileId nobody has", { profileId: "nobody" }],
      ["status", { status: "closed" }],
      ["channel", { channel: "app" }],
      ["channelGroup", { channelGroup: "Paid Social" }],
      ["a channelGroup nobody has", { channelGroup: "Audio" }],
      ["channelGroup and status", { channelGroup: "Organic Search", status: "active" }],
      ["channelGroup, channel and an insert range", { channelGroup: "Direct", channel: "web", insertFrom: at(1), insertTo: at(6) }],
      ["insertFrom (inclusive)", { insertFrom: at(2) }],
      ["insertTo (exclusive)", { insertTo: at(4) }],
      ["insertFrom and insertTo", { insertFrom: at(1), insertTo: at(4) }],
      ["an empty insert range", { insertFrom: at(3), insertTo: at(3) }],
      ["profileId and status", { profileId: "p2", status: "active" }],
      ["profileId, channel and insertFrom", { profileId: "p1", channel: "web", insertFrom: at(1) }],
      ["status, channel and an insert range", { status: "active", channel: "email", insertFrom: at(1), insertTo: at(5) }],
      ["every filter", { profileId: "p2", status: "closed", channel: "web", insertFrom: at(0), insertTo: at(6) }],
    ];

    it.each(filters)("filters by %s", async (_label, filter) => {
      const stored = await createShuffled(store, listingFixtures());
      const expected = ids(stored.filter((d) => matches(d, { ...filter, limit: 0 })).sort(compareListing));
      expect(ids(await store.list({ ...filter, limit: 100 }))).toEqual(expected);
      expect(ids(await store.list({ ...filter, limit: 2 }))).toEqual(expected.slice(0, 2));
    });

    it("has fixtures where the filters select some but not all sessions", () => {
      const docs = listingFixtures();
      for (const [label, filter] of filters) {
        const count = docs.filter((d) => matches(d, { ...filter, limit: 0 })).length;
        const empty = label.includes("nobody") || label.includes("empty");
        expect({ label, selectsSome: count > 0 }).toEqual({ label, selectsSome: !empty });
        expect(count).toBeLessThan(docs.length);
      }
    });

    it("returns only sessions strictly after `after`, also within equal inserts", async () => {
      const stored = await createShuffled(store, listingFixtures());
      const expected = [...stored].sort(compareListing);
      // l07 shares its insert time with l06 and l08.
      const i = expected.findIndex((d) => d.id === "l07");
      expect(ids(await store.list({ after: cursorOf(expected[i]), limit: 100 }))).toEqual(ids(expected.slice(i + 1)));
      // A position no session occupies works as well.
      const between: ListCursor = { insert: at(2), id: "l07a" };
      expect(ids(await store.list({ after: between, limit: 3 }))).toEqual(["l07", "l06", "l05"]);
      // After the last session there is nothing.
      expect(await store.list({ after: cursorOf(expected[expected.length - 1]), limit: 10 })).toEqual([]);
    });

    it.each([
      ["status and insertTo", { status: "active", insertTo: at(5) }],
      ["channelGroup", { channelGroup: "Organic Search" }],
    ])("pages with filters (%s) through every matching session exactly once", async (_label, query) => {
      const stored = await createShuffled(store, listingFixtures());
      const expected = ids(stored.filter((d) => matches(d, { ...query, limit: 0 })).sort(compareListing));
      const seen: string[] = [];
      let after: ListCursor | undefined;
      for (;;) {
        const page = await store.list({ ...query, ...(after ? { after } : {}), limit: 2 });
        if (page.length === 0) break;
        if (seen.length > expected.length) throw new Error("paging does not end: a cursor is not advancing");
        expect(page.length).toBeLessThanOrEqual(2);
        seen.push(...ids(page));
        after = cursorOf(page[page.length - 1]);
      }
      expect(seen).toEqual(expected);
    });

    it("pages without duplicates or skips while sessions are inserted between pages", async () => {
      const originals = ids(await createShuffled(store, listingFixtures()));
      const mustAppear: string[] = [];
      const mustNotAppear: string[] = [];
      const pages: SessionDoc[][] = [];
      let after: ListCursor | undefined;
      for (;;) {
        const page = await store.list({ ...(after ? { after } : {}), limit: 4 });
        if (page.length === 0) break;
        if (pages.length > 20) throw new Error("paging does not end: a cursor is not advancing");
        pages.push(page);
        after = cursorOf(page[page.length - 1]);
        if (pages.length > 3) continue;
        // Concurrent writers: sessions before the cursor (newer, or equal insert with a greater
        // id) must not show up; sessions after it (equal insert with a smaller id, or older) must.
        const p = pages.length;
        const before = [fullDoc(`n-new${p}`, at(100 + p)), fullDoc(`m-before${p}`, after.insert)];
        const later = [fullDoc(`k-after${p}`, after.insert), fullDoc(`n-old${p}`, at(-100 - p))];
        await Promise.all([...before, ...later].map((d) => store.create(d)));
        mustNotAppear.push(...ids(before));
        mustAppear.push(...ids(later));
      }

      const listed = pages.flat();
      const listedIds = ids(listed);
      expect(new Set(listedIds).size).toBe(listedIds.length);
      for (let i = 1; i < listed.length; i++) expect(compareListing(listed[i - 1], listed[i])).toBeLessThan(0);
      expect([...listedIds].sort()).toEqual([...originals, ...mustAppear].sort());
      for (const id of mustNotAppear) expect(listedIds).not.toContain(id);
    });

    it("does not list deleted sessions", async () => {
      await createShuffled(store, listingFixtures());
      await store.delete("l10");
      await store.delete("l00");
      const listed = ids(await store.list({ limit: 100 }));
      expect(listed).toHaveLength(16);
      expect(listed).not.toContain("l10");
      expect(listed).not.toContain("l00");
    });
  });
}
