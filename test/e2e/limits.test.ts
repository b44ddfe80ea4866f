// Issue 10, bounded input and "whatever commits can be read back": a real server on free ports,
// on every store, called over gRPC (grpc-js) and Connect (JSON, as curl or a browser sends it).
// Every over-limit or out-of-range request fails with the documented code naming the field and
// writes nothing; afterwards every session reads back on both protocols (GetSession and a walk
// of the default ListSessions, which fails for everyone when a single stored session cannot be
// encoded).

import { Code } from "@connectrpc/connect";
import { connectClient, grpcClient, grpcWatch, type SessionClient } from "../support/clients";
import { expectCallError } from "../support/expect";
import { startTestServer, type StoreKind, type TestServer } from "../support/server";

const STORES: StoreKind[] = (process.env.E2E_STORES ?? "sqlite,mongodb").split(",") as StoreKind[];
const MAX_SECONDS = 253_402_300_799n; // 9999-12-31T23:59:59Z

/** A Connect call with a hand-written JSON body (what a JSON client can send that ours cannot encode). */
async function connectJson(port: number, method: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}/session.v1.SessionService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe.each(STORES)("input limits on %s", (store) => {
  let server: TestServer;
  let grpc: SessionClient;
  let connect: SessionClient;
  let clients: Array<[string, SessionClient]>;
  let seq = 0;
  const uid = (prefix: string): string => `${prefix}-${store}-${++seq}`;

  beforeAll(async () => {
    server = await startTestServer(store);
    grpc = grpcClient(server.grpcPort);
    connect = connectClient(server.httpPort);
    clients = [
      ["grpc", grpc],
      ["connect", connect],
    ];
  });
  afterAll(async () => {
    grpc.close();
    connect.close();
    await server.close();
    await server.cleanup();
  });

  /** Walks the whole default listing on both protocols; returns the ids (they must agree). */
  async function listAll(): Promise<string[]> {
    const seen: string[][] = [];
    for (const [, c] of clients) {
      const ids: string[] = [];
      let pageToken = "";
      do {
        const page = await c.listSessions({ pageToken });
        expect(page.sessions.length).toBeGreaterThan(0);
        ids.push(...page.sessions.map((s) => s.id));
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      seen.push(ids);
    }
    expect(seen[1]).toEqual(seen[0]);
    return seen[0];
  }

  /** The call wrote nothing: `id` does not exist, on both protocols. */
  async function expectAbsent(id: string): Promise<void> {
    for (const [, c] of clients) await expectCallError(c.getSession({ id }), Code.NotFound);
  }

  /** The session is still at `revision`, readable on both protocols. */
  async function expectRevision(id: string, revision: bigint): Promise<void> {
    for (const [, c] of clients) expect((await c.getSession({ id })).session?.revision).toBe(revision);
  }

  // After every test, every stored session is still readable by everyone.
  afterEach(async () => {
    await listAll();
  });

  describe("update masks (defect 1)", () => {
    it.each([["grpc"], ["connect"]])("rejects 50,000 distinct paths over %s with INVALID_ARGUMENT update_mask", async (name) => {
      const c = name === "grpc" ? grpc : connect;
      const id = uid("mask");
      const { revision } = (await c.createSession({ session: { id } })).session!;
      const paths = Array.from({ length: 50_000 }, (_, i) => `properties.k${i}`);
      const e = await expectCallError(c.updateSession({ session: { id }, updateMask: { paths } }), Code.InvalidArgument, "update_mask");
      expect(e.message).toMatch(/MAX_MASK_PATHS/);
      await expectRevision(id, revision);
    });

    it('applies 100,000 copies of "*" as one', async () => {
      const id = uid("star");
      await grpc.createSession({ session: { id, properties: { gone: 1 } } });
      const s = (
        await grpc.updateSession({
          session: { id, traits: { kept: true } },
          updateMask: { paths: Array.from({ length: 100_000 }, () => "*") },
        })
      ).session!;
      expect(s.properties).toEqual({});
      expect(s.traits).toEqual({ kept: true });
    });
  });

  describe("every input dimension is bounded", () => {
    it.each([["grpc"], ["connect"]])("names the field of an over-long string or too many keys over %s, writing nothing", async (name) => {
      const c = name === "grpc" ? grpc : connect;
      const id = uid("dim");
      await expectCallError(c.createSession({ session: { id }, userAgent: "M".repeat(9000) }), Code.InvalidArgument, "user_agent");
      await expectCallError(
        c.createSession({ session: { id }, pageUrl: `https://a.example/?q=${"x".repeat(9000)}` }),
        Code.InvalidArgument,
        "page_url",
      );
      await expectCallError(
        c.createSession({ session: { id, device: { geo: { city: "c".repeat(9000) } } } }),
        Code.InvalidArgument,
        "session.device.geo.city",
      );
      const wide = Object.fromEntries(Array.from({ length: 10_001 }, (_, i) => [`k${i}`, i]));
      await expectCallError(c.createSession({ session: { id, properties: wide } }), Code.InvalidArgument, "session.properties");
      await expectCallError(
        c.createSession({ session: { id, profile: { id: "p", metadata: { list: Array.from({ length: 10_001 }, () => 1) } } } }),
        Code.InvalidArgument,
        "session.profile.metadata",
      );
      await expectCallError(c.listSessions({ channel: "c".repeat(9000) }), Code.InvalidArgument, "channel");
      await expectCallError(
        c.mergeProfiles({ targetProfileId: "t", sourceProfileIds: Array.from({ length: 101 }, (_, i) => `s${i}`) }),
        Code.InvalidArgument,
        "source_profile_ids",
      );
      await expectAbsent(id);
    });
  });

  describe("document size (defect 4: commits that could not be read back)", () => {
    it.each([["grpc"], ["connect"]])("refuses a create over MAX_SESSION_BYTES over %s, writing nothing", async (name) => {
      const c = name === "grpc" ? grpc : connect;
      const id = uid("big");
      const e = await expectCallError(
        c.createSession({ session: { id, properties: { blob: "x".repeat(300_000) } } }),
        Code.ResourceExhausted,
        "session.properties",
      );
      expect(e.errorInfo?.reason).toBe("SESSION_TOO_LARGE");
      await expectAbsent(id);
    });

    it("refuses an update that would make the session too large, leaving it as it was", async () => {
      const id = uid("grow");
      const { revision } = (await grpc.createSession({ session: { id, properties: { a: "a".repeat(150_000) } } })).session!;
      for (const [, c] of clients) {
        await expectCallError(
          c.updateSession({ session: { id, properties: { b: "b".repeat(150_000) } }, updateMask: { paths: ["properties.b"] } }),
          Code.ResourceExhausted,
          "session.properties",
        );
      }
      await expectRevision(id, revision);
    });

    it.each([["grpc"], ["connect"]])("refuses a TouchSession with a 1 MB page_url over %s before writing", async (name) => {
      const c = name === "grpc" ? grpc : connect;
      const id = uid("touch");
      const { revision } = (await c.createSession({ session: { id } })).session!;
      await expectCallError(
        c.touchSession({ id, pageUrl: `https://a.example/?q=${"x".repeat(1_000_000)}` }),
        Code.InvalidArgument,
        "page_url",
      );
      await expectRevision(id, revision);
    });

    it("refuses a TouchSession whose page_url (entry and exit page) would pass the limit", async () => {
      const id = uid("touch-full");
      const { revision } = (await grpc.createSession({ session: { id, properties: { blob: "x".repeat(250_000) } } })).session!;
      const url = `https://a.example/?q=${"x".repeat(8000)}`;
      for (const [, c] of clients) await expectCallError(c.touchSession({ id, pageUrl: url }), Code.ResourceExhausted, "page_url");
      await expectRevision(id, revision);
      // A touch without a page still records the activity.
      expect((await grpc.touchSession({ id })).session?.revision).toBeGreaterThan(revision);
    });
  });

  describe("timestamps (defect 4)", () => {
    it.each<[string, bigint, number]>([
      ["2^62 seconds", 2n ** 62n, 0],
      ["year 10000", MAX_SECONDS + 1n, 0],
      ["negative nanos", 1_700_000_000n, -1],
      ["nanos of a second", 1_700_000_000n, 1_000_000_000],
    ])("rejects a create time of %s over gRPC, writing nothing", async (_name, seconds, nanos) => {
      const id = uid("ts");
      await expectCallError(
        grpc.createSession({ session: { id, metadata: { time: { create: { seconds, nanos } } } } }),
        Code.InvalidArgument,
        "session.metadata.time.create",
      );
      await expectAbsent(id);
    });

    it("rejects out-of-range touch, list and stats bounds, naming the field", async () => {
      const id = uid("ts-touch");
      const { revision } = (await grpc.createSession({ session: { id } })).session!;
      await expectCallError(grpc.touchSession({ id, at: { seconds: 2n ** 62n } }), Code.InvalidArgument, "at");
      await expectCallError(grpc.touchSession({ id, at: { seconds: 1n, nanos: -5 } }), Code.InvalidArgument, "at");
      await expectRevision(id, revision);
      await expectCallError(grpc.listSessions({ insertFrom: { seconds: 2n ** 62n } }), Code.InvalidArgument, "insert_from");
      await expectCallError(grpc.listSessions({ insertTo: { seconds: -(2n ** 62n) } }), Code.InvalidArgument, "insert_to");
      await expectCallError(grpc.getSessionStats({ since: { seconds: MAX_SECONDS + 1n } }), Code.InvalidArgument, "since");
    });

    it("stores the largest Connect JSON create time to the millisecond and reads it back on both protocols", async () => {
      const id = uid("j-max");
      const created = await connectJson(server.httpPort, "CreateSession", {
        session: { id, metadata: { time: { create: "9999-12-31T23:59:59.999999999Z" } } },
      });
      expect(created.status).toBe(200);
      const got = await connectJson(server.httpPort, "GetSession", { id });
      expect(got.status).toBe(200);
      expect(got.json).toMatchObject({ session: { id, metadata: { time: { create: "9999-12-31T23:59:59.999Z" } } } });
      const g = (await grpc.getSession({ id })).session!;
      expect(g.metadata?.time?.create).toMatchObject({ seconds: MAX_SECONDS, nanos: 999_000_000 });
      const smallest = uid("j-min");
      expect(
        (
          await connectJson(server.httpPort, "CreateSession", {
            session: { id: smallest, metadata: { time: { create: "0001-01-01T00:00:00Z" } } },
          })
        ).status,
      ).toBe(200);
      expect((await grpc.getSession({ id: smallest })).session?.metadata?.time?.create).toMatchObject({
        seconds: -62_135_596_800n,
        nanos: 0,
      });
    });

    it("answers a Connect JSON create time past year 9999 with INVALID_ARGUMENT, writing nothing", async () => {
      const id = uid("j-10000");
      const res = await connectJson(server.httpPort, "CreateSession", {
        session: { id, metadata: { time: { create: "10000-01-01T00:00:00Z" } } },
      });
      expect(res.status).toBe(400);
      expect(res.json.code).toBe("invalid_argument");
      await expectAbsent(id);
    });
  });

  describe("list pages are bounded by bytes (defect 4)", () => {
    it("pages five 240 KB sessions without RESOURCE_EXHAUSTED, continuing with next_page_token", async () => {
      const channel = uid("big-page");
      const ids: string[] = [];
      for (let i = 0; i < 5; i++)
        ids.push((await grpc.createSession({ session: { metadata: { channel }, properties: { blob: "x".repeat(240_000) } } })).session!.id);
      for (const [, c] of clients) {
        const pages: number[] = [];
        const seen: string[] = [];
        let pageToken = "";
        do {
          const page = await c.listSessions({ channel, pageToken });
          pages.push(page.sessions.length);
          seen.push(...page.sessions.map((s) => s.id));
          pageToken = page.nextPageToken;
        } while (pageToken !== "");
        expect(pages[0]).toBeLessThan(5); // 5 x 240 KB is over MAX_MESSAGE_BYTES (1 MiB)
        expect(Math.min(...pages)).toBeGreaterThan(0);
        expect(seen.sort()).toEqual([...ids].sort());
      }
      // The unfiltered default listing (page_size 50) walks through them too (afterEach).
      expect(await listAll()).toEqual(expect.arrayContaining(ids));
    });
  });

  describe("replayed CreateSession (defect 8)", () => {
    it.each([["grpc"], ["connect"]])("answers operation.new = false to a replay over %s, and true again after a delete", async (name) => {
      const c = name === "grpc" ? grpc : connect;
      const requestId = uid("req");
      const first = (await c.createSession({ requestId, session: { properties: { n: 1 } } })).session!;
      expect(first.operation?.new).toBe(true);
      const replay = (await c.createSession({ requestId, session: { properties: { n: 2 } } })).session!;
      expect(replay.id).toBe(first.id);
      expect(replay.revision).toBe(first.revision);
      expect(replay.operation?.new).toBe(false);
      // Documented: the key is forgotten with its session; a retry after the delete creates anew.
      await c.deleteSession({ id: first.id });
      const again = (await c.createSession({ requestId, session: { properties: { n: 3 } } })).session!;
      expect(again.operation?.new).toBe(true);
      expect(again.id).not.toBe(first.id);
      expect(again.properties).toEqual({ n: 3 });
    });
  });
  describe("revisions a client sends", () => {
    it("rejects after_revision and expected_revision beyond 2^53 - 1, naming the field", async () => {
      const huge = 2n ** 63n - 1n;
      const watch = grpcWatch(server.grpcPort, { afterRevision: huge });
      await expect(
        (async () => {
          for await (const _ of watch.messages) void _;
        })(),
      ).rejects.toMatchObject({ code: Code.InvalidArgument, fields: ["after_revision"] });
      const id = uid("rev");
      await grpc.createSession({ session: { id } });
      await expectCallError(
        grpc.updateSession({
          session: { id, metadata: { channel: "x" } },
          updateMask: { paths: ["metadata.channel"] },
          expectedRevision: huge,
        }),
        Code.InvalidArgument,
        "expected_revision",
      );
      await expectCallError(grpc.deleteSession({ id, expectedRevision: huge }), Code.InvalidArgument, "expected_revision");
    });

    it("a watch resumed from a future revision does not move the head other watchers start from", async () => {
      const future = 2n ** 52n;
      const early = grpcWatch(server.grpcPort, { afterRevision: future, heartbeatInterval: { seconds: 1n } });
      const first = await early.messages[Symbol.asyncIterator]().next();
      expect(first.value?.event.case).toBe("progress");
      early.cancel();
      const id = uid("after-future");
      const created = (await grpc.createSession({ session: { id } })).session!;
      const snapshot = grpcWatch(server.grpcPort, { filter: { ids: [id] }, sendInitial: true });
      const seen: Array<{ kind: string; revision: bigint }> = [];
      for await (const msg of snapshot.messages) {
        if (msg.event.case === "change") seen.push({ kind: "change", revision: msg.event.value.revision });
        if (msg.event.case === "initialStateEnd") {
          seen.push({ kind: "end", revision: msg.event.value.revision });
          break;
        }
      }
      snapshot.cancel();
      expect(seen).toEqual([
        { kind: "change", revision: created.revision },
        { kind: "end", revision: expect.any(BigInt) },
      ]);
      expect(seen[1].revision < future).toBe(true);
    });
  });
});
