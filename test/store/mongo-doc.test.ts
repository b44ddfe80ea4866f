// MongoDB-specific behaviour of MongoSessionStore, beyond the port's conformance suite: what the
// stored documents look like to anyone reading the database directly, hand-written documents,
// indexes, several service processes on one database, and the database going away.

import type { Document } from "mongodb";

import { NotFoundError, StoreUnavailableError } from "../../src/domain/errors";
import { emptySessionDoc, type SessionDoc } from "../../src/domain/session";
import { MongoSessionStore, SESSION_INDEXES, revId } from "../../src/store/mongo";
import { freshDatabase, startFerret, type FreshDatabase } from "../support/mongo";
import { fullDoc } from "./conformance";

const INSERT = new Date(Date.UTC(2024, 4, 30, 7, 44, 23, 243));

/** The error `promise` rejects with; fails the test when it resolves. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to reject, but it resolved");
}

/** Every key of the fixed (non free-form) part of a stored session, as paths. */
function fixedKeys(doc: Document, prefix = ""): string[] {
  const freeForm = new Set(["context", "properties", "traits", "aux", "metadata.aux", "profile.metadata", "_id"]);
  const out: string[] = [];
  for (const [key, value] of Object.entries(doc)) {
    const path = prefix + key;
    out.push(path);
    if (freeForm.has(path)) continue;
    if (value !== null && typeof value === "object" && !(value instanceof Date) && !Array.isArray(value)) {
      out.push(...fixedKeys(value as Document, `${path}.`));
    }
  }
  return out;
}

async function isFerretDb(db: FreshDatabase): Promise<boolean> {
  const info = await db.client.db("admin").command({ buildInfo: 1 });
  return typeof info.ferretdbVersion === "string";
}

describe("MongoSessionStore: documents, indexes, processes", () => {
  let db: FreshDatabase;
  let store: MongoSessionStore;

  beforeEach(async () => {
    db = await freshDatabase();
    store = await MongoSessionStore.connect({ uri: db.uri, database: db.dbName });
  });

  afterEach(async () => {
    await store.close();
    await db.drop();
  });

  const raw = (id: string) => db.client.db(db.dbName).collection<Document>("sessions").findOne({ _id: id as never });

  it("stores a session as one document: _id, snake_case fields, BSON dates, embedded documents, nulls kept", async () => {
    const { session } = await store.create(fullDoc("s-doc"));
    const stored = await raw("s-doc");
    expect(stored).not.toBeNull();
    const doc = stored!;

    expect(doc._id).toBe("s-doc");
    expect(Object.keys(doc).sort()).toEqual(
      [
        "_id", "app", "aux", "context", "device", "metadata", "os", "profile", "properties", "revision", "traits", "utm",
        "session_index", "previous_session_id", "activity", "merged_from_profile_ids",
      ].sort(),
    );
    expect(doc.revision).toBe(session.revision);
    for (const key of fixedKeys(doc)) expect(key).toMatch(/^[a-z_]+(\.[a-z_]+)*$/);
    expect(doc.device.color_depth).toBe("24");
    expect(doc.device.geo).toHaveProperty("county", null);
    expect(doc.profile).toHaveProperty("primary_id", null);
    expect(doc.metadata.time.insert).toEqual(INSERT);

    // The server sees BSON dates and embedded documents, not strings or serialized blobs.
    const sessions = db.client.db(db.dbName).collection<Document>("sessions");
    for (const path of ["metadata.time.insert", "metadata.time.create", "metadata.time.update"]) {
      expect(await sessions.countDocuments({ _id: "s-doc", [path]: { $type: "date" } } as Document)).toBe(1);
    }
    for (const path of ["properties", "context", "device.geo", "metadata.time"]) {
      expect(await sessions.countDocuments({ _id: "s-doc", [path]: { $type: "object" } } as Document)).toBe(1);
    }
    expect(await sessions.countDocuments({ _id: "s-doc", "device.geo.county": { $type: "null" } } as Document)).toBe(1);
    expect(await sessions.countDocuments({ "properties.emoji": "🙂", "metadata.time.insert": INSERT } as Document)).toBe(1);
  });

  it("keeps request_id only for creates that carried a requestId", async () => {
    await store.create(fullDoc("s-plain"));
    await store.create(fullDoc("s-keyed"), { requestId: "req-42" });
    expect(await raw("s-plain")).not.toHaveProperty("request_id");
    expect((await raw("s-keyed"))?.request_id).toBe("req-42");
    // Internal: never part of what the store returns.
    expect(await store.get("s-keyed")).not.toHaveProperty("request_id");
  });

  it("reads back a document written by hand in the stored shape", async () => {
    const expected: SessionDoc = { ...fullDoc("s-hand"), revision: 77 };
    // Nested arrays are the one thing FerretDB v1 cannot store; the rest is the same on both.
    expected.traits = { nested: { deeper: { deepest: { value: "ok", list: [1, 2, 3] } } } };
    const { id, ...fields } = structuredClone(expected);
    await db.client.db(db.dbName).collection<Document>("sessions").insertOne({ _id: id, ...fields } as Document);

    expect(await store.get("s-hand")).toStrictEqual(expected);
    expect(await store.list({ profileId: "profile-1", limit: 10 })).toStrictEqual([expected]);
    const updated = await store.update("s-hand", { set: [{ path: ["os", "version"], value: "18" }], unset: [] }, { expectedRevision: 77 });
    expect(updated).toStrictEqual({ ...expected, os: { ...expected.os, version: "18" }, revision: updated.revision });
  });

  it("fills fields missing from a hand-written document with their documented empty values", async () => {
    await db.client
      .db(db.dbName)
      .collection<Document>("sessions")
      .insertOne({ _id: "s-min", metadata: { time: { insert: INSERT } }, profile: { id: "p-9" }, revision: 5 } as Document);
    const expected = emptySessionDoc("s-min", INSERT);
    expected.profile = { id: "p-9", primary_id: null, metadata: null };
    expected.revision = 5;
    expect(await store.get("s-min")).toStrictEqual(expected);
  });

  it("creates an index for every query, idempotently", async () => {
    const sessions = db.client.db(db.dbName).collection("sessions");
    const byName = (list: Document[]) => Object.fromEntries(list.map((i) => [i.name, i.key]));
    const first = byName(await sessions.listIndexes().toArray());
    for (const index of SESSION_INDEXES) expect(first[index.name!]).toEqual(index.key);
    expect(first.profile_insert).toEqual({ "profile.id": 1, "metadata.time.insert": -1, _id: -1 });
    expect(first.request_id).toEqual({ request_id: 1 });
    const unique = (await sessions.listIndexes().toArray()).find((i) => i.name === "request_id");
    expect(unique?.unique).toBe(true);

    // A second process starting on the same database changes nothing.
    const again = await MongoSessionStore.connect({ uri: db.uri, database: db.dbName });
    await again.close();
    expect(byName(await sessions.listIndexes().toArray())).toEqual(first);
  });

  it("detects FerretDB (which needs nested arrays wrapped)", async () => {
    expect(store.ferret).toBe(await isFerretDb(db));
  });

  it("stores nested arrays as they are on MongoDB and wrapped on FerretDB, and reads them back", async () => {
    const doc = fullDoc("s-arrays");
    doc.properties = { matrix: [[1, 2], [3, [4]]], flat: [1, "a"] };
    await store.create(doc);
    await store.update("s-arrays", { set: [{ path: ["aux", "pairs"], value: [["k", 1]] }], unset: [] });
    const stored = await raw("s-arrays");
    if (await isFerretDb(db)) {
      expect(stored?.properties).toEqual({ matrix: [{ "": [1, 2] }, { "": [3, { "": [4] }] }], flat: [1, "a"] });
      expect(stored?.aux.pairs).toEqual([{ "": ["k", 1] }]);
    } else {
      expect(stored?.properties).toEqual(doc.properties);
      expect(stored?.aux.pairs).toEqual([["k", 1]]);
    }
    const got = await store.get("s-arrays");
    expect(got.properties).toStrictEqual({ matrix: [[1, 2], [3, [4]]], flat: [1, "a"] });
    expect(got.aux.pairs).toStrictEqual([["k", 1]]);
  });

  it("gives unique revisions and loses no patch with several store instances (as several processes) on one database", async () => {
    const others = await Promise.all([1, 2].map(() => MongoSessionStore.connect({ uri: db.uri, database: db.dbName })));
    try {
      const stores = [store, ...others];
      const { session: hot } = await store.create(fullDoc("p-hot"));
      const revisions = await Promise.all([
        ...Array.from({ length: 24 }, (_, i) =>
          stores[i % 3].update("p-hot", { set: [{ path: ["properties", `w${i}`], value: i }], unset: [] }).then((d) => d.revision),
        ),
        ...Array.from({ length: 12 }, (_, i) => stores[i % 3].create(fullDoc(`p-new-${i}`)).then((r) => r.session.revision)),
      ]);
      expect(new Set(revisions).size).toBe(revisions.length);
      const final = await others[1].get("p-hot");
      for (let i = 0; i < 24; i++) expect(final.properties[`w${i}`]).toBe(i);
      expect(final.revision).toBe(Math.max(...revisions.slice(0, 24)));
      const next = await others[0].create(fullDoc("p-last"));
      expect(next.session.revision).toBeGreaterThan(Math.max(...revisions));

      // Every instance reads the same complete log, in revision order.
      const all = [...revisions, next.session.revision].sort((a, b) => a - b);
      for (const reader of stores) {
        const { changes, safeRevision } = await reader.readChanges(hot.revision, 1000);
        expect(changes.map((c) => c.revision)).toEqual(all);
        expect(safeRevision).toBe(next.session.revision);
        expect(await reader.headRevision()).toBe(next.session.revision);
      }
    } finally {
      await Promise.all(others.map((s) => s.close()));
    }
  });

  const collection = (name: string) => db.client.db(db.dbName).collection<Document>(name);
  const patch = (value: string) => ({ set: [{ path: ["os", "version"], value }], unset: [] });
  const nextReservation = async () => Number((await collection("revisions").find().sort({ _id: -1 }).limit(1).next())!._id) + 1;

  it("aborts a claim left by a writer that died before writing, once it is older than the lease", async () => {
    const { session } = await store.create(fullDoc("s-stuck"));
    const stuck = await nextReservation();
    // What a process leaves behind when it dies between taking the claim and writing.
    await collection("revisions").insertOne({ _id: revId(stuck), at: new Date(0), id: "s-stuck", kind: "updated", key: `s-stuck@${session.revision}` } as Document);

    const updated = await store.update("s-stuck", patch("after"), { expectedRevision: session.revision });
    expect(updated.os.version).toBe("after");
    expect(updated.revision).toBeGreaterThan(stuck);
    expect(await collection("changes").findOne({ _id: revId(stuck) } as Document)).toMatchObject({ aborted: true });
    const { changes, safeRevision } = await store.readChanges(session.revision, 10);
    expect(changes.map((c) => [c.revision, c.kind])).toEqual([[updated.revision, "updated"]]);
    expect(safeRevision).toBe(updated.revision);
  });

  it("commits a change whose writer died after writing the session, from the session's state", async () => {
    const { session } = await store.create(fullDoc("s-half"));
    const lost = await nextReservation();
    const before = { profileId: "profile-1", status: "active", channel: "web" };
    await collection("revisions").insertOne({ _id: revId(lost), at: new Date(), id: "s-half", kind: "updated", key: `s-half@${session.revision}`, before } as Document);
    await collection("sessions").updateOne({ _id: "s-half" } as Document, { $set: { "metadata.status": "closed", revision: lost } });

    const { changes, safeRevision } = await store.readChanges(session.revision, 10);
    expect(safeRevision).toBe(lost);
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ revision: lost, kind: "updated", id: "s-half", before });
    expect(changes[0].doc).toStrictEqual({ ...session, metadata: { ...session.metadata, status: "closed" }, revision: lost });
    expect(await store.headRevision()).toBe(lost);
  });

  it("stops reading the log before a reservation whose write may still land", async () => {
    const { session } = await store.create(fullDoc("s-slow"));
    const pending = await nextReservation();
    await collection("revisions").insertOne({ _id: revId(pending), at: new Date(), id: "s-slow", kind: "updated", key: `s-slow@${session.revision}` } as Document);
    const other = await store.create(fullDoc("s-other")); // committed after the pending revision

    expect(other.session.revision).toBeGreaterThan(pending);
    expect(await store.readChanges(session.revision, 10)).toEqual({ changes: [], safeRevision: session.revision });
    expect(await store.headRevision()).toBe(session.revision);

    // Once its writer is known to be gone (older than the lease), readers pass it.
    await collection("revisions").updateOne({ _id: revId(pending) } as Document, { $set: { at: new Date(0) } });
    const after = await store.readChanges(session.revision, 10);
    expect(after.changes.map((c) => c.id)).toEqual(["s-other"]);
    expect(after.safeRevision).toBe(other.session.revision);
    expect(await collection("changes").findOne({ _id: revId(pending) } as Document)).toMatchObject({ aborted: true });
  });

  it("purges sessions older than retentionDays, each deletion taking a revision", async () => {
    const retained = await MongoSessionStore.connect({ uri: db.uri, database: db.dbName, retentionDays: 30 });
    try {
      const now = new Date(Date.UTC(2024, 6, 1));
      const old = await retained.create(fullDoc("old", new Date(now.getTime() - 31 * 86_400_000)));
      await retained.create(fullDoc("recent", new Date(now.getTime() - 29 * 86_400_000)));
      expect(await retained.purgeExpired(now)).toBe(1);
      expect(await rejection(retained.get("old"))).toBeInstanceOf(NotFoundError);
      expect((await retained.get("recent")).id).toBe("recent");
      expect((await retained.create(fullDoc("later"))).session.revision).toBeGreaterThan(old.session.revision + 2);
      expect(await store.purgeExpired(now)).toBe(0); // no retentionDays: keeps everything
    } finally {
      await retained.close();
    }
  });
});

describe("MongoSessionStore: when the database goes away", () => {
  it("fails fast with StoreUnavailableError while it is down and works again after it is back", async () => {
    const ferret = await startFerret();
    const store = await MongoSessionStore.connect({ uri: ferret.uri, database: "restart", timeoutMs: 1_000, serverSelectionTimeoutMs: 1_000 });
    try {
      const { session } = await store.create(fullDoc("r-1"));
      await ferret.stop();

      const started = Date.now();
      expect(await rejection(store.get("r-1"))).toBeInstanceOf(StoreUnavailableError);
      expect(await rejection(store.update("r-1", { set: [], unset: [] }, { deadline: new Date(Date.now() + 300) }))).toBeInstanceOf(
        StoreUnavailableError,
      );
      expect(await rejection(store.ping())).toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(6_000);

      await ferret.restart();
      expect(await store.get("r-1")).toStrictEqual(session);
      const next = await store.create(fullDoc("r-2"));
      expect(next.session.revision).toBeGreaterThan(session.revision);
    } finally {
      await store.close();
      await ferret.dispose();
    }
  });

  it("connect rejects with StoreUnavailableError when nothing listens", async () => {
    const ferret = await startFerret();
    const uri = ferret.uri;
    await ferret.dispose();
    const err = await rejection(MongoSessionStore.connect({ uri, database: "nothing", serverSelectionTimeoutMs: 500 }));
    expect(err).toBeInstanceOf(StoreUnavailableError);
  });
});
