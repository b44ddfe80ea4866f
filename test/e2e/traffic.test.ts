// Traffic classification end to end: CreateSession with a referrer and page URL over gRPC and
// Connect, on every store; the server-set traffic object in every answer; ListSessions and
// WatchSessions filtered by channel_group; OWN_DOMAINS; the referrer's length limit.

import { Code } from "@connectrpc/connect";
import {
  ChangeKind,
  StatsGroupBy,
  type WatchSessionsResponse,
  type WatchSessionStatsResponse,
} from "../../gen/session/v1/session_service_pb";
import {
  connectClient,
  connectStatsWatch,
  connectWatch,
  grpcClient,
  grpcStatsWatch,
  grpcWatch,
  type SessionClient,
  type StatsStream,
  type WatchStream,
} from "../support/clients";
import { expectCallError } from "../support/expect";
import { startTestServer, type StoreKind, type TestServer } from "../support/server";

const STORES: StoreKind[] = (process.env.E2E_STORES ?? "sqlite,mongodb").split(",") as StoreKind[];
type Watch = (s: TestServer, req: Parameters<typeof grpcWatch>[1]) => WatchStream;
type StatsWatch = (s: TestServer, req: Parameters<typeof grpcStatsWatch>[1]) => StatsStream;
const PROTOCOLS: Array<[string, (s: TestServer) => SessionClient, Watch, StatsWatch]> = [
  [
    "grpc-js",
    (s) => grpcClient(s.grpcPort),
    (s, req) => grpcWatch(s.grpcPort, req, { timeoutMs: 20_000 }),
    (s, req) => grpcStatsWatch(s.grpcPort, req, { timeoutMs: 20_000 }),
  ],
  [
    "connect",
    (s) => connectClient(s.httpPort),
    (s, req) => connectWatch(s.httpPort, req, { timeoutMs: 20_000 }),
    (s, req) => connectStatsWatch(s.httpPort, req, { timeoutMs: 20_000 }),
  ],
];
const PAGE = "https://shop.example/landing";
const rid = () => Math.random().toString(36).slice(2, 10);

/** The next `n` changes of a watch (progress messages skipped), as [kind, id]. */
async function changes(stream: WatchStream, n: number): Promise<Array<[ChangeKind, string, string | undefined]>> {
  const out: Array<[ChangeKind, string, string | undefined]> = [];
  const it = stream.messages[Symbol.asyncIterator]();
  while (out.length < n) {
    const r: IteratorResult<WatchSessionsResponse> = await it.next();
    if (r.done) throw new Error("stream ended");
    const e = r.value.event;
    if (e.case === "change") out.push([e.value.kind, e.value.session!.id, e.value.session!.traffic?.channelGroup]);
  }
  return out;
}

describe.each(STORES)("traffic on %s", (store) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(store, { OWN_DOMAINS: "shop.example,partner-shop.example", WATCH_POLL_INTERVAL: "20ms" });
  });
  afterAll(async () => {
    await server.close();
    await server.cleanup();
  });

  describe.each(PROTOCOLS)("over %s", (_protocol, makeClient, watch, statsWatch) => {
    let client: SessionClient;
    beforeAll(() => {
      client = makeClient(server);
    });
    afterAll(() => client.close());

    it("classifies a search referrer, returns traffic from every read and ignores a client-sent one", async () => {
      const profile = `tp-${rid()}`;
      const { session } = await client.createSession({
        pageUrl: PAGE,
        referrer: "https://www.google.de/",
        session: { profile: { id: profile }, traffic: { source: "forged", medium: "cpc", channelGroup: "Paid Search" } },
      });
      const want = {
        referrer: "https://www.google.de/",
        referrerHost: "google.de",
        source: "google",
        medium: "organic",
        channelGroup: "Organic Search",
      };
      expect(session!.traffic).toMatchObject(want);
      expect(session!.traffic!.clickId).toBeUndefined();
      expect((await client.getSession({ id: session!.id })).session!.traffic).toMatchObject(want);
      const updated = await client.updateSession({
        session: { id: session!.id, metadata: { channel: "web" } },
        updateMask: { paths: ["metadata.channel"] },
      });
      expect(updated.session!.traffic).toMatchObject(want);
      const listed = await client.listSessions({ profileId: profile });
      expect(listed.sessions.map((s) => s.traffic?.channelGroup)).toEqual(["Organic Search"]);
    });

    it("classifies click ids, UTM, own domains and direct visits", async () => {
      const cases: Array<[string, string, string, string, string, string | undefined]> = [
        [`${PAGE}?gclid=abc`, "", "google", "cpc", "Paid Search", "gclid"],
        [`${PAGE}?fbclid=x`, "https://l.facebook.com/", "facebook", "cpc", "Paid Social", "fbclid"],
        [`${PAGE}?utm_source=news&utm_medium=email&gclid=1`, "https://www.google.com/", "news", "email", "Email", "gclid"],
        [PAGE, "https://blog.shop.example/post", "(direct)", "internal", "Direct", undefined],
        [PAGE, "https://partner-shop.example/", "(direct)", "internal", "Direct", undefined],
        [PAGE, "https://news.example.org/a", "news.example.org", "referral", "Referral", undefined],
        [PAGE, "not a url", "(direct)", "(none)", "Direct", undefined],
        ["", "", "(direct)", "(none)", "Direct", undefined],
      ];
      for (const [pageUrl, referrer, source, medium, channelGroup, clickId] of cases) {
        const t = (await client.createSession({ pageUrl, referrer })).session!.traffic!;
        expect({ pageUrl, referrer, got: [t.source, t.medium, t.channelGroup, t.clickId] }).toEqual({
          pageUrl,
          referrer,
          got: [source, medium, channelGroup, clickId],
        });
      }
    });

    it("refuses a referrer over MAX_STRING_LENGTH and a traffic path in an update mask", async () => {
      await expectCallError(
        client.createSession({ pageUrl: PAGE, referrer: "https://a.example/" + "x".repeat(8200) }),
        Code.InvalidArgument,
        "referrer",
      );
      const { session } = await client.createSession({ pageUrl: PAGE });
      await expectCallError(
        client.updateSession({ session: { id: session!.id }, updateMask: { paths: ["traffic.channel_group"] } }),
        Code.InvalidArgument,
        "update_mask",
      );
    });

    it("lists by channel_group, with paging bound to it", async () => {
      const profile = `tl-${rid()}`;
      const social: string[] = [];
      for (let i = 0; i < 5; i++) {
        const referrer = i % 2 === 0 ? "https://t.co/x" : "https://www.bing.com/";
        const s = (await client.createSession({ pageUrl: PAGE, referrer, session: { profile: { id: profile } } })).session!;
        if (i % 2 === 0) social.unshift(s.id);
      }
      const page1 = await client.listSessions({ profileId: profile, channelGroup: "Organic Social", pageSize: 2 });
      expect(page1.sessions.every((s) => s.traffic?.channelGroup === "Organic Social")).toBe(true);
      const page2 = await client.listSessions({
        profileId: profile,
        channelGroup: "Organic Social",
        pageSize: 2,
        pageToken: page1.nextPageToken,
      });
      expect([...page1.sessions, ...page2.sessions].map((s) => s.id)).toEqual(social);
      expect(page2.nextPageToken).toBe("");
      // A token is bound to its filters: not usable without the channel group.
      await expectCallError(
        client.listSessions({ profileId: profile, pageSize: 2, pageToken: page1.nextPageToken }),
        Code.InvalidArgument,
        "page_token",
      );
      const all = await client.listSessions({ channelGroup: "Organic Social", pageSize: 1000 });
      expect(all.sessions.length).toBeGreaterThanOrEqual(3);
      expect((await client.listSessions({ profileId: profile, channelGroup: "Audio" })).sessions).toEqual([]);
      await expectCallError(client.listSessions({ channelGroup: "x".repeat(8200) }), Code.InvalidArgument, "channel_group");
    });

    it("counts sessions grouped by channel_group and source, filtered by profile or by channel", async () => {
      const profile = `ts-${rid()}`;
      const channel = `ch-${rid()}`;
      const visits: Array<[string, string]> = [
        [PAGE, "https://www.google.com/"],
        [PAGE, "https://www.google.fr/"],
        [`${PAGE}?gclid=1`, ""],
        [PAGE, "https://t.co/x"],
        [PAGE, ""],
      ];
      for (const [pageUrl, referrer] of visits) {
        await client.createSession({ pageUrl, referrer, session: { profile: { id: profile }, metadata: { channel } } });
      }
      const wantGroups = [
        { key: "Organic Search", count: 2n },
        { key: "Direct", count: 1n },
        { key: "Organic Social", count: 1n },
        { key: "Paid Search", count: 1n },
      ];
      const wantSources = [
        { key: "google", count: 3n },
        { key: "(direct)", count: 1n },
        { key: "twitter", count: 1n },
      ];
      // By profile (a scan of the profile's sessions) and by channel (the embedded store's counts).
      for (const filter of [{ profileId: profile }, { channel }]) {
        const byGroup = await client.getSessionStats({ groupBy: StatsGroupBy.CHANNEL_GROUP, filter });
        expect(byGroup.groups.map((g) => ({ key: g.key, count: g.count }))).toEqual(wantGroups);
        expect(byGroup.total).toBe(5n);
        const bySource = await client.getSessionStats({ groupBy: StatsGroupBy.SOURCE, filter });
        expect(bySource.groups.map((g) => ({ key: g.key, count: g.count }))).toEqual(wantSources);
      }
      // The live statistics group the same way.
      const live = statsWatch(server, { groupBy: StatsGroupBy.CHANNEL_GROUP, filter: { channel } });
      try {
        const first: IteratorResult<WatchSessionStatsResponse> = await live.messages[Symbol.asyncIterator]().next();
        if (first.done) throw new Error("the stats stream ended");
        const e = first.value.event;
        expect(e.case).toBe("stats");
        const groups = e.case === "stats" ? e.value.groups : [];
        expect(groups.map((g) => ({ key: g.key, count: g.count }))).toEqual(wantGroups);
      } finally {
        live.cancel();
      }
    });

    it("watches by channel_group: only the sessions of that group, live and in the initial state", async () => {
      const profile = `tw-${rid()}`;
      const first = (await client.createSession({ pageUrl: `${PAGE}?ttclid=1`, session: { profile: { id: profile } } })).session!;
      const stream = watch(server, { filter: { profileId: profile, channelGroup: "Paid Social" }, afterRevision: first.revision });
      const ids: string[] = [];
      try {
        for (const pageUrl of [PAGE, `${PAGE}?fbclid=2`, `${PAGE}?gclid=3`, `${PAGE}?li_fat_id=4`]) {
          ids.push((await client.createSession({ pageUrl, session: { profile: { id: profile } } })).session!.id);
        }
        expect(await changes(stream, 2)).toEqual([
          [ChangeKind.CREATED, ids[1], "Paid Social"],
          [ChangeKind.CREATED, ids[3], "Paid Social"],
        ]);
      } finally {
        stream.cancel();
      }
      const initial = watch(server, { filter: { profileId: profile, channelGroup: "Paid Social" }, sendInitial: true });
      try {
        const got = await changes(initial, 3);
        expect(got.map(([kind, , group]) => [kind, group])).toEqual(Array(3).fill([ChangeKind.INITIAL, "Paid Social"]));
        expect(got.map(([, id]) => id).sort()).toEqual([first.id, ids[1], ids[3]].sort());
      } finally {
        initial.cancel();
      }
    });
  });
});
