// The stored document, as anyone reading the database directly sees it: one document per
// session with snake_case fields, BSON dates and embedded documents; hand-written documents read
// back; nested arrays wrapped on FerretDB only.

import type { Document } from "mongodb";

import { emptySessionDoc, type SessionDoc } from "../../../src/domain/session";
import { MongoSessionStore } from "../../../src/store/mongo";
import { freshDatabase, type FreshDatabase } from "../../support/mongo";
import { fullDoc } from "../conformance/support";

const INSERT = new Date(Date.UTC(2024, 4, 30, 7, 44, 23, 243));

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

describe("MongoSessionStore: the stored document", () => {
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

  const raw = (id: string) =>
    db.client
      .db(db.dbName)
      .collection<Document>("sessions")
      .findOne({ _id: id as never });

  it("stores a session as one document: _id, snake_case fields, BSON dates, embedded documents, nulls kept", async () => {
    const { session } = await store.create(fullDoc("s-doc"));
    const stored = await raw("s-doc");
    expect(stored).not.toBeNull();
    const doc = stored!;

    expect(doc._id).toBe("s-doc");
    expect(Object.keys(doc).sort()).toEqual(
      [
        "_id",
        "app",
        "aux",
        "context",
        "device",
        "metadata",
        "os",
        "profile",
        "properties",
        "revision",
        "traits",
        "utm",
        "session_index",
        "previous_session_id",
        "activity",
        "merged_from_profile_ids",
        "traffic",
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
    expect(doc.traffic).toHaveProperty("channel_group", "Organic Search");
    expect(doc.traffic).toHaveProperty("click_id", null);
    for (const path of ["properties", "context", "device.geo", "metadata.time", "traffic"]) {
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
    await db.client
      .db(db.dbName)
      .collection<Document>("sessions")
      .insertOne({ _id: id, ...fields } as Document);

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

  it("detects FerretDB (which needs nested arrays wrapped)", async () => {
    expect(store.ferret).toBe(await isFerretDb(db));
  });

  it("stores nested arrays as they are on MongoDB and wrapped on FerretDB, and reads them back", async () => {
    const doc = fullDoc("s-arrays");
    doc.properties = {
      matrix: [
        [1, 2],
        [3, [4]],
      ],
      flat: [1, "a"],
    };
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
    expect(got.properties).toStrictEqual({
      matrix: [
        [1, 2],
        [3, [4]],
      ],
      flat: [1, "a"],
    });
    expect(got.aux.pairs).toStrictEqual([["k", 1]]);
  });
});
