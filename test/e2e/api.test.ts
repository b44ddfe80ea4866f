// End-to-end tests of the SessionService contract: a real server on free ports, called through
// the canonical grpc-js client and through a Connect client, on every store.

import { Code } from "@connectrpc/connect";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { CallError, connectClient, grpcClient, grpcWebClient, type SessionClient } from "../support/clients";
import { expectCallError } from "../support/expect";
import { startTestServer, type StoreKind, type TestServer } from "../support/server";

const IPHONE_UA =
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
const CAMPAIGN_URL = "https://shop.example/?utm_source=news&utm_medium=email&utm_campaign=spring";
const STORES: StoreKind[] = (process.env.E2E_STORES ?? "sqlite,mongodb").split(",") as StoreKind[];
const PROTOCOLS: Array<[string, (s: TestServer) => SessionClient]> = [
  ["grpc-js", (s) => grpcClient(s.grpcPort)],
  ["connect", (s) => connectClient(s.httpPort)],
];

describe.each(STORES)("SessionService on %s", (store) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(store);
  });
  afterAll(async () => {
    await server.close();
    await server.cleanup();
  });

  describe.each(PROTOCOLS)("over %s", (_protocol, makeClient) => {
    let client: SessionClient;
    beforeAll(() => {
      client = makeClient(server);
    });
    afterAll(() => client.close());
    // After every test, including the bad-input ones, the server still serves.
    afterEach(async () => {
      await expectCallError(client.getSession({ id: "no-such-session" }), Code.NotFound);
    });

    it("creates an enriched session from the user agent and page URL", async () => {
      const before = Date.now();
      const { session } = await client.createSession({ userAgent: IPHONE_UA, pageUrl: CAMPAIGN_URL, session: { profile: { id: "p-1" } } });
      const s = session!;
      expect(s.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(s.os).toMatchObject({ name: "iOS", version: "17.4" });
      expect(s.device).toMatchObject({ type: "mobile", brand: "Apple", model: "iPhone", touch: true });
      expect(s.app).toMatchObject({ type: "browser", name: "Mobile Safari", version: "17.4", bot: false });
      expect(s.utm).toMatchObject({ source: "news", medium: "email", campaign: "spring" });
      expect(s.utm?.term).toBeUndefined();
      expect(s.metadata?.status).toBe("active");
      expect(s.revision).toBeGreaterThan(0n);
      expect(s.operation?.new).toBe(true);
      const insert = timestampDate(s.metadata!.time!.insert!);
      expect(insert.getTime()).toBeGreaterThanOrEqual(before - 1000);
      expect(s.metadata!.time!.timestamp).toBeCloseTo(insert.getTime() / 1000, 3);
      expect(s.metadata!.time!.weekday).toBe(insert.getUTCDay());
      expect(s.metadata!.time!.update).toBeUndefined();
      expect(s.metadata!.time!.duration).toBe(0);

      const got = (await client.getSession({ id: s.id })).session!;
      expect(got.os?.name).toBe("iOS");
      expect(got.revision).toBe(s.revision);
      expect(got.operation).toBeUndefined();
    });

    it("lets explicit values win over parsed ones and ignores server-set fields", async () => {
      const { session } = await client.createSession({
        userAgent: IPHONE_UA,
        pageUrl: CAMPAIGN_URL,
        session: {
          os: { name: "CustomOS" },
          utm: { source: "partner" },
          device: { geo: { country: { code: "PL" } }, colorDepth: "24" },
          metadata: { status: "ended", channel: "web", time: { insert: timestampFromDate(new Date("2001-01-01")), duration: 99 } },
          revision: 777n,
          properties: { cart: { items: 2, tags: ["a", null] } },
        },
      });
      const s = session!;
      expect(s.os?.name).toBe("CustomOS");
      expect(s.os?.version).toBe("17.4");
      expect(s.utm).toMatchObject({ source: "partner", medium: "email", campaign: "spring" });
      expect(s.device?.geo?.country?.code).toBe("PL");
      expect(s.device?.geo?.country?.name).toBeUndefined();
      expect(s.device?.colorDepth).toBe("24");
      expect(s.metadata?.status).toBe("active");
      expect(s.metadata?.channel).toBe("web");
      expect(timestampDate(s.metadata!.time!.insert!).getFullYear()).toBeGreaterThan(2020);
      expect(s.metadata!.time!.duration).toBe(0);
      expect(s.revision).not.toBe(777n);
      expect(s.properties).toEqual({ cart: { items: 2, tags: ["a", null] } });
    });

    it("rejects a taken id and replays a retried request_id", async () => {
      const id = `dup-${Math.random().toString(36).slice(2)}`;
      const first = (await client.createSession({ session: { id }, requestId: `req-${id}` })).session!;
      const replay = (await client.createSession({ session: { id }, requestId: `req-${id}` })).session!;
      expect(replay.id).toBe(id);
      expect(replay.revision).toBe(first.revision);
      const e = await expectCallError(client.createSession({ session: { id } }), Code.AlreadyExists);
      expect(e.errorInfo?.reason).toBe("SESSION_ALREADY_EXISTS");
      // A retried request_id without an id returns the session it made the first time.
      const rid = `req-anon-${id}`;
      const a = (await client.createSession({ requestId: rid })).session!;
      const b = (await client.createSession({ requestId: rid })).session!;
      expect(b.id).toBe(a.id);
    });

    it("rejects bad ids and keys with the field named", async () => {
      await expectCallError(client.createSession({ session: { id: "has space" } }), Code.InvalidArgument, "session.id");
      await expectCallError(client.createSession({ session: { id: "x".repeat(200) } }), Code.InvalidArgument, "session.id");
      await expectCallError(client.createSession({ session: { properties: { $where: 1 } } }), Code.InvalidArgument, "session.properties");
      await expectCallError(client.createSession({ session: { traits: { a: { "b.c": 1 } } } }), Code.InvalidArgument, "session.traits.a");
      await expectCallError(client.createSession({ session: { context: { "nul\0": 1 } } }), Code.InvalidArgument, "session.context");
      await expectCallError(
        client.createSession({ session: { metadata: { aux: { $x: 1 } } } }),
        Code.InvalidArgument,
        "session.metadata.aux",
      );
      await expectCallError(client.createSession({ pageUrl: "not a url at all" }), Code.InvalidArgument, "page_url");
      await expectCallError(client.getSession({ id: "" }), Code.InvalidArgument, "id");
    });

    it("updates only the masked paths and bumps the revision", async () => {
      const created = (
        await client.createSession({
          userAgent: IPHONE_UA,
          session: { metadata: { channel: "web" }, properties: { a: 1, b: { c: 2 } }, device: { geo: { city: "Berlin" } } },
        })
      ).session!;
      const { session } = await client.updateSession({
        session: {
          id: created.id,
          metadata: { channel: "ignored" },
          device: { geo: { city: "Warsaw" } },
          properties: { b: { d: 3 } },
          traits: { vip: true },
        },
        updateMask: { paths: ["device.geo.city", "properties.b", "traits"] },
      });
      const s = session!;
      expect(s.device?.geo?.city).toBe("Warsaw");
      expect(s.metadata?.channel).toBe("web");
      expect(s.properties).toEqual({ a: 1, b: { d: 3 } });
      expect(s.traits).toEqual({ vip: true });
      expect(s.os?.name).toBe("iOS");
      expect(s.revision).toBeGreaterThan(created.revision);
      expect(s.operation?.update).toBe(true);
      expect(s.metadata?.time?.update).toBeDefined();
      expect(s.metadata?.time?.insert).toEqual(created.metadata?.time?.insert);
      const got = (await client.getSession({ id: created.id })).session!;
      expect(got.properties).toEqual({ a: 1, b: { d: 3 } });
      expect(got.revision).toBe(s.revision);

      // A masked free-form key that the request leaves out is removed; a masked nullable field cleared.
      const cleared = (
        await client.updateSession({ session: { id: created.id }, updateMask: { paths: ["properties.a", "device.geo.city"] } })
      ).session!;
      expect(cleared.properties).toEqual({ b: { d: 3 } });
      expect(cleared.device?.geo?.city).toBeUndefined();
    });

    it("replaces every client-writable field with '*' and fills a null profile", async () => {
      const created = (await client.createSession({ session: { properties: { x: 1 }, metadata: { channel: "web" } } })).session!;
      expect(created.profile).toBeUndefined();
      const s = (await client.updateSession({ session: { id: created.id, profile: { id: "p-9" } }, updateMask: { paths: ["profile.id"] } }))
        .session!;
      expect(s.profile).toMatchObject({ id: "p-9" });
      expect(s.profile?.primaryId).toBeUndefined();
      const all = (
        await client.updateSession({
          session: { id: created.id, os: { name: "Linux" }, metadata: { status: "ended" } },
          updateMask: { paths: ["*"] },
        })
      ).session!;
      expect(all.os?.name).toBe("Linux");
      expect(all.metadata?.status).toBe("ended");
      expect(all.metadata?.channel).toBe("");
      expect(all.properties).toEqual({});
      expect(all.profile).toBeUndefined();
      expect(all.id).toBe(created.id);
      expect(all.metadata?.time?.insert).toEqual(created.metadata?.time?.insert);
    });

    it("keeps the first campaign unless the mask names utm", async () => {
      const created = (await client.createSession({ pageUrl: CAMPAIGN_URL })).session!;
      const later = "https://shop.example/?utm_source=ads&utm_medium=cpc";
      const kept = (await client.updateSession({ session: { id: created.id }, updateMask: { paths: ["traits"] }, pageUrl: later }))
        .session!;
      expect(kept.utm).toMatchObject({ source: "news", medium: "email", campaign: "spring" });
      const replaced = (await client.updateSession({ session: { id: created.id }, updateMask: { paths: ["utm"] }, pageUrl: later }))
        .session!;
      expect(replaced.utm).toMatchObject({ source: "ads", medium: "cpc" });
      expect(replaced.utm?.campaign).toBeUndefined();
      const none = (await client.createSession({})).session!;
      const filled = (await client.updateSession({ session: { id: none.id }, updateMask: { paths: ["traits"] }, pageUrl: later })).session!;
      expect(filled.utm).toMatchObject({ source: "ads", medium: "cpc" });
    });

    it("re-parses a new user agent for paths outside the mask", async () => {
      const created = (await client.createSession({ userAgent: IPHONE_UA })).session!;
      const desktop = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
      const s = (
        await client.updateSession({
          session: { id: created.id, os: { name: "Mine" } },
          updateMask: { paths: ["os.name"] },
          userAgent: desktop,
        })
      ).session!;
      expect(s.os).toMatchObject({ name: "Mine", version: "10" });
      expect(s.app).toMatchObject({ name: "Chrome", version: "124.0.0.0" });
      expect(s.device?.type).toBe("desktop");
    });

    it("answers ABORTED for a stale expected_revision and applies a current one", async () => {
      const created = (await client.createSession({})).session!;
      const e = await expectCallError(
        client.updateSession({ session: { id: created.id }, updateMask: { paths: ["traits"] }, expectedRevision: created.revision - 1n }),
        Code.Aborted,
      );
      expect(e.errorInfo?.reason).toBe("REVISION_MISMATCH");
      const ok = (
        await client.updateSession({
          session: { id: created.id, traits: { t: 1 } },
          updateMask: { paths: ["traits"] },
          expectedRevision: created.revision,
        })
      ).session!;
      expect(ok.traits).toEqual({ t: 1 });
      await expectCallError(client.deleteSession({ id: created.id, expectedRevision: created.revision }), Code.Aborted);
    });

    it("rejects bad updates with the field named", async () => {
      const created = (await client.createSession({})).session!;
      const upd = (paths: string[]) => client.updateSession({ session: { id: created.id }, updateMask: { paths } });
      await expectCallError(upd(["nope"]), Code.InvalidArgument, "update_mask");
      await expectCallError(upd(["metadata.time.insert"]), Code.InvalidArgument, "update_mask");
      await expectCallError(upd(["revision"]), Code.InvalidArgument, "update_mask");
      await expectCallError(upd(["id"]), Code.InvalidArgument, "update_mask");
      await expectCallError(upd([]), Code.InvalidArgument, "update_mask");
      await expectCallError(upd(["properties.$set"]), Code.InvalidArgument, "update_mask");
      await expectCallError(
        client.updateSession({ session: { id: "" }, updateMask: { paths: ["traits"] } }),
        Code.InvalidArgument,
        "session.id",
      );
      await expectCallError(
        client.updateSession({ session: { id: created.id }, updateMask: { paths: ["traits"] }, expectedRevision: -1n }),
        Code.InvalidArgument,
        "expected_revision",
      );
      await expectCallError(client.updateSession({ session: { id: "missing-x" }, updateMask: { paths: ["traits"] } }), Code.NotFound);
      await expectCallError(
        client.updateSession({ session: { id: created.id, properties: { "a.b": 1 } }, updateMask: { paths: ["properties"] } }),
        Code.InvalidArgument,
        "session.properties",
      );
      const unchanged = (await client.getSession({ id: created.id })).session!;
      expect(unchanged.revision).toBe(created.revision);
    });

    it("keeps both of two concurrent updates of different fields", async () => {
      const created = (await client.createSession({})).session!;
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          client.updateSession({ session: { id: created.id, properties: { [`k${i}`]: i } }, updateMask: { paths: [`properties.k${i}`] } }),
        ),
      );
      const s = (await client.getSession({ id: created.id })).session!;
      expect(s.properties).toEqual(Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`k${i}`, i])));
    });

    it("deletes a session", async () => {
      const created = (await client.createSession({})).session!;
      const { revision } = await client.deleteSession({ id: created.id, expectedRevision: created.revision });
      expect(revision).toBeGreaterThan(created.revision);
      await expectCallError(client.getSession({ id: created.id }), Code.NotFound);
      await expectCallError(client.deleteSession({ id: created.id }), Code.NotFound);
      await expectCallError(client.deleteSession({ id: "" }), Code.InvalidArgument, "id");
    });

    it("lists newest first with filters and stable paging", async () => {
      const profile = `lp-${Math.random().toString(36).slice(2)}`;
      const ids: string[] = [];
      for (let i = 0; i < 7; i++) {
        ids.push(
          (await client.createSession({ session: { profile: { id: profile }, metadata: { channel: i % 2 ? "app" : "web" } } })).session!.id,
        );
      }
      const seen: string[] = [];
      let token = "";
      let pages = 0;
      do {
        const page = await client.listSessions({ profileId: profile, pageSize: 3, pageToken: token });
        seen.push(...page.sessions.map((s) => s.id));
        token = page.nextPageToken;
        pages++;
        // New sessions inserted while paging appear on no later page and cause no skips.
        if (pages === 1) await client.createSession({ session: { profile: { id: profile } } });
      } while (token !== "");
      expect(seen).toEqual([...ids].reverse());
      expect(pages).toBe(3);

      const app = await client.listSessions({ profileId: profile, channel: "app" });
      expect(app.sessions.map((s) => s.id)).toEqual([ids[5], ids[3], ids[1]]);
      const none = await client.listSessions({ profileId: profile, status: "ended" });
      expect(none.sessions).toEqual([]);
      const first = (await client.getSession({ id: ids[0] })).session!;
      const from = await client.listSessions({ profileId: profile, insertTo: first.metadata!.time!.insert });
      expect(from.sessions).toEqual([]);

      await expectCallError(client.listSessions({ pageSize: -1 }), Code.InvalidArgument, "page_size");
      await expectCallError(client.listSessions({ pageToken: "garbage!" }), Code.InvalidArgument, "page_token");
      const page1 = await client.listSessions({ profileId: profile, pageSize: 1 });
      await expectCallError(
        client.listSessions({ profileId: "other", pageToken: page1.nextPageToken }),
        Code.InvalidArgument,
        "page_token",
      );
    });

    it("rejects a message over the size limit and keeps serving", async () => {
      const big = "x".repeat(server.config.maxMessageBytes + 10);
      const err = await client.createSession({ session: { properties: { big } } }).then(
        () => null,
        (e: unknown) => e as CallError,
      );
      expect(err).toBeInstanceOf(CallError);
      expect(Code[err!.code]).toBe(Code[Code.ResourceExhausted]);
    });
  });

  it("serves gRPC-Web for browsers", async () => {
    const web = grpcWebClient(server.httpPort);
    const created = (await web.createSession({ userAgent: IPHONE_UA })).session!;
    expect(created.os?.name).toBe("iOS");
    await expectCallError(web.getSession({ id: "" }), Code.InvalidArgument, "id");
  });

  it("keeps sessions across a restart", async () => {
    const id = `restart-${Math.random().toString(36).slice(2)}`;
    const client = grpcClient(server.grpcPort);
    await client.createSession({ session: { id }, userAgent: IPHONE_UA, pageUrl: CAMPAIGN_URL });
    client.close();
    await server.close();
    server = await startTestServer(store, {
      DATA_DIR: server.config.dataDir,
      ...(server.config.mongodbUri ? { MONGODB_DATABASE: server.config.mongodbDatabase } : {}),
    });
    const again = grpcClient(server.grpcPort);
    const s = (await again.getSession({ id })).session!;
    expect(s.os?.name).toBe("iOS");
    expect(s.utm?.source).toBe("news");
    again.close();
  });
});
