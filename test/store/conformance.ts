// The store port's contract (src/domain/store.ts) as tests. Every adapter's test file calls
// runStoreConformance once; an adapter that fails here is wrong, whatever the other adapters do.
//
// The suite uses only the port's API. `factory` gives a fresh, empty store per test; `cleanup`
// must also work when the test has already closed the store.
//
// Ids in listings are ASCII, so JavaScript's string order equals the byte order both stores sort
// by.

import {
  AlreadyExistsError,
  NotFoundError,
  RevisionConflictError,
  StoreUnavailableError,
} from "../../src/domain/errors";
import { emptySessionDoc, type SessionDoc } from "../../src/domain/session";
import type { ListCursor, ListQuery, SessionPatch, SessionStore, StatsField, StatsQuery } from "../../src/domain/store";

export interface StoreUnderTest {
  store: SessionStore;
  cleanup(): Promise<void>;
}

const BASE_MS = Date.UTC(2024, 4, 30, 7, 44, 23, 243);
/** A fixed instant `minutes` after the base time. */
const at = (minutes: number): Date => new Date(BASE_MS + minutes * 60_000);

interface DocFields {
  profileId?: string | null;
  status?: string;
  channel?: string;
}

/** A document with every field set: Dates, nulls, nested free-form objects, unicode, numbers. */
export function fullDoc(id: string, insert: Date = at(0), fields: DocFields = {}): SessionDoc {
  const profileId = fields.profileId === undefined ? "profile-1" : fields.profileId;
  return {
    id,
    metadata: {
      time: {
        insert,
        create: new Date(insert.getTime() - 1500),
        update: new Date(insert.getTime() + 2750),
        timestamp: insert.getTime() / 1000,
        duration: 2,
        weekday: insert.getUTCDay(),
      },
      channel: fields.channel ?? "web",
      aux: { source: "sdk", nested: { depth: [1, { two: null }] } },
      status: fields.status ?? "active",
    },
    profile: profileId === null ? null : { id: profileId, primary_id: null, metadata: { tags: ["a", "b"], score: 0.25 } },
    device: {
      name: "iPhone",
      brand: "Apple",
      model: "iPhone 15",
      type: "smartphone",
      touch: true,
      ip: "2001:db8::1",
      resolution: "1179x2556",
      geo: {
        country: { name: "Polska", code: "PL" },
        city: "Kraków",
        county: null,
        postal: "30-001",
        latitude: "50.0614",
        longitude: "19.9366",
        location: null,
      },
      color_depth: "24",
      orientation: null,
    },
    os: { name: "iOS", version: "17.4.1" },
    app: { type: "browser", name: "Mobile Safari", version: "17.4", language: "pl-PL", bot: false, resolution: null },
    utm: { source: "newsletter", medium: "email", campaign: "wiosna-2024", term: null, content: "ünïcödé" },
    context: {
      page: { url: "https://example.com/zażółć?q=🙂&x=1", title: "Zażółć gęślą jaźń — 日本語 👩‍💻", referrer: null },
      screen: [1179, 2556],
      flags: { a: true, b: false },
      empty: {},
      emptyList: [],
      numbers: { int: 42, negative: -7, float: 3.141592653589793, maxSafe: 9007199254740991, tiny: 5e-324, huge: 1.5e300 },
    },
    properties: { 日本語: "テキスト", emoji: "🙂", rtl: "مرحبا", list: [{ a: 1 }, { b: [null, "x", 0.5] }], zero: 0 },
    traits: { nested: { deeper: { deepest: { value: "ok", list: [[1, 2], [3]] } } } },
    aux: { nothing: null, quote: "\"'\\", newline: "a\nb\tc" },
    revision: 0,
    session_index: 0,
    previous_session_id: null,
    activity: { page_views: 3, entry_page: "https://example.com/zażółć", exit_page: "https://example.com/koszyk", end_reason: "" },
    merged_from_profile_ids: [],
  };
}

/** The error `promise` rejects with; fails the test when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to reject, but it resolved");
}

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
    (q.insertFrom === undefined || insert >= q.insertFrom.getTime()) &&
    (q.insertTo === undefined || insert < q.insertTo.getTime())
  );
}

const cursorOf = (doc: SessionDoc): ListCursor => ({ insert: doc.metadata.time.insert, id: doc.id });
const ids = (docs: SessionDoc[]): string[] => docs.map((d) => d.id);

/** 18 sessions for listing tests: inserts in groups of three equal times, mixed filters. */
function listingFixtures(): SessionDoc[] {
  const profiles = ["p1", "p2", null];
  const statuses = ["active", "closed"];
  const channels = ["web", "app", "email"];
  const docs: SessionDoc[] = [];
  for (let i = 0; i < 18; i++) {
    docs.push(
      fullDoc(`l${String(i).padStart(2, "0")}`, at(Math.floor(i / 3)), {
        profileId: profiles[(i * 5) % 3],
        status: statuses[Math.floor(i / 2) % 2],
        channel: channels[(i + Math.floor(i / 3)) % 3],
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

/** What a domain loop does: read, patch with the revision read, retry on a conflict. */
async function updateWithRetry(store: SessionStore, id: string, patch: SessionPatch, maxAttempts: number): Promise<SessionDoc> {
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const current = await store.get(id);
    try {
      return await store.update(id, patch, { expectedRevision: current.revision });
    } catch (err) {
      if (!(err instanceof RevisionConflictError)) throw err;
    }
  }
  throw new Error(`no progress after ${maxAttempts} attempts: some conflicting update never committed`);
}

export function runStoreConformance(name: string, factory: () => Promise<StoreUnderTest>): void {
  describe(`SessionStore conformance: ${name}`, () => {
    let store: SessionStore;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      ({ store, cleanup } = await factory());
    });

    afterEach(async () => {
      await cleanup();
    });

    describe("create and get", () => {
      it("round-trips a fully populated document deep-equal, with a positive revision", async () => {
        const doc = fullDoc("s-full");
        const { session, created } = await store.create(doc);
        expect(created).toBe(true);
        expect(session.revision).toBeGreaterThan(0);
        expect(session).toStrictEqual({ ...fullDoc("s-full"), revision: session.revision });

        const got = await store.get("s-full");
        expect(got).toStrictEqual(session);
        expect(got.metadata.time.insert).toBeInstanceOf(Date);
        expect(got.metadata.time.create).toBeInstanceOf(Date);
        expect(got.metadata.time.update).toBeInstanceOf(Date);
      });

      it("round-trips a document at its empty values (nulls, empty strings and objects)", async () => {
        const doc = emptySessionDoc("s-empty", at(1));
        const { session } = await store.create(doc);
        expect(await store.get("s-empty")).toStrictEqual({ ...emptySessionDoc("s-empty", at(1)), revision: session.revision });
      });

      it("accepts ids with unicode and punctuation", async () => {
        const id = "sesja-zażółć-🙂-'\"/\\ ?#%";
        await store.create(fullDoc(id));
        expect((await store.get(id)).id).toBe(id);
      });

      it("ignores the revision of the input", async () => {
        const first = await store.create({ ...fullDoc("s-a"), revision: 1_000_000_000 });
        const second = await store.create({ ...fullDoc("s-b"), revision: -5 });
        expect(first.session.revision).toBeGreaterThan(0);
        expect(second.session.revision).toBeGreaterThan(first.session.revision);
        expect((await store.get("s-a")).revision).toBe(first.session.revision);
      });

      it("keeps no reference to the caller's objects, in either direction", async () => {
        const doc = fullDoc("s-ref");
        const { session } = await store.create(doc);
        expect(doc).toStrictEqual(fullDoc("s-ref")); // the input is not modified (its revision neither)
        doc.context.page = "mutated by the caller";
        doc.metadata.time.insert.setTime(0);
        session.properties.emoji = "mutated";
        const got = await store.get("s-ref");
        got.traits.nested = null;
        expect(await store.get("s-ref")).toStrictEqual({ ...fullDoc("s-ref"), revision: session.revision });
      });

      it("rejects a taken id with AlreadyExistsError and writes nothing", async () => {
        const { session } = await store.create(fullDoc("s-dup"));
        const err = await rejection(store.create(fullDoc("s-dup", at(5), { status: "closed" })));
        expect(err).toBeInstanceOf(AlreadyExistsError);
        expect(err).toMatchObject({ id: "s-dup" });
        expect(await store.get("s-dup")).toStrictEqual(session);
      });

      it("throws NotFoundError from get for a missing id", async () => {
        const err = await rejection(store.get("missing"));
        expect(err).toBeInstanceOf(NotFoundError);
        expect(err).toMatchObject({ id: "missing" });
      });
    });

    describe("create with requestId (idempotency)", () => {
      it("replays: the same session with created:false, nothing written", async () => {
        const first = await store.create(fullDoc("s-idem"), { requestId: "req-1" });
        expect(first.created).toBe(true);

        const replay = await store.create(fullDoc("s-idem"), { requestId: "req-1" });
        expect(replay.created).toBe(false);
        expect(replay.session).toStrictEqual(first.session);
        expect(await store.get("s-idem")).toStrictEqual(first.session);
      });

      it("replays the session as stored now, after later updates", async () => {
        await store.create(fullDoc("s-idem"), { requestId: "req-1" });
        const updated = await store.update("s-idem", { set: [{ path: ["metadata", "status"], value: "closed" }], unset: [] });

        const replay = await store.create(fullDoc("s-idem"), { requestId: "req-1" });
        expect(replay.created).toBe(false);
        expect(replay.session).toStrictEqual(updated);
        expect(replay.session.metadata.status).toBe("closed");
      });

      it("replays the session of the key even when the new document has another id", async () => {
        const first = await store.create(fullDoc("s-original"), { requestId: "req-1" });
        const replay = await store.create(fullDoc("s-other"), { requestId: "req-1" });
        expect(replay).toStrictEqual({ session: first.session, created: false });
        expect(await rejection(store.get("s-other"))).toBeInstanceOf(NotFoundError);
      });

      it("rejects a taken id under a different requestId with AlreadyExistsError", async () => {
        const { session } = await store.create(fullDoc("s-idem"), { requestId: "req-1" });
        expect(await rejection(store.create(fullDoc("s-idem"), { requestId: "req-2" }))).toBeInstanceOf(AlreadyExistsError);
        expect(await rejection(store.create(fullDoc("s-idem")))).toBeInstanceOf(AlreadyExistsError);
        expect(await store.get("s-idem")).toStrictEqual(session);
      });

      it("does not register the key of a create that failed", async () => {
        await store.create(fullDoc("s-taken"));
        expect(await rejection(store.create(fullDoc("s-taken"), { requestId: "req-2" }))).toBeInstanceOf(AlreadyExistsError);

        const later = await store.create(fullDoc("s-new"), { requestId: "req-2" });
        expect(later.created).toBe(true);
        expect(later.session.id).toBe("s-new");
      });

      it("creates exactly once when the same request races with itself", async () => {
        const results = await Promise.all(Array.from({ length: 8 }, () => store.create(fullDoc("s-race"), { requestId: "req-race" })));
        expect(results.filter((r) => r.created)).toHaveLength(1);
        const stored = await store.get("s-race");
        for (const r of results) expect(r.session).toStrictEqual(stored);
      });
    });

    describe("update", () => {
      it("changes only the patched paths, bumps the revision and returns the document as stored", async () => {
        const { session: before } = await store.create(fullDoc("s-up"));
        const updateTime = at(30);
        const after = await store.update("s-up", {
          set: [
            { path: ["device", "geo", "city"], value: "Gdańsk" },
            { path: ["metadata", "time", "update"], value: updateTime },
            { path: ["metadata", "time", "duration"], value: 1800 },
            { path: ["properties", "list"], value: [{ replaced: true }] },
            { path: ["properties", "added"], value: { nested: ["new", null] } },
            { path: ["context", "page", "title"], value: "Nowy tytuł ✓" },
            { path: ["utm", "term"], value: "kw" },
            { path: ["app", "language"], value: null },
          ],
          unset: [],
        });

        const expected = structuredClone(before);
        expected.device.geo.city = "Gdańsk";
        expected.metadata.time.update = new Date(updateTime.getTime());
        expected.metadata.time.duration = 1800;
        expected.properties.list = [{ replaced: true }];
        expected.properties.added = { nested: ["new", null] };
        (expected.context.page as { title: string }).title = "Nowy tytuł ✓";
        expected.utm.term = "kw";
        expected.app.language = null;
        expected.revision = after.revision;

        expect(after.revision).toBeGreaterThan(before.revision);
        expect(after).toStrictEqual(expected);
        expect(await store.get("s-up")).toStrictEqual(expected);
        expect(after.metadata.time.update).toBeInstanceOf(Date);
      });

      it("replaces whole objects and sets null", async () => {
        await store.create(fullDoc("s-up"));
        const after = await store.update("s-up", {
          set: [
            { path: ["traits"], value: { only: "this" } },
            { path: ["profile"], value: null },
            { path: ["device", "geo", "country"], value: { name: null, code: null } },
          ],
          unset: [],
        });
        expect(after.traits).toStrictEqual({ only: "this" });
        expect(after.profile).toBeNull();
        expect(after.device.geo.country).toStrictEqual({ name: null, code: null });
        expect(await store.get("s-up")).toStrictEqual(after);
      });

      it("unsets free-form keys, nested ones too, and keeps their siblings", async () => {
        const { session: before } = await store.create(fullDoc("s-unset"));
        const after = await store.update("s-unset", {
          set: [],
          unset: [
            ["properties", "emoji"],
            ["context", "page", "referrer"],
            ["traits", "nested", "deeper"],
          ],
        });
        const expected = structuredClone(before);
        delete expected.properties.emoji;
        delete (expected.context.page as Record<string, unknown>).referrer;
        expected.traits.nested = {};
        expected.revision = after.revision;
        expect(after.revision).toBeGreaterThan(before.revision);
        expect(await store.get("s-unset")).toStrictEqual(expected);
      });

      it("treats unset of an absent free-form key as a no-op that still commits", async () => {
        const { session: before } = await store.create(fullDoc("s-unset"));
        const after = await store.update("s-unset", { set: [], unset: [["properties", "absent"]] });
        expect(after.revision).toBeGreaterThan(before.revision);
        expect(after).toStrictEqual({ ...before, revision: after.revision });
      });

      it("moves the session between listings when indexed fields change", async () => {
        await store.create(fullDoc("s-move", at(0), { profileId: "p-old", status: "active", channel: "web" }));
        await store.update("s-move", {
          set: [
            { path: ["metadata", "status"], value: "closed" },
            { path: ["metadata", "channel"], value: "app" },
            { path: ["profile"], value: { id: "p-new", primary_id: null, metadata: null } },
            { path: ["metadata", "time", "insert"], value: at(10) },
          ],
          unset: [],
        });
        expect(ids(await store.list({ status: "active", limit: 10 }))).toEqual([]);
        expect(ids(await store.list({ channel: "web", limit: 10 }))).toEqual([]);
        expect(ids(await store.list({ profileId: "p-old", limit: 10 }))).toEqual([]);
        expect(ids(await store.list({ insertTo: at(10), limit: 10 }))).toEqual([]);
        expect(ids(await store.list({ status: "closed", channel: "app", profileId: "p-new", insertFrom: at(10), limit: 10 }))).toEqual(["s-move"]);
      });

      it("applies with the current expectedRevision", async () => {
        const { session } = await store.create(fullDoc("s-cond"));
        const after = await store.update("s-cond", { set: [{ path: ["os", "version"], value: "18.0" }], unset: [] }, { expectedRevision: session.revision });
        expect(after.os.version).toBe("18.0");
        expect(after.revision).toBeGreaterThan(session.revision);
      });

      it("rejects a stale expectedRevision with RevisionConflictError and writes nothing", async () => {
        const { session: created } = await store.create(fullDoc("s-cond"));
        const current = await store.update("s-cond", { set: [{ path: ["os", "version"], value: "18.0" }], unset: [] });

        const err = await rejection(
          store.update("s-cond", { set: [{ path: ["os", "version"], value: "19.0" }], unset: [["properties", "zero"]] }, { expectedRevision: created.revision }),
        );
        expect(err).toBeInstanceOf(RevisionConflictError);
        expect(err).toMatchObject({ id: "s-cond", expected: created.revision, actual: current.revision });
        expect(await store.get("s-cond")).toStrictEqual(current);
      });

      it("throws NotFoundError for a missing id, with or without expectedRevision", async () => {
        const patch: SessionPatch = { set: [{ path: ["os", "version"], value: "1" }], unset: [] };
        const err = await rejection(store.update("missing", patch));
        expect(err).toBeInstanceOf(NotFoundError);
        expect(err).toMatchObject({ id: "missing" });
        expect(await rejection(store.update("missing", patch, { expectedRevision: 1 }))).toBeInstanceOf(NotFoundError);
      });

      it("keeps every one of many concurrent blind patches of different fields", async () => {
        const { session: before } = await store.create(fullDoc("s-conc"));
        const n = 20;
        const results = await Promise.all(
          Array.from({ length: n }, (_, i) => store.update("s-conc", { set: [{ path: ["properties", `f${i}`], value: i }], unset: [] })),
        );
        const final = await store.get("s-conc");
        for (let i = 0; i < n; i++) expect(final.properties[`f${i}`]).toBe(i);
        expect(final.properties.emoji).toBe(before.properties.emoji);
        const revisions = results.map((r) => r.revision);
        expect(new Set(revisions).size).toBe(n);
        expect(final.revision).toBe(Math.max(...revisions));
      });

      it("keeps every one of many concurrent read-patch-retry loops on different fields", async () => {
        const { session: before } = await store.create(fullDoc("s-loop"));
        const n = 12;
        const results = await Promise.all(
          Array.from({ length: n }, (_, i) =>
            updateWithRetry(store, "s-loop", { set: [{ path: ["traits", `t${i}`], value: { writer: i } }], unset: [] }, n + 1),
          ),
        );
        const final = await store.get("s-loop");
        for (let i = 0; i < n; i++) expect(final.traits[`t${i}`]).toStrictEqual({ writer: i });
        expect(final.traits.nested).toStrictEqual(before.traits.nested);
        const revisions = results.map((r) => r.revision);
        expect(new Set(revisions).size).toBe(n);
        expect(final.revision).toBe(Math.max(...revisions));
      });
    });

    describe("delete", () => {
      it("deletes, stamps a new revision, and the session is gone", async () => {
        const { session } = await store.create(fullDoc("s-del"));
        const { revision } = await store.delete("s-del");
        expect(revision).toBeGreaterThan(session.revision);
        expect(await rejection(store.get("s-del"))).toBeInstanceOf(NotFoundError);
        expect(await store.list({ limit: 10 })).toEqual([]);
      });

      it("throws NotFoundError for a missing id, also when deleting twice", async () => {
        const err = await rejection(store.delete("missing"));
        expect(err).toBeInstanceOf(NotFoundError);
        expect(err).toMatchObject({ id: "missing" });

        await store.create(fullDoc("s-del"));
        await store.delete("s-del");
        expect(await rejection(store.delete("s-del"))).toBeInstanceOf(NotFoundError);
        expect(await rejection(store.delete("s-del", { expectedRevision: 1 }))).toBeInstanceOf(NotFoundError);
      });

      it("rejects a stale expectedRevision with RevisionConflictError and keeps the session", async () => {
        const { session: created } = await store.create(fullDoc("s-del"));
        const current = await store.update("s-del", { set: [{ path: ["utm", "source"], value: "ads" }], unset: [] });

        const err = await rejection(store.delete("s-del", { expectedRevision: created.revision }));
        expect(err).toBeInstanceOf(RevisionConflictError);
        expect(err).toMatchObject({ id: "s-del", expected: created.revision, actual: current.revision });
        expect(await store.get("s-del")).toStrictEqual(current);

        const { revision } = await store.delete("s-del", { expectedRevision: current.revision });
        expect(revision).toBeGreaterThan(current.revision);
        expect(await rejection(store.get("s-del"))).toBeInstanceOf(NotFoundError);
      });

      it("frees the id for a new session with a later revision", async () => {
        await store.create(fullDoc("s-again"));
        const { revision: deleted } = await store.delete("s-again");
        const { session, created } = await store.create(fullDoc("s-again", at(3), { status: "closed" }));
        expect(created).toBe(true);
        expect(session.revision).toBeGreaterThan(deleted);
        expect(await store.get("s-again")).toStrictEqual(session);
      });
    });

    describe("concurrent writes that fail", () => {
      it("do not affect the writes issued with them", async () => {
        const { session: base } = await store.create(fullDoc("x-base"));
        const results = await Promise.allSettled([
          store.create(fullDoc("x-1")),
          store.create(fullDoc("x-base")), // taken id
          store.create(fullDoc("x-2")),
          store.create(fullDoc("x-1")), // races with the first create of x-1
          store.update("x-base", { set: [{ path: ["os", "version"], value: "stale" }], unset: [] }, { expectedRevision: base.revision + 1000 }),
          store.update("x-missing", { set: [{ path: ["os", "version"], value: "none" }], unset: [] }),
          store.update("x-base", { set: [{ path: ["os", "version"], value: "fresh" }], unset: [] }),
          store.delete("x-missing"),
        ]);
        const status = results.map((r) => (r.status === "fulfilled" ? "ok" : (r.reason as Error).constructor.name));
        expect([status[0], status[3]].sort()).toEqual(["AlreadyExistsError", "ok"]);
        expect([status[1], status[2], status[4], status[5], status[6], status[7]]).toEqual([
          "AlreadyExistsError",
          "ok",
          "RevisionConflictError",
          "NotFoundError",
          "ok",
          "NotFoundError",
        ]);
        expect((await store.get("x-base")).os.version).toBe("fresh");
        expect(ids(await store.list({ limit: 10 }))).toEqual(["x-base", "x-2", "x-1"]);
      });
    });

    describe("revisions", () => {
      it("are strictly increasing across creates, updates and deletes, and stamp the latest change", async () => {
        const patch = (v: string): SessionPatch => ({ set: [{ path: ["os", "version"], value: v }], unset: [] });
        const seen: number[] = [];
        seen.push((await store.create(fullDoc("r-a"))).session.revision);
        seen.push((await store.create(fullDoc("r-b"))).session.revision);
        const updated = await store.update("r-a", patch("2"));
        seen.push(updated.revision);
        expect((await store.get("r-a")).revision).toBe(updated.revision);
        seen.push((await store.delete("r-b")).revision);
        seen.push((await store.create(fullDoc("r-c"))).session.revision);
        seen.push((await store.update("r-c", patch("3"))).revision);
        seen.push((await store.update("r-a", patch("4"))).revision);
        seen.push((await store.delete("r-a")).revision);
        expect((await store.get("r-c")).revision).toBe(seen[5]);

        for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]);
      });

      it("are unique under many concurrent writes of every kind", async () => {
        await store.create(fullDoc("r-hot"));
        await Promise.all(Array.from({ length: 10 }, (_, i) => store.create(fullDoc(`r-del-${i}`))));
        const revisions = await Promise.all([
          ...Array.from({ length: 20 }, (_, i) => store.create(fullDoc(`r-new-${i}`)).then((r) => r.session.revision)),
          ...Array.from({ length: 20 }, (_, i) =>
            store.update("r-hot", { set: [{ path: ["aux", `k${i}`], value: i }], unset: [] }).then((d) => d.revision),
          ),
          ...Array.from({ length: 10 }, (_, i) => store.delete(`r-del-${i}`).then((r) => r.revision)),
        ]);
        expect(revisions.every((r) => Number.isSafeInteger(r) && r > 0)).toBe(true);
        expect(new Set(revisions).size).toBe(revisions.length);
      });

      it("failed writes leave the stored session and its revision unchanged", async () => {
        const { session } = await store.create(fullDoc("r-fail"));
        await rejection(store.create(fullDoc("r-fail")));
        await rejection(store.update("r-fail", { set: [], unset: [] }, { expectedRevision: session.revision + 1000 }));
        await rejection(store.delete("r-fail", { expectedRevision: session.revision + 1000 }));
        expect(await store.get("r-fail")).toStrictEqual(session);
        expect((await store.create(fullDoc("r-next"))).session.revision).toBeGreaterThan(session.revision);
      });
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

      const filters: Array<[string, Omit<ListQuery, "limit">]> = [
        ["profileId", { profileId: "p1" }],
        ["a profileId nobody has", { profileId: "nobody" }],
        ["status", { status: "closed" }],
        ["channel", { channel: "app" }],
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

      it("pages with filters through every matching session exactly once", async () => {
        const stored = await createShuffled(store, listingFixtures());
        const query = { status: "active", insertTo: at(5) };
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

    describe("visit numbering (numberVisitIn)", () => {
      const visit = (d: SessionDoc) => [d.id, d.session_index, d.previous_session_id];

      it("numbers a profile's sessions 1, 2, 3 with the previous one's id, per profile, stored with the session", async () => {
        const a1 = await store.create(fullDoc("v-a1", at(0), { profileId: "pa" }), { numberVisitIn: "pa" });
        const b1 = await store.create(fullDoc("v-b1", at(1), { profileId: "pb" }), { numberVisitIn: "pb" });
        const a2 = await store.create(fullDoc("v-a2", at(2), { profileId: "pa" }), { numberVisitIn: "pa" });
        const a3 = await store.create(fullDoc("v-a3", at(3), { profileId: "pa" }), { numberVisitIn: "pa" });
        expect([a1, b1, a2, a3].map((r) => visit(r.session))).toEqual([
          ["v-a1", 1, null],
          ["v-b1", 1, null],
          ["v-a2", 2, "v-a1"],
          ["v-a3", 3, "v-a2"],
        ]);
        expect(await store.get("v-a3")).toStrictEqual(a3.session);
        // Without the option nothing is numbered: the document is stored as given.
        const plain = await store.create(fullDoc("v-plain", at(4), { profileId: "pa" }));
        expect(visit(plain.session)).toEqual(["v-plain", 0, null]);
      });

      it("gives concurrent creates of one profile distinct, contiguous numbers, each chained to the one before", async () => {
        const n = 12;
        const results = await Promise.all(
          Array.from({ length: n }, (_, i) => store.create(fullDoc(`v-c${i}`, at(i), { profileId: "pc" }), { numberVisitIn: "pc" })),
        );
        const byIndex = new Map(results.map((r) => [r.session.session_index, r.session]));
        expect([...byIndex.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
        for (let k = 2; k <= n; k++) expect(byIndex.get(k)!.previous_session_id).toBe(byIndex.get(k - 1)!.id);
        expect(byIndex.get(1)!.previous_session_id).toBeNull();
      });

      it("takes no number for a replayed requestId; after a duplicate id the chain skips any number it took", async () => {
        await store.create(fullDoc("v-r1", at(0), { profileId: "pr" }), { numberVisitIn: "pr", requestId: "req-v" });
        const replay = await store.create(fullDoc("v-r1-again", at(1), { profileId: "pr" }), { numberVisitIn: "pr", requestId: "req-v" });
        expect(visit(replay.session)).toEqual(["v-r1", 1, null]);
        const next = await store.create(fullDoc("v-r2", at(2), { profileId: "pr" }), { numberVisitIn: "pr" });
        expect(visit(next.session)).toEqual(["v-r2", 2, "v-r1"]);
        // A failed create may leave its number unused (the port allows gaps), never a wrong chain.
        expect(await rejection(store.create(fullDoc("v-r1", at(3), { profileId: "pr" }), { numberVisitIn: "pr" }))).toBeInstanceOf(AlreadyExistsError);
        const after = await store.create(fullDoc("v-r3", at(4), { profileId: "pr" }), { numberVisitIn: "pr" });
        expect(after.session.session_index).toBeGreaterThan(2);
        expect(after.session.previous_session_id).toBe("v-r2");
      });

      it("numbers the creates of one profile issued together (one group commit) in order", async () => {
        const results = await Promise.all(
          ["v-g0", "v-g1", "v-g2", "v-g3"].map((id, i) => store.create(fullDoc(id, at(i), { profileId: "pg" }), { numberVisitIn: "pg" })),
        );
        const chain = results.map((r) => r.session).sort((a, b) => a.session_index - b.session_index);
        expect(chain.map((s) => s.session_index)).toEqual([1, 2, 3, 4]);
        for (let i = 1; i < chain.length; i++) expect(chain[i]!.previous_session_id).toBe(chain[i - 1]!.id);
        // Twice more together, now that the store has seen the profile.
        const more = await Promise.all(
          ["v-g4", "v-g5", "v-g6"].map((id, i) => store.create(fullDoc(id, at(10 + i), { profileId: "pg" }), { numberVisitIn: "pg" })),
        );
        const next = more.map((r) => r.session).sort((a, b) => a.session_index - b.session_index);
        expect(next.map((s) => [s.session_index, s.previous_session_id])).toEqual([
          [5, chain[3]!.id],
          [6, next[0]!.id],
          [7, next[1]!.id],
        ]);
        for (const s of next) expect(await store.get(s.id)).toStrictEqual(s);
      });

      it("numbers a session anew in the profile an update moves it to, atomically with the patch", async () => {
        await store.create(fullDoc("v-t1", at(0), { profileId: "pt" }), { numberVisitIn: "pt" });
        const { session } = await store.create(fullDoc("v-s1", at(1), { profileId: "ps" }), { numberVisitIn: "ps" });
        const patch: SessionPatch = {
          set: [
            { path: ["profile", "id"], value: "pt" },
            { path: ["merged_from_profile_ids"], value: ["ps"] },
          ],
          unset: [],
        };
        const moved = await store.update("v-s1", patch, { expectedRevision: session.revision, numberVisitIn: "pt" });
        expect([moved.profile?.id, moved.merged_from_profile_ids, ...visit(moved)]).toEqual(["pt", ["ps"], "v-s1", 2, "v-t1"]);
        expect(await store.get("v-s1")).toStrictEqual(moved);
        const stale = await rejection(store.update("v-s1", patch, { expectedRevision: session.revision, numberVisitIn: "pt" }));
        expect(stale).toBeInstanceOf(RevisionConflictError);
        const next = await store.create(fullDoc("v-t3", at(2), { profileId: "pt" }), { numberVisitIn: "pt" });
        expect(next.session.session_index).toBeGreaterThan(2);
        expect(next.session.previous_session_id).toBe("v-s1");
      });
    });

    describe("findExpired", () => {
      // Activity = metadata.time.update, else insert.
      function session(id: string, insert: Date, update: Date | null, status = "active"): SessionDoc {
        const doc = fullDoc(id, insert, { status });
        doc.metadata.time.update = update;
        return doc;
      }

      it("returns the active sessions idle since before idleBefore or inserted before insertedBefore, nothing else", async () => {
        await store.create(session("e-idle", at(0), at(10)));
        await store.create(session("e-idle-never-updated", at(5), null));
        await store.create(session("e-busy", at(0), at(50)));
        await store.create(session("e-too-long", at(-2000), at(55)));
        await store.create(session("e-ended", at(0), at(1), "ended"));
        await store.create(session("e-closed-old", at(-2000), null, "closed"));
        await store.create(session("e-fresh", at(40), null));
        const due = await store.findExpired({ idleBefore: at(30), insertedBefore: at(-1000), limit: 100 });
        expect(ids(due).sort()).toEqual(["e-idle", "e-idle-never-updated", "e-too-long"]);
        expect(due.find((d) => d.id === "e-idle")).toStrictEqual(await store.get("e-idle"));
      });

      it("returns at most `limit`, and stops returning a session once it is no longer active", async () => {
        for (let i = 0; i < 7; i++) await store.create(session(`e-${i}`, at(0), null));
        const first = await store.findExpired({ idleBefore: at(30), insertedBefore: at(-1000), limit: 3 });
        expect(first).toHaveLength(3);
        for (const d of first) {
          await store.update(d.id, { set: [{ path: ["metadata", "status"], value: "ended" }], unset: [] }, { expectedRevision: d.revision });
        }
        const rest = await store.findExpired({ idleBefore: at(30), insertedBefore: at(-1000), limit: 100 });
        expect(rest).toHaveLength(4);
        expect(ids(rest).filter((id) => ids(first).includes(id))).toEqual([]);
      });

      it("sees activity written by an update", async () => {
        const { session: s } = await store.create(session("e-touched", at(0), null));
        await store.update("e-touched", { set: [{ path: ["metadata", "time", "update"], value: at(100) }], unset: [] }, { expectedRevision: s.revision });
        expect(await store.findExpired({ idleBefore: at(30), insertedBefore: at(-1000), limit: 10 })).toEqual([]);
      });
    });

    describe("stats", () => {
      const ACTIVE_SINCE = at(20);
      function statsFixtures(): SessionDoc[] {
        const docs: SessionDoc[] = [];
        const countries = ["PL", "DE", null];
        for (let i = 0; i < 24; i++) {
          const doc = fullDoc(`st${String(i).padStart(2, "0")}`, at(i), {
            profileId: i % 4 === 0 ? "p-stats" : `p-${i}`,
            status: i % 5 === 0 ? "ended" : "active",
            channel: ["web", "app", "email"][i % 3],
          });
          doc.device.type = i % 2 === 0 ? "mobile" : null;
          doc.device.geo.country.code = countries[i % 3];
          doc.os.name = ["iOS", "Android", "Windows", "Other"][i % 4];
          doc.app.name = i % 3 === 0 ? "Chrome" : "Safari";
          doc.utm.source = i % 6 === 0 ? null : `src-${i % 2}`;
          doc.metadata.time.update = i % 7 === 0 ? null : at(i + 3);
          docs.push(doc);
        }
        return docs;
      }
      const activity = (d: SessionDoc) => d.metadata.time.update ?? d.metadata.time.insert;
      const online = (d: SessionDoc, since = ACTIVE_SINCE) => d.metadata.status === "active" && activity(d) >= since;
      const FIELDS: Array<[StatsField, (d: SessionDoc) => string | null]> = [
        ["channel", (d) => d.metadata.channel],
        ["status", (d) => d.metadata.status],
        ["device_type", (d) => d.device.type],
        ["os_name", (d) => d.os.name],
        ["app_name", (d) => d.app.name],
        ["country_code", (d) => d.device.geo.country.code],
        ["utm_source", (d) => d.utm.source],
      ];
      function expected(docs: SessionDoc[], field: (d: SessionDoc) => string | null) {
        const counts = new Map<string | null, number>();
        for (const d of docs) counts.set(field(d), (counts.get(field(d)) ?? 0) + 1);
        return [...counts].map(([key, count]) => ({ key, count }));
      }
      const sorted = (groups: Array<{ key: string | null; count: number }>) =>
        [...groups].sort((a, b) => String(a.key).localeCompare(String(b.key)));

      it.each(FIELDS)("counts by %s like a count over the raw documents", async (field, get) => {
        const docs = statsFixtures();
        for (const d of docs) await store.create(d);
        const result = await store.stats({ groupBy: field, onlineSince: ACTIVE_SINCE });
        expect(result.total).toBe(docs.length);
        expect(result.online).toBe(docs.filter((d) => online(d)).length);
        expect(sorted(result.groups)).toEqual(sorted(expected(docs, get)));
      });

      it("applies the filters and `insertFrom`, and gives no groups without groupBy", async () => {
        const docs = statsFixtures();
        for (const d of docs) await store.create(d);
        const cases: Array<[StatsQuery, (d: SessionDoc) => boolean]> = [
          [{ onlineSince: ACTIVE_SINCE, profileId: "p-stats" }, (d) => d.profile?.id === "p-stats"],
          [{ onlineSince: ACTIVE_SINCE, status: "ended" }, (d) => d.metadata.status === "ended"],
          [{ onlineSince: ACTIVE_SINCE, status: "active", channel: "web" }, (d) => d.metadata.status === "active" && d.metadata.channel === "web"],
          [{ onlineSince: ACTIVE_SINCE, insertFrom: at(10) }, (d) => d.metadata.time.insert >= at(10)],
          [{ onlineSince: at(0), channel: "none" }, () => false],
          [{ onlineSince: at(0) }, () => true],
        ];
        for (const [query, match] of cases) {
          const subset = docs.filter(match);
          const got = await store.stats({ ...query, groupBy: "os_name" });
          expect({ query, total: got.total, online: got.online, groups: sorted(got.groups) }).toEqual({
            query,
            total: subset.length,
            online: subset.filter((d) => online(d, query.onlineSince)).length,
            groups: sorted(expected(subset, (d) => d.os.name)),
          });
          const plain = await store.stats(query);
          expect([plain.total, plain.online, plain.groups]).toEqual([got.total, got.online, []]);
        }
      });

      it("counts nothing in an empty store", async () => {
        expect(await store.stats({ onlineSince: at(0), groupBy: "channel" })).toEqual({ total: 0, groups: [], online: 0 });
        expect(await store.stats({ onlineSince: at(0) })).toEqual({ total: 0, groups: [], online: 0 });
      });
    });

    describe("ping, deadlines and close", () => {
      it("ping resolves", async () => {
        await expect(store.ping()).resolves.toBeUndefined();
        await expect(store.ping({ deadline: new Date(Date.now() + 10_000) })).resolves.toBeUndefined();
      });

      it("calls whose deadline has passed reject with StoreUnavailableError and write nothing", async () => {
        const { session } = await store.create(fullDoc("d-1"));
        const options = { deadline: new Date(Date.now() - 1000) };
        const patch: SessionPatch = { set: [{ path: ["os", "version"], value: "late" }], unset: [] };
        const errors = await Promise.all(
          [
            store.create(fullDoc("d-2"), options),
            store.get("d-1", options),
            store.update("d-1", patch, options),
            store.delete("d-1", options),
            store.list({ limit: 10 }, options),
            store.ping(options),
          ].map(rejection),
        );
        for (const err of errors) expect(err).toBeInstanceOf(StoreUnavailableError);
        expect(await store.get("d-1")).toStrictEqual(session);
        expect(await rejection(store.get("d-2"))).toBeInstanceOf(NotFoundError);
      });

      it("calls within their deadline succeed", async () => {
        const options = { deadline: new Date(Date.now() + 10_000) };
        const { session } = await store.create(fullDoc("d-ok"), options);
        expect(await store.get("d-ok", options)).toStrictEqual(session);
        const updated = await store.update("d-ok", { set: [{ path: ["os", "version"], value: "x" }], unset: [] }, options);
        expect(ids(await store.list({ limit: 10 }, options))).toEqual(["d-ok"]);
        expect((await store.delete("d-ok", options)).revision).toBeGreaterThan(updated.revision);
      });

      it("rejects every call after close with StoreUnavailableError", async () => {
        await store.create(fullDoc("c-1"));
        await store.close();
        const errors = await Promise.all(
          [
            store.create(fullDoc("c-2")),
            store.get("c-1"),
            store.update("c-1", { set: [], unset: [] }),
            store.delete("c-1"),
            store.list({ limit: 10 }),
            store.ping(),
          ].map(rejection),
        );
        for (const err of errors) expect(err).toBeInstanceOf(StoreUnavailableError);
      });
    });
  });
}
