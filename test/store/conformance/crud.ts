// Creating, reading, updating and deleting one session: round trips, idempotent creates
// (requestId), patches, conditional writes, and failed writes among concurrent ones.

import { AlreadyExistsError, NotFoundError, RevisionConflictError } from "../../../src/domain/errors";
import { emptySessionDoc, type SessionDoc } from "../../../src/domain/session";
import type { SessionPatch, SessionStore } from "../../../src/domain/store";
import { at, fullDoc, ids, rejection, type CurrentStore } from "./support";

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

export function crudTests(current: CurrentStore): void {
  let store: SessionStore;
  beforeEach(() => {
    store = current().store;
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
      expect(ids(await store.list({ status: "closed", channel: "app", profileId: "p-new", insertFrom: at(10), limit: 10 }))).toEqual([
        "s-move",
      ]);
    });

    it("applies with the current expectedRevision", async () => {
      const { session } = await store.create(fullDoc("s-cond"));
      const after = await store.update(
        "s-cond",
        { set: [{ path: ["os", "version"], value: "18.0" }], unset: [] },
        { expectedRevision: session.revision },
      );
      expect(after.os.version).toBe("18.0");
      expect(after.revision).toBeGreaterThan(session.revision);
    });

    it("rejects a stale expectedRevision with RevisionConflictError and writes nothing", async () => {
      const { session: created } = await store.create(fullDoc("s-cond"));
      const current = await store.update("s-cond", { set: [{ path: ["os", "version"], value: "18.0" }], unset: [] });

      const err = await rejection(
        store.update(
          "s-cond",
          { set: [{ path: ["os", "version"], value: "19.0" }], unset: [["properties", "zero"]] },
          { expectedRevision: created.revision },
        ),
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
        store.update(
          "x-base",
          { set: [{ path: ["os", "version"], value: "stale" }], unset: [] },
          { expectedRevision: base.revision + 1000 },
        ),
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
}
