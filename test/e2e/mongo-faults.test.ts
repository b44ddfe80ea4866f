// The MongoDB store through the API: documents as other tools see them, a database that is
// down at start, and a database restarted under a stream of writes (no acknowledged write lost).

import { Code } from "@connectrpc/connect";
import { CallError, grpcClient } from "../support/clients";
import { freshDatabase, startFerret, type FerretProcess } from "../support/mongo";
import { startTestServer, type TestServer } from "../support/server";

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the raw stored document, read by path
type RawDoc = Record<string, any>;

/** Retries `call` until it succeeds (bounded), for waiting on recovery. */
async function eventually<T>(call: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

describe("the MongoDB store through the API", () => {
  it("stores a created session as a plain document, and serves a hand-written one", async () => {
    const db = await freshDatabase();
    const server = await startTestServer("mongodb", { MONGODB_DATABASE: db.dbName });
    const client = grpcClient(server.grpcPort);
    try {
      const created = (
        await client.createSession({
          session: { profile: { id: "p-doc" }, properties: { cart: { items: 2 } }, device: { geo: { country: { code: "PL" } } } },
          pageUrl: "https://shop.example/?utm_source=news",
        })
      ).session!;
      const raw = await db.client.db(db.dbName).collection<{ _id: string }>("sessions").findOne({ _id: created.id });
      expect(raw).not.toBeNull();
      expect(raw!._id).toBe(created.id);
      const doc = raw as unknown as RawDoc;
      expect(doc.metadata.time.insert).toBeInstanceOf(Date);
      expect(doc.metadata.time.update).toBeNull();
      expect(doc.profile).toEqual({ id: "p-doc", primary_id: null, metadata: null });
      expect(doc.device.geo.country).toEqual({ name: null, code: "PL" });
      expect(doc.device.color_depth).toBeNull();
      expect(doc.utm.source).toBe("news");
      expect(doc.properties).toEqual({ cart: { items: 2 } });
      expect(doc).not.toHaveProperty("id");
      expect(doc).not.toHaveProperty("operation");
      expect(JSON.stringify(Object.keys(doc.metadata.time))).not.toMatch(/[A-Z]/);

      // A document written by hand, in the same shape, is served by GetSession.
      const hand: RawDoc = {
        ...doc,
        _id: "hand-written-1",
        revision: 1,
        utm: { ...doc.utm, source: "handmade" },
      };
      delete hand.request_id;
      await db.client
        .db(db.dbName)
        .collection<{ _id: string }>("sessions")
        .insertOne(hand as { _id: string });
      const got = (await client.getSession({ id: "hand-written-1" })).session!;
      expect(got.utm?.source).toBe("handmade");
      expect(got.profile?.id).toBe("p-doc");
      expect(got.metadata?.time?.insert).toEqual(created.metadata?.time?.insert);
    } finally {
      client.close();
      await server.close();
      await db.drop();
    }
  });

  describe("with its own FerretDB", () => {
    let ferret: FerretProcess;
    let server: TestServer | undefined;
    beforeEach(async () => {
      ferret = await startFerret();
    });
    afterEach(async () => {
      await server?.close();
      server = undefined;
      await ferret.dispose();
    });

    it("starts while the database is down, answers UNAVAILABLE, and recovers when it comes up", async () => {
      await ferret.stop();
      server = await startTestServer("mongodb", { MONGODB_URI: ferret.uri, STORE_TIMEOUT: "1s" });
      const client = grpcClient(server.grpcPort);
      const started = Date.now();
      const err = await client.createSession({}, { timeoutMs: 3000 }).catch((e: unknown) => e as CallError);
      expect(err).toBeInstanceOf(CallError);
      expect(Code[(err as CallError).code]).toBe(Code[Code.Unavailable]);
      expect(Date.now() - started).toBeLessThan(3000);
      await ferret.restart();
      const created = await eventually(() => client.createSession({}, { timeoutMs: 3000 }));
      expect((await client.getSession({ id: created.session!.id })).session?.id).toBe(created.session!.id);
      client.close();
    });

    it("loses no acknowledged write when the database restarts under a stream of writes", async () => {
      server = await startTestServer("mongodb", { MONGODB_URI: ferret.uri, STORE_TIMEOUT: "1s" });
      const client = grpcClient(server.grpcPort);
      const acked: string[] = [];
      const failures = new Map<string, number>();
      let stop = false;
      const writer = async () => {
        for (let i = 0; !stop; i++) {
          try {
            acked.push((await client.createSession({ properties: { i } } as never, { timeoutMs: 2000 })).session!.id);
          } catch (err) {
            const code = Code[(err as CallError).code] ?? String(err);
            failures.set(code, (failures.get(code) ?? 0) + 1);
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      };
      const writers = [writer(), writer()];
      await eventually(async () => {
        if (acked.length < 30) throw new Error("not yet");
      });
      await ferret.stop();
      const beforeRestart = acked.length;
      await eventually(async () => {
        if ((failures.get(Code[Code.Unavailable]) ?? 0) + (failures.get(Code[Code.DeadlineExceeded]) ?? 0) < 2) throw new Error("not yet");
      });
      await ferret.restart();
      await eventually(async () => {
        if (acked.length < beforeRestart + 30) throw new Error("not yet");
      });
      stop = true;
      await Promise.all(writers);

      // Failures while the database was away are UNAVAILABLE or DEADLINE_EXCEEDED, never INTERNAL.
      expect([...failures.keys()].every((code) => code === Code[Code.Unavailable] || code === Code[Code.DeadlineExceeded])).toBe(true);
      for (const id of acked) expect((await client.getSession({ id })).session?.id).toBe(id);
      client.close();
    }, 120_000);
  });
});
