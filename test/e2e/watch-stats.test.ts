// WatchSessionStats end to end on a real server (embedded store), over grpc-js on the gRPC port
// and Connect on the HTTP port: the figures at once, then as writes move them, at most one
// message per min_interval, heartbeats, "online now" falling as sessions go idle, breakdowns and
// the sessions started per minute (also in GetSessionStats, and a new series when the minute
// turns), bad requests, cancellation; and two service processes on one SQLite file agreeing.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { StatsGroupBy, type GetSessionStatsResponse, type WatchSessionStatsResponse } from "../../gen/session/v1/session_service_pb";
import { connectStatsWatch, grpcClient, grpcStatsWatch, type SessionClient, type StatsStream } from "../support/clients";
import { expectCallError } from "../support/expect";
import { startProcess, type ServiceProcess } from "../support/process";
import { startTestServer, type TestServer } from "../support/server";

type Port = "grpc" | "connect";
type Init = Parameters<typeof grpcStatsWatch>[1];

/** Reads a stats stream message by message, each read bounded by a deadline. */
class Reader {
  private readonly it: AsyncIterator<WatchSessionStatsResponse>;
  /** Every message received, with the local time it arrived. */
  readonly received: Array<{ at: number; msg: WatchSessionStatsResponse }> = [];

  constructor(readonly stream: StatsStream) {
    this.it = stream.messages[Symbol.asyncIterator]();
  }

  async next(timeoutMs = 10_000): Promise<WatchSessionStatsResponse> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no message within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      const r = await Promise.race([this.it.next(), timeout]);
      if (r.done) throw new Error("stream ended");
      this.received.push({ at: Date.now(), msg: r.value });
      return r.value;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The next figures (skipping heartbeats). */
  async stats(timeoutMs = 10_000): Promise<GetSessionStatsResponse> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.next(Math.max(1, end - Date.now()));
      if (m.event.case === "stats") return m.event.value;
    }
  }

  /** Reads figures until `cond` holds for them. */
  async until(cond: (s: GetSessionStatsResponse) => boolean, timeoutMs = 10_000): Promise<GetSessionStatsResponse> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.stats(Math.max(1, end - Date.now()));
      if (cond(s)) return s;
    }
  }

  figures(): GetSessionStatsResponse[] {
    return this.received.flatMap((r) => (r.msg.event.case === "stats" ? [r.msg.event.value] : []));
  }
}

const rid = () => Math.random().toString(36).slice(2, 10);
const groups = (s: GetSessionStatsResponse) => s.groups.map((g) => `${g.key ?? "null"}:${g.count}`);
const ms = (t: Timestamp | undefined) => timestampDate(t!).getTime();
const MINUTE = 60_000;

/** The breakdowns of a response as "field: key:count ..." (keys in the response's order). */
const breakdowns = (s: GetSessionStatsResponse) =>
  s.breakdowns.map((b) => `${StatsGroupBy[b.groupBy]}: ${b.groups.map((g) => `${g.key ?? "null"}:${g.count}`).join(" ")}`);

/**
 * Checks the minute series of `s` (60 whole minutes ending with computed_at's) and returns its
 * non-zero minutes as "offset from the last minute: count"; `inserts` are the insert times of
 * the sessions it must count, placed by the response's own clock, so a minute turning between
 * the writes and the read moves nothing here.
 */
function minutes(s: GetSessionStatsResponse, inserts: number[]) {
  const current = Math.floor(ms(s.computedAt) / MINUTE) * MINUTE;
  expect(s.startedPerMinute.map((m) => ms(m.start))).toEqual(Array.from({ length: 60 }, (_, i) => current - (59 - i) * MINUTE));
  const want = new Map<number, bigint>();
  for (const at of inserts) {
    const i = 59 - (current - Math.floor(at / MINUTE) * MINUTE) / MINUTE;
    want.set(i, (want.get(i) ?? 0n) + 1n);
  }
  const got = new Map(s.startedPerMinute.flatMap((m, i) => (m.count > 0n ? [[i, m.count] as const] : [])));
  expect(got).toEqual(want);
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.each<Port>(["grpc", "connect"])("WatchSessionStats over %s", (port) => {
  let server: TestServer;
  let client: SessionClient;
  const open: Reader[] = [];
  const watch = (req: Init): Reader => {
    const stream = port === "grpc" ? grpcStatsWatch(server.grpcPort, req) : connectStatsWatch(server.httpPort, req);
    const reader = new Reader(stream);
    open.push(reader);
    return reader;
  };

  beforeAll(async () => {
    server = await startTestServer("sqlite");
    client = grpcClient(server.grpcPort);
  });

  afterEach(() => {
    for (const r of open.splice(0)) r.stream.cancel();
  });

  afterAll(async () => {
    client?.close();
    await server?.close();
    await server?.cleanup();
  });

  it("sends the figures at once, then as sessions are created, updated and deleted", async () => {
    const profile = `p-${rid()}`;
    await client.createSession({ session: { profile: { id: profile }, metadata: { channel: "web" } } });
    const r = watch({ filter: { profileId: profile }, groupBy: StatsGroupBy.CHANNEL, minInterval: { nanos: 100_000_000 } });
    const first = await r.stats(5000);
    expect({ total: first.total, online: first.onlineNow, groups: groups(first) }).toEqual({ total: 1n, online: 1n, groups: ["web:1"] });

    const created = (await client.createSession({ session: { profile: { id: profile }, metadata: { channel: "app" } } })).session!;
    const afterCreate = await r.until((s) => s.total === 2n);
    expect(groups(afterCreate)).toEqual(["app:1", "web:1"]);

    await client.updateSession({ session: { id: created.id, metadata: { channel: "web" } }, updateMask: { paths: ["metadata.channel"] } });
    expect(groups(await r.until((s) => s.groups.length === 1))).toEqual(["web:2"]);

    await client.deleteSession({ id: created.id });
    const afterDelete = await r.until((s) => s.total === 1n);
    expect({ online: afterDelete.onlineNow, groups: groups(afterDelete) }).toEqual({ online: 1n, groups: ["web:1"] });
    // A write outside the filter costs no store read once the feed has it, and sends nothing.
    const domainReq = {
      profileId: profile,
      status: "",
      channel: "",
      groupBy: "channel" as const,
      onlineWindowMs: 0,
      minIntervalMs: 100,
      heartbeatMs: 15_000,
    };
    const reads = server.statsHub.computationsOf(domainReq);
    expect(reads).toBeGreaterThanOrEqual(4);
    const other = (await client.createSession({ session: { profile: { id: `other-${rid()}` } } })).session!;
    await until(() => server.feed.headRevision >= Number(other.revision));
    await new Promise((r) => setTimeout(r, 300));
    expect(server.statsHub.computationsOf(domainReq)).toBe(reads);
    // Every message carried figures that differ from the one before.
    const sent = r.figures().map((s) => JSON.stringify([s.total.toString(), s.onlineNow.toString(), groups(s)]));
    expect(sent.filter((f, i) => i > 0 && f === sent[i - 1])).toEqual([]);
    expect(sent.length).toBeGreaterThanOrEqual(4);
  });

  it("sends at most one message per min_interval under a burst of writes", async () => {
    const profile = `b-${rid()}`;
    const r = watch({ filter: { profileId: profile }, minInterval: { nanos: 500_000_000 } });
    expect((await r.stats(5000)).total).toBe(0n);
    const started = Date.now();
    const N = 40;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let i = 0; i < N / 4; i++) await client.createSession({ session: { profile: { id: profile } } });
      }),
    );
    await r.until((s) => s.total === BigInt(N), 15_000);
    const elapsed = Date.now() - started;
    const updates = r.figures().slice(1);
    expect(updates.length).toBeLessThanOrEqual(Math.ceil(elapsed / 500) + 1);
    // Server clock: the figures of consecutive messages were computed min_interval apart.
    const times = r.figures().map((s) => Number(s.computedAt!.seconds) * 1000 + s.computedAt!.nanos / 1e6);
    for (let i = 1; i < times.length; i++) expect(times[i] - times[i - 1]).toBeGreaterThanOrEqual(495);
  });

  it("sends heartbeats on a quiet stream", async () => {
    const r = watch({ filter: { profileId: `q-${rid()}` }, heartbeatInterval: { seconds: 1n } });
    await r.stats(5000);
    const beat = await r.next(5000);
    expect(beat.event.case).toBe("heartbeat");
    if (beat.event.case === "heartbeat") {
      expect(beat.event.value.checkedAt).toBeDefined();
      expect(beat.event.value.revision).toBeGreaterThanOrEqual(0n);
    }
  });

  it("moves 'online now' down when a session goes idle, with no write", async () => {
    const profile = `o-${rid()}`;
    const r = watch({ filter: { profileId: profile }, onlineWindow: { seconds: 1n }, minInterval: { nanos: 200_000_000 } });
    expect((await r.stats(5000)).onlineNow).toBe(0n);
    await client.createSession({ session: { profile: { id: profile } } });
    await r.until((s) => s.onlineNow === 1n);
    const idle = await r.until((s) => s.onlineNow === 0n, 10_000);
    expect(idle.total).toBe(1n);
  });

  it("answers breakdowns and the sessions started per minute, in GetSessionStats and live", async () => {
    const profile = `m-${rid()}`;
    const iphone =
      "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    const inserts: number[] = [];
    for (const [channel, userAgent, pageUrl] of [
      ["web", iphone, "https://shop.example/?utm_source=news"],
      ["app", "", ""],
      ["web", iphone, ""],
    ]) {
      const s = (await client.createSession({ session: { profile: { id: profile }, metadata: { channel } }, userAgent, pageUrl })).session!;
      inserts.push(ms(s.metadata!.time!.insert));
    }
    const req = {
      filter: { profileId: profile },
      breakdowns: [StatsGroupBy.UTM_SOURCE, StatsGroupBy.CHANNEL, StatsGroupBy.OS_NAME],
      startedPerMinute: true,
    };
    const get = await client.getSessionStats(req);
    expect({ total: get.total, groups: get.groups, breakdowns: breakdowns(get) }).toEqual({
      total: 3n,
      groups: [],
      breakdowns: ["UTM_SOURCE: null:2 news:1", "CHANNEL: web:2 app:1", "OS_NAME: iOS:2 Other:1"],
    });
    minutes(get, inserts);

    const r = watch({ ...req, minInterval: { nanos: 100_000_000 } });
    const first = await r.stats(5000);
    expect(breakdowns(first)).toEqual(breakdowns(get));
    minutes(first, inserts);
    const more = (await client.createSession({ session: { profile: { id: profile }, metadata: { channel: "email" } } })).session!;
    inserts.push(ms(more.metadata!.time!.insert));
    const after = await r.until((s) => s.total === 4n);
    expect(breakdowns(after)).toEqual(["UTM_SOURCE: null:3 news:1", "CHANNEL: web:2 app:1 email:1", "OS_NAME: Other:2 iOS:2"]);
    minutes(after, inserts);
  });

  it.each<[string, Init, string]>([
    ["a repeated breakdown", { breakdowns: [StatsGroupBy.CHANNEL, StatsGroupBy.OS_NAME, StatsGroupBy.CHANNEL] }, "breakdowns[2]"],
    ["an UNSPECIFIED breakdown", { breakdowns: [StatsGroupBy.OS_NAME, StatsGroupBy.UNSPECIFIED] }, "breakdowns[1]"],
    ["an unknown breakdown", { breakdowns: [99 as StatsGroupBy] }, "breakdowns[0]"],
    ["10 breakdowns", { breakdowns: new Array<StatsGroupBy>(10).fill(StatsGroupBy.CHANNEL) }, "breakdowns"],
  ])("refuses %s in GetSessionStats and WatchSessionStats, naming the field", async (_name, req, field) => {
    await expectCallError(client.getSessionStats({ breakdowns: req.breakdowns }), Code.InvalidArgument, field);
    await expectCallError(watch(req).next(5000), Code.InvalidArgument, field);
  });

  it.each<[string, Init, string]>([
    ["min_interval too short", { minInterval: { nanos: 10_000_000 } }, "min_interval"],
    ["min_interval too long", { minInterval: { seconds: 61n } }, "min_interval"],
    ["a negative online_window", { onlineWindow: { seconds: -1n } }, "online_window"],
    ["an unknown group_by", { groupBy: 99 as StatsGroupBy }, "group_by"],
    ["a bad profile id", { filter: { profileId: "has space" } }, "filter.profile_id"],
  ])("refuses %s with INVALID_ARGUMENT naming the field", async (_name, req, field) => {
    await expectCallError(watch(req).next(5000), Code.InvalidArgument, field);
  });

  it("frees the subscribers and their shared computation on cancellation", async () => {
    const before = server.feed.watchers;
    const filter = { profileId: `c-${rid()}` };
    const readers = [watch({ filter }), watch({ filter }), watch({ filter, groupBy: StatsGroupBy.OS_NAME })];
    await Promise.all(readers.map((r) => r.stats(5000)));
    expect(server.statsHub.subscribers).toBe(3);
    expect(server.statsHub.shared).toBe(2);
    expect(server.feed.watchers).toBe(before + 2);
    for (const r of readers) r.stream.cancel();
    await until(() => server.statsHub.subscribers === 0 && server.statsHub.shared === 0 && server.feed.watchers === before);
  });
});

describe("WatchSessionStats minute series", () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer("sqlite");
  });

  afterAll(async () => {
    await server?.close();
    await server?.cleanup();
  });

  it("sends the series shifted by a minute when the server clock's minute turns, with no write", async () => {
    // Nobody online and no writes: only the turn of the minute can bring new figures.
    const r = new Reader(
      grpcStatsWatch(server.grpcPort, {
        filter: { profileId: `t-${rid()}` },
        startedPerMinute: true,
        heartbeatInterval: { seconds: 300n },
      }),
    );
    try {
      const first = await r.stats(5000);
      const next = await r.stats(75_000);
      expect(ms(next.startedPerMinute[0].start) - ms(first.startedPerMinute[0].start)).toBe(MINUTE);
      expect(ms(next.startedPerMinute[59].start)).toBe(Math.floor(ms(next.computedAt) / MINUTE) * MINUTE);
      expect(next.total).toBe(0n);
    } finally {
      r.stream.cancel();
    }
  }, 90_000);
});

describe("WatchSessionStats limit (MAX_STATS_WATCHERS)", () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer("sqlite", { MAX_STATS_WATCHERS: "2" });
  });

  afterAll(async () => {
    await server?.close();
    await server?.cleanup();
  });

  it("refuses one stream more with RESOURCE_EXHAUSTED (TOO_MANY_STATS_WATCHERS), and takes one again once a place is free", async () => {
    const readers = [
      new Reader(grpcStatsWatch(server.grpcPort, {})),
      new Reader(connectStatsWatch(server.httpPort, { groupBy: StatsGroupBy.OS_NAME })),
    ];
    try {
      await Promise.all(readers.map((r) => r.stats(5000)));
      const err = await expectCallError(new Reader(grpcStatsWatch(server.grpcPort, {})).next(5000), Code.ResourceExhausted);
      expect(err.errorInfo?.reason).toBe("TOO_MANY_STATS_WATCHERS");
      expect(err.errorInfo?.metadata.max_stats_watchers).toBe("2");
      readers[0].stream.cancel();
      await until(() => server.statsHub.subscribers === 1);
      const again = new Reader(grpcStatsWatch(server.grpcPort, {}));
      readers.push(again);
      expect((await again.stats(5000)).total).toBe(0n);
    } finally {
      for (const r of readers) r.stream.cancel();
    }
  });
});

describe("WatchSessionStats on two replicas of one SQLite file", () => {
  let dir: string;
  let replicas: ServiceProcess[];
  let clients: SessionClient[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "stats-replicas-"));
    const env = { DATA_DIR: dir, HOST: "127.0.0.1", LOG_LEVEL: "info", WATCH_POLL_INTERVAL: "50ms" };
    replicas = [await startProcess(env), await startProcess(env)];
    clients = replicas.map((r) => grpcClient(r.grpcPort));
  }, 60_000);

  afterAll(async () => {
    clients?.forEach((c) => c.close());
    await Promise.all((replicas ?? []).map((r) => r.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("agrees on the figures of writes made through both", async () => {
    const profile = `r-${rid()}`;
    const req: Init = { filter: { profileId: profile }, groupBy: StatsGroupBy.CHANNEL, minInterval: { nanos: 100_000_000 } };
    const readers = [new Reader(grpcStatsWatch(replicas[0].grpcPort, req)), new Reader(connectStatsWatch(replicas[1].httpPort, req))];
    try {
      await Promise.all(readers.map((r) => r.stats(5000)));
      const N = 20;
      for (let i = 0; i < N; i++) {
        await clients[i % 2].createSession({ session: { profile: { id: profile }, metadata: { channel: i % 3 === 0 ? "app" : "web" } } });
      }
      const final = await Promise.all(readers.map((r) => r.until((s) => s.total === BigInt(N), 15_000)));
      expect(groups(final[0])).toEqual(["web:13", "app:7"]);
      expect(groups(final[1])).toEqual(groups(final[0]));
      expect(final[1].onlineNow).toBe(final[0].onlineNow);
    } finally {
      for (const r of readers) r.stream.cancel();
    }
  }, 60_000);
});
