// The change log's protocol on MongoDB (beyond the port's contract, which the conformance suite
// checks): a revision is reserved before the write, and a reader resolves a reservation its
// writer left behind: aborted once older than the lease when the session was not written,
// committed from the session's state when it was, and waited for while its write may still land.

import type { Document } from "mongodb";

import { MongoSessionStore, revId } from "../../../src/store/mongo";
import { freshDatabase, type FreshDatabase } from "../../support/mongo";
import { fullDoc } from "../conformance/support";

describe("MongoSessionStore: reservations left behind in the change log", () => {
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

  const collection = (name: string) => db.client.db(db.dbName).collection<Document>(name);
  const patch = (value: string) => ({ set: [{ path: ["os", "version"], value }], unset: [] });
  const nextReservation = async () => Number((await collection("revisions").find().sort({ _id: -1 }).limit(1).next())!._id) + 1;

  it("aborts a claim left by a writer that died before writing, once it is older than the lease", async () => {
    const { session } = await store.create(fullDoc("s-stuck"));
    const stuck = await nextReservation();
    // What a process leaves behind when it dies between taking the claim and writing.
    await collection("revisions").insertOne({
      _id: revId(stuck),
      at: new Date(0),
      id: "s-stuck",
      kind: "updated",
      key: `s-stuck@${session.revision}`,
    } as Document);

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
    await collection("revisions").insertOne({
      _id: revId(lost),
      at: new Date(),
      id: "s-half",
      kind: "updated",
      key: `s-half@${session.revision}`,
      before,
    } as Document);
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
    await collection("revisions").insertOne({
      _id: revId(pending),
      at: new Date(),
      id: "s-slow",
      kind: "updated",
      key: `s-slow@${session.revision}`,
    } as Document);
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
});
