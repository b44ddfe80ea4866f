// The session lifecycle end to end, on every store: TouchSession, idle and maximum-length
// expiry seen by watchers, re-opening, visit numbering across two replicas, MergeProfiles
// (also when run twice at once) and GetSessionStats against counts made from the raw data.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Session } from "../../gen/session/v1/session_pb";
import { ChangeKind, StatsGroupBy, type WatchSessionsResponse } from "../../gen/session/v1/session_service_pb";
import { connectClient, grpcClient, grpcWatch, type SessionClient, type WatchStream } from "../support/clients";
import { expectCallError } from "../support/expect";
import { startTestServer, type StoreKind, type TestServer } from "../support/server";

const STORES: StoreKind[] = (process.env.E2E_STORES ?? "sqlite,mongodb").split(",") as StoreKind[];
const rid = () => Math.random().toString(36).slice(2, 10);

/** The next change on a stream (progress heartbeats skipped). */
async function nextChange(it: AsyncIterator<WatchSessionsResponse>): Promise<{ kind: ChangeKind; session: Session }> {
  for (;;) {
    const r = await it.next();
    if (r.done) throw new Error("stream ended");
    const ev = r.value.event;
    if (ev.case === "change") return { kind: ev.value.kind, session: ev.value.session! };
  }
}

/** A server (and a grpc-js client of it) for the tests of the enclosing describe. */
function serve(store: StoreKind, env: Record<string, string> = {}): { server: TestServer; client: SessionClient } {
  const t = {} as { server: TestServer; client: SessionClient };
  beforeAll(async () => {
    t.server = await startTestServer(store, env);
    t.client = grpcClient(t.server.grpcPort);
  });
  afterAll(async () => {
    t.client.close();
    await t.server.close();
    await t.server.cleanup();
  });
  return t;
}

describe.each(STORES)("session lifecycle on %s", (store) => {
  describe("TouchSession", () => {
    const t = serve(store);

    it("records activity: update time, duration, page views, entry and exit page", async () => {
      const { session: created } = await t.client.createSession({
        session: { profile: { id: `p-${rid()}` } },
        pageUrl: "https://shop.example/home",
      });
      const c = created!;
      expect(c.activity).toMatchObject({
        pageViews: 1,
        entryPage: "https://shop.example/home",
        exitPage: "https://shop.example/home",
        endReason: "",
      });
      const insert = timestampDate(c.metadata!.time!.insert!);

      // `at` may be up to a minute ahead of the server clock (client clock skew).
      const at30 = new Date(insert.getTime() + 30_500);
      const t1 = (await t.client.touchSession({ id: c.id, pageUrl: "https://shop.example/cart", at: timestampFromDate(at30) })).session!;
      expect(timestampDate(t1.metadata!.time!.update!).getTime()).toBe(at30.getTime());
      expect(t1.metadata!.time!.duration).toBe(30);
      expect(t1.activity).toMatchObject({ pageViews: 2, entryPage: "https://shop.example/home", exitPage: "https://shop.example/cart" });
      expect(t1.revision).toBeGreaterThan(c.revision);
      expect(t1.operation?.update).toBe(true);

      // A heartbeat without a page: activity, no page view.
      const at50 = new Date(insert.getTime() + 50_000);
      const t2 = (await t.client.touchSession({ id: c.id, at: timestampFromDate(at50) })).session!;
      expect(t2.metadata!.time!.duration).toBe(50);
      expect(t2.activity!.pageViews).toBe(2);

      // A late page view counts, but moves neither the activity time nor the exit page back.
      const t3 = (await t.client.touchSession({ id: c.id, pageUrl: "https://shop.example/late", at: timestampFromDate(at30) })).session!;
      expect(t3.metadata!.time!.duration).toBe(50);
      expect(t3.activity).toMatchObject({ pageViews: 3, exitPage: "https://shop.example/cart" });

      const got = (await t.client.getSession({ id: c.id })).session!;
      expect(got.activity).toEqual(t3.activity);
      expect(got.metadata!.time!.update).toEqual(t3.metadata!.time!.update);
    });

    it("loses no touch when many arrive at once", async () => {
      const { session } = await t.client.createSession({ session: {} });
      const id = session!.id;
      const n = 20;
      await Promise.all(Array.from({ length: n }, (_, i) => t.client.touchSession({ id, pageUrl: `https://shop.example/p${i}` })));
      expect((await t.client.getSession({ id })).session!.activity!.pageViews).toBe(n);
    });

    it("rejects bad input with the field named, and unknown sessions with NOT_FOUND", async () => {
      const { session } = await t.client.createSession({ session: {} });
      const s = session!;
      const insert = timestampDate(s.metadata!.time!.insert!);
      await expectCallError(t.client.touchSession({ id: "" }), Code.InvalidArgument, "id");
      await expectCallError(t.client.touchSession({ id: s.id, pageUrl: "/relative" }), Code.InvalidArgument, "page_url");
      await expectCallError(
        t.client.touchSession({ id: s.id, at: timestampFromDate(new Date(insert.getTime() - 1000)) }),
        Code.InvalidArgument,
        "at",
      );
      await expectCallError(
        t.client.touchSession({ id: s.id, at: timestampFromDate(new Date(Date.now() + 3600_000)) }),
        Code.InvalidArgument,
        "at",
      );
      await expectCallError(t.client.touchSession({ id: "no-such-session" }), Code.NotFound);
      // Nothing was written by the rejected calls.
      expect((await t.client.getSession({ id: s.id })).session!.revision).toBe(s.revision);
    });

    it("keeps the lifecycle fields server-set: create ignores them and update masks cannot name them", async () => {
      const { session } = await t.client.createSession({
        session: {
          sessionIndex: 42,
          previousSessionId: "forged",
          activity: { pageViews: 9, endReason: "idle" },
          mergedFromProfileIds: ["x"],
        },
      });
      expect(session).toMatchObject({ sessionIndex: 0, mergedFromProfileIds: [] });
      expect(session!.previousSessionId).toBeUndefined();
      expect(session!.activity).toMatchObject({ pageViews: 0, endReason: "" });
      for (const path of ["session_index", "previous_session_id", "activity.page_views", "merged_from_profile_ids"]) {
        await expectCallError(
          t.client.updateSession({ session: { id: session!.id }, updateMask: { paths: [path] } }),
          Code.InvalidArgument,
          "update_mask",
        );
      }
    });
  });

  describe("expiry", () => {
    // A short idle timeout and frequent passes, so the test waits for the watch event only.
    const t = serve(store, { SESSION_IDLE_TIMEOUT: "1s", SESSION_MAX_DURATION: "1h", SESSION_EXPIRY_INTERVAL: "100ms" });

    it("ends an idle session, tells watchers, and re-opens it on a touch", async () => {
      const { session } = await t.client.createSession({ session: { profile: { id: `p-${rid()}` } } });
      const s = session!;
      const watch = grpcWatch(t.server.grpcPort, { filter: { ids: [s.id] }, afterRevision: s.revision });
      const it = watch.messages[Symbol.asyncIterator]();
      try {
        const ended = await nextChange(it);
        expect(ended.kind).toBe(ChangeKind.UPDATED);
        expect(ended.session.metadata!.status).toBe("ended");
        expect(ended.session.activity!.endReason).toBe("idle");
        // Expiry is not activity: update and duration stay as they were.
        expect(ended.session.metadata!.time!.update).toBeUndefined();

        const reopened = (await t.client.touchSession({ id: s.id, pageUrl: "https://shop.example/back" })).session!;
        expect(reopened.metadata!.status).toBe("active");
        expect(reopened.activity!.endReason).toBe("");
        const seen = await nextChange(it);
        expect([seen.kind, seen.session.metadata!.status, seen.session.revision]).toEqual([
          ChangeKind.UPDATED,
          "active",
          reopened.revision,
        ]);

        // Idle again: it ends again.
        const again = await nextChange(it);
        expect([again.session.metadata!.status, again.session.activity!.endReason]).toEqual(["ended", "idle"]);
      } finally {
        watch.cancel();
      }
    });
  });

  describe("maximum duration", () => {
    const t = serve(store, { SESSION_IDLE_TIMEOUT: "1h", SESSION_MAX_DURATION: "1s", SESSION_EXPIRY_INTERVAL: "100ms" });

    it("ends a session that lasted too long, and a touch then asks for a new session", async () => {
      const { session } = await t.client.createSession({ session: {} });
      const s = session!;
      const watch = grpcWatch(t.server.grpcPort, { filter: { ids: [s.id] }, afterRevision: s.revision });
      const it = watch.messages[Symbol.asyncIterator]();
      try {
        // Activity does not keep it alive past the maximum.
        await t.client.touchSession({ id: s.id });
        await nextChange(it);
        const ended = await nextChange(it);
        expect([ended.session.metadata!.status, ended.session.activity!.endReason]).toEqual(["ended", "max_duration"]);
      } finally {
        watch.cancel();
      }
      const e = await expectCallError(t.client.touchSession({ id: s.id }), Code.FailedPrecondition);
      expect(e.errorInfo?.reason).toBe("SESSION_TOO_LONG");
      expect((await t.client.getSession({ id: s.id })).session!.metadata!.status).toBe("ended");
    });
  });

  describe("visit numbering and merges across two replicas", () => {
    // Two service instances on one database (for SQLite: one file, two connections).
    let a: TestServer;
    let b: TestServer;
    let ca: SessionClient;
    let cb: SessionClient;
    let dataDir: string;
    beforeAll(async () => {
      dataDir = mkdtempSync(join(tmpdir(), "session-lifecycle-"));
      const shared = { DATA_DIR: dataDir, MONGODB_DATABASE: `lifecycle_${process.pid}_${rid()}` };
      a = await startTestServer(store, shared);
      b = await startTestServer(store, shared);
      ca = grpcClient(a.grpcPort);
      cb = connectClient(b.httpPort);
    });
    afterAll(async () => {
      ca.close();
      cb.close();
      await a.close();
      await b.close();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it("gives two sessions of one profile created at once on two replicas the numbers 1 and 2", async () => {
      for (let round = 0; round < 5; round++) {
        const profile = { id: `p-${rid()}` };
        const [x, y] = await Promise.all([ca.createSession({ session: { profile } }), cb.createSession({ session: { profile } })]);
        const sessions = [x.session!, y.session!].sort((m, n) => m.sessionIndex - n.sessionIndex);
        expect(sessions.map((s) => s.sessionIndex)).toEqual([1, 2]);
        expect(sessions[0].previousSessionId).toBeUndefined();
        expect(sessions[1].previousSessionId).toBe(sessions[0].id);
        const third = (await ca.createSession({ session: { profile } })).session!;
        expect([third.sessionIndex, third.previousSessionId]).toEqual([3, sessions[1].id]);
      }
    });

    it("moves every session of the source profiles to the target exactly once, also when the merge runs twice at once", async () => {
      const [src1, src2, target] = [`src1-${rid()}`, `src2-${rid()}`, `target-${rid()}`];
      const make = async (profile: string, n: number) => {
        const ids: string[] = [];
        for (let i = 0; i < n; i++) ids.push((await ca.createSession({ session: { profile: { id: profile } } })).session!.id);
        return ids;
      };
      const targetIds = await make(target, 2);
      const sourceIds = [...(await make(src1, 3)), ...(await make(src2, 2))];
      const head = (await ca.getSession({ id: sourceIds[sourceIds.length - 1] })).session!.revision;

      // Watchers of the target see each moved session enter, once.
      const watch: WatchStream = grpcWatch(a.grpcPort, { filter: { profileId: target }, afterRevision: head });
      const it = watch.messages[Symbol.asyncIterator]();
      try {
        const req = { sourceProfileIds: [src1, src2], targetProfileId: target };
        const [m1, m2] = await Promise.all([ca.mergeProfiles(req), cb.mergeProfiles(req)]);
        const moved = [...m1.movedSessionIds, ...m2.movedSessionIds];
        expect(moved.sort()).toEqual([...sourceIds].sort());
        expect(m1.movedSessions + m2.movedSessions).toBe(sourceIds.length);

        const entered: string[] = [];
        while (entered.length < sourceIds.length) {
          const ch = await nextChange(it);
          expect(ch.kind).toBe(ChangeKind.ENTERED_FILTER);
          entered.push(ch.session.id);
        }
        expect([...entered].sort()).toEqual([...sourceIds].sort());

        // A retry afterwards has nothing left to move.
        expect((await ca.mergeProfiles(req)).movedSessions).toBe(0);
        expect((await cb.listSessions({ profileId: src1 })).sessions).toEqual([]);
        expect((await cb.listSessions({ profileId: src2 })).sessions).toEqual([]);

        const all = (await ca.listSessions({ profileId: target, pageSize: 100 })).sessions;
        expect(all.map((s) => s.id).sort()).toEqual([...targetIds, ...sourceIds].sort());
        for (const s of all) {
          const from = sourceIds.slice(0, 3).includes(s.id) ? [src1] : sourceIds.includes(s.id) ? [src2] : [];
          expect([s.id, s.mergedFromProfileIds]).toEqual([s.id, from]);
        }
        // Visit numbers of the target stay unique, chained and in the order they were taken.
        const byIndex = [...all].sort((m, n) => m.sessionIndex - n.sessionIndex);
        expect(byIndex.slice(0, 2).map((s) => s.id)).toEqual(targetIds);
        expect(new Set(all.map((s) => s.sessionIndex)).size).toBe(all.length);
        for (let i = 1; i < byIndex.length; i++) expect(byIndex[i].previousSessionId).toBe(byIndex[i - 1].id);
        // A new visit of the target comes after all of them.
        const next = (await cb.createSession({ session: { profile: { id: target } } })).session!;
        expect(next.sessionIndex).toBeGreaterThan(byIndex[byIndex.length - 1].sessionIndex);
        expect(next.previousSessionId).toBe(byIndex[byIndex.length - 1].id);
      } finally {
        watch.cancel();
      }
    });

    it("rejects bad merges with the field named", async () => {
      await expectCallError(ca.mergeProfiles({ sourceProfileIds: [], targetProfileId: "t" }), Code.InvalidArgument, "source_profile_ids");
      await expectCallError(ca.mergeProfiles({ sourceProfileIds: ["a"], targetProfileId: "" }), Code.InvalidArgument, "target_profile_id");
      await expectCallError(
        ca.mergeProfiles({ sourceProfileIds: ["a", "t"], targetProfileId: "t" }),
        Code.InvalidArgument,
        "source_profile_ids[1]",
      );
      await expectCallError(
        ca.mergeProfiles({ sourceProfileIds: ["bad id"], targetProfileId: "t" }),
        Code.InvalidArgument,
        "source_profile_ids[0]",
      );
    });
  });

  describe("GetSessionStats", () => {
    const t = serve(store);

    const UAS = [
      "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
      "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
      "",
    ];

    it("equals counts computed from the raw sessions, for every grouping, with filters and online now", async () => {
      const profile = `p-stats-${rid()}`;
      for (let i = 0; i < 30; i++) {
        const { session } = await t.client.createSession({
          session: {
            profile: i % 3 === 0 ? { id: profile } : undefined,
            metadata: { channel: ["web", "app", "email"][i % 3] },
            device: { geo: { country: { code: i % 4 === 0 ? undefined : ["PL", "DE", "US"][i % 3] } } },
          },
          userAgent: UAS[i % UAS.length],
          pageUrl: i % 5 === 0 ? "https://shop.example/" : `https://shop.example/?utm_source=s${i % 2}`,
        });
        if (i % 7 === 0)
          await t.client.updateSession({
            session: { id: session!.id, metadata: { status: "ended" } },
            updateMask: { paths: ["metadata.status"] },
          });
      }
      // The raw data, read independently of the statistics code.
      const raw: Session[] = [];
      for (let token = ""; ;) {
        const page = await t.client.listSessions({ pageSize: 7, pageToken: token });
        raw.push(...page.sessions);
        token = page.nextPageToken;
        if (token === "") break;
      }
      expect(raw).toHaveLength(30);
      const fields: Array<[StatsGroupBy, (s: Session) => string | undefined]> = [
        [StatsGroupBy.CHANNEL, (s) => s.metadata!.channel],
        [StatsGroupBy.STATUS, (s) => s.metadata!.status],
        [StatsGroupBy.DEVICE_TYPE, (s) => s.device!.type],
        [StatsGroupBy.OS_NAME, (s) => s.os!.name],
        [StatsGroupBy.APP_NAME, (s) => s.app!.name],
        [StatsGroupBy.COUNTRY_CODE, (s) => s.device!.geo!.country!.code],
        [StatsGroupBy.UTM_SOURCE, (s) => s.utm!.source],
      ];
      const count = (sessions: Session[], get: (s: Session) => string | undefined) => {
        const m = new Map<string | undefined, number>();
        for (const s of sessions) m.set(get(s), (m.get(get(s)) ?? 0) + 1);
        return [...m].map(([key, n]) => `${key ?? "<null>"}=${n}`).sort();
      };
      for (const [groupBy, get] of fields) {
        for (const [filter, match] of [
          [{}, () => true],
          [{ profileId: profile }, (s: Session) => s.profile?.id === profile],
          [{ status: "active", channel: "web" }, (s: Session) => s.metadata!.status === "active" && s.metadata!.channel === "web"],
        ] as const) {
          const subset = raw.filter(match);
          const stats = await t.client.getSessionStats({ filter, groupBy });
          const got = stats.groups.map((g) => `${g.key ?? "<null>"}=${g.count}`).sort();
          expect({ groupBy, filter, got, total: stats.total }).toEqual({
            groupBy,
            filter,
            got: count(subset, get),
            total: BigInt(subset.length),
          });
          // Largest group first.
          const counts = stats.groups.map((g) => Number(g.count));
          expect(counts).toEqual([...counts].sort((x, y) => y - x));
          // Every session was active within the default 15 minutes, unless it was ended.
          expect(stats.onlineNow).toBe(BigInt(subset.filter((s) => s.metadata!.status === "active").length));
        }
      }
      // `since` after every insert: nothing; a window of 1 ms: nobody online any more.
      const later = await t.client.getSessionStats({ since: timestampFromDate(new Date(Date.now() + 60_000)) });
      expect([later.total, later.onlineNow]).toEqual([0n, 0n]);
      const tiny = await t.client.getSessionStats({ onlineWindow: { seconds: 0n, nanos: 1_000_000 } });
      expect([tiny.total, tiny.onlineNow]).toEqual([30n, 0n]);
      await expectCallError(
        t.client.getSessionStats({ onlineWindow: { seconds: 2n * 86_400n, nanos: 0 } }),
        Code.InvalidArgument,
        "online_window",
      );
    });
  });
});
