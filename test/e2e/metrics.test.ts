// Prometheus metrics (METRICS_PORT): a real server takes calls on both ports, then its /metrics
// exposition is checked for the counts of those calls, passes `promtool check metrics`, and a
// real Prometheus scraping the port answers a query for grpc_server_handled_total with them.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { ChangeKind } from "../../gen/session/v1/session_service_pb";
import {
  connectClient,
  connectStatsWatch,
  connectWatch,
  grpcClient,
  grpcStatsWatch,
  grpcWatch,
  type SessionClient,
} from "../support/clients";
import { expectCallError } from "../support/expect";
import { startTestServer, type TestServer } from "../support/server";
import { run } from "../support/tools";

const SERVICE = "session.v1.SessionService";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/** The value of the one sample named `name` whose labels include `labels` (undefined: none). */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

async function scrape(port: number): Promise<{ status: number; contentType: string | null; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  return { status: res.status, contentType: res.headers.get("content-type"), body: await res.text() };
}

describe("Prometheus metrics on METRICS_PORT", () => {
  let server: TestServer;
  let grpc: SessionClient;
  let connect: SessionClient;

  beforeAll(async () => {
    // Installs promtool and prometheus when missing (quiet when present).
    const tools = await run("bash", ["scripts/prometheus.sh"], { timeoutMs: 300_000 });
    if (tools.code !== 0) throw new Error(`scripts/prometheus.sh failed: ${tools.stderr}`);
    server = await startTestServer("sqlite", { METRICS_PORT: "0" });
    grpc = grpcClient(server.grpcPort);
    connect = connectClient(server.httpPort);
    // The calls the figures must show: on each port, two creates answered OK and one INVALID_ARGUMENT.
    for (const client of [grpc, connect]) {
      await client.createSession({});
      await client.createSession({});
      await expectCallError(client.createSession({ session: { id: "has space" } }), Code.InvalidArgument, "session.id");
    }
  }, 300_000);

  afterAll(async () => {
    grpc?.close();
    connect?.close();
    await server?.close();
    await server?.cleanup();
  });

  it("is off unless METRICS_PORT is set, and serves only GET /metrics", async () => {
    const plain = await startTestServer("sqlite");
    try {
      expect(plain.metricsPort).toBeUndefined();
    } finally {
      await plain.close();
      await plain.cleanup();
    }
    expect(server.metricsPort).toEqual(expect.any(Number));
    expect((await fetch(`http://127.0.0.1:${server.metricsPort}/other`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`, { method: "POST" })).status).toBe(405);
  });

  it("counts the calls of both ports under the go-grpc-prometheus names", async () => {
    const res = await scrape(server.metricsPort!);
    expect(res.status).toBe(200);
    expect(res.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const samples = parseExposition(res.body);
    const create = { grpc_type: "unary", grpc_service: SERVICE, grpc_method: "CreateSession" };
    expect(valueOf(samples, "grpc_server_started_total", create)).toBe(6);
    expect(valueOf(samples, "grpc_server_handled_total", { ...create, grpc_code: "OK" })).toBe(4);
    expect(valueOf(samples, "grpc_server_handled_total", { ...create, grpc_code: "INVALID_ARGUMENT" })).toBe(2);
    expect(valueOf(samples, "grpc_server_handling_seconds_count", create)).toBe(6);
    expect(valueOf(samples, "grpc_server_handling_seconds_bucket", { ...create, le: "+Inf" })).toBe(6);
    // Every method has its series from the start; none was called but CreateSession.
    expect(
      valueOf(samples, "grpc_server_started_total", { grpc_type: "server_stream", grpc_service: SERVICE, grpc_method: "WatchSessions" }),
    ).toBe(0);
    // The store's creates, timed: 4 written (the invalid ones never reached the store).
    expect(valueOf(samples, "session_service_store_call_seconds_count", { operation: "create", outcome: "ok" })).toBe(4);
    expect(valueOf(samples, "session_service_sessions_active")).toBe(4);
    expect(valueOf(samples, "session_service_build_info", { store: "sqlite" })).toBe(1);
    expect(valueOf(samples, "session_service_expiry_passes_total", { result: "ok" })).toBeGreaterThanOrEqual(1);
    expect(valueOf(samples, "session_service_expiry_sessions_ended_total")).toBe(0);
    expect(valueOf(samples, "process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(valueOf(samples, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
  });

  it("passes promtool check metrics", async () => {
    const { body } = await scrape(server.metricsPort!);
    const check = await run("promtool", ["check", "metrics"], { input: body, timeoutMs: 20_000 });
    expect({ code: check.code, problems: check.stdout + check.stderr }).toEqual({ code: 0, problems: "" });
  });

  it("is scraped by a real Prometheus, which answers grpc_server_handled_total with the calls made", async () => {
    const dir = mkdtempSync(join(tmpdir(), "session-prometheus-"));
    const webPort = await freePort();
    writeFileSync(
      join(dir, "prometheus.yml"),
      [
        "global:",
        "  scrape_interval: 1s",
        "scrape_configs:",
        "  - job_name: session-service",
        "    static_configs:",
        `      - targets: ["127.0.0.1:${server.metricsPort}"]`,
        "",
      ].join("\n"),
    );
    let prometheus: ChildProcess | undefined;
    let log = "";
    try {
      prometheus = spawn(
        "prometheus",
        [
          `--config.file=${join(dir, "prometheus.yml")}`,
          `--storage.tsdb.path=${join(dir, "data")}`,
          `--web.listen-address=127.0.0.1:${webPort}`,
          "--log.level=warn",
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      prometheus.stdout!.on("data", (d: Buffer) => (log += d.toString()));
      prometheus.stderr!.on("data", (d: Buffer) => (log += d.toString()));
      const exited = new Promise<never>((_, reject) =>
        prometheus!.once("exit", (code) => reject(new Error(`prometheus exited (${code}): ${log}`))),
      );
      // Poll the query API until the scraped figures are there (Prometheus starts, then scrapes every 1 s).
      const query = `http://127.0.0.1:${webPort}/api/v1/query?query=grpc_server_handled_total`;
      const deadline = Date.now() + 30_000;
      let series: Array<{ metric: Record<string, string>; value: [number, string] }> = [];
      const byCode = (code: string): string | undefined =>
        series.find((s) => s.metric.grpc_method === "CreateSession" && s.metric.grpc_code === code && s.metric.job === "session-service")
          ?.value[1];
      while (Date.now() < deadline) {
        const answer = await Promise.race([
          exited,
          fetch(query).then(
            async (r) => (r.ok ? ((await r.json()) as { data: { result: typeof series } }).data.result : []),
            () => [], // not listening yet
          ),
        ]);
        series = answer;
        if (byCode("OK") !== undefined) break;
        await Promise.race([exited, new Promise((r) => setTimeout(r, 200))]);
      }
      expect({ ok: byCode("OK"), invalid: byCode("INVALID_ARGUMENT") }).toEqual({ ok: "4", invalid: "2" });
    } finally {
      if (prometheus && prometheus.exitCode === null) {
        const gone = new Promise((r) => prometheus!.once("exit", r));
        prometheus.kill("SIGTERM");
        await gone;
      }
      rmSync(dir, { recursive: true, force: true });
    }
  }, 45_000);

  it("shows open watchers (both ports), the feed's head and the delivery lag of a change", async () => {
    const watches = [
      grpcWatch(server.grpcPort, { heartbeatInterval: { seconds: 1n } }),
      connectWatch(server.httpPort, { heartbeatInterval: { seconds: 1n } }),
    ];
    const streams = watches.map((w) => w.messages[Symbol.asyncIterator]());
    // The first heartbeat says a watch is open and caught up.
    for (const messages of streams) expect((await messages.next()).value?.event.case).toBe("progress");
    const created = (await grpc.createSession({})).session!;
    for (const messages of streams) {
      let change;
      do change = (await messages.next()).value;
      while (change?.event.case !== "change");
      expect(change.event.value.kind).toBe(ChangeKind.CREATED);
    }
    const open = parseExposition((await scrape(server.metricsPort!)).body);
    expect(valueOf(open, "session_service_watchers_open")).toBe(2);
    expect(valueOf(open, "session_service_feed_head_revision")).toBeGreaterThanOrEqual(Number(created.revision));
    // The created session is in the feed's buffer, counted by its JSON size plus the overhead.
    expect(valueOf(open, "session_service_feed_buffer_changes")).toBeGreaterThanOrEqual(1);
    expect(valueOf(open, "session_service_feed_buffer_bytes")).toBeGreaterThan(256);
    expect(valueOf(open, "session_service_watch_delivery_lag_seconds_count")).toBe(2);
    expect(valueOf(open, "grpc_server_started_total", { grpc_method: "WatchSessions" })).toBe(2);
    for (const w of watches) w.cancel();
    for (const messages of streams) await messages.next().catch(() => undefined);
    // The cancelled streams end as CANCELLED on both ports, and their watchers are gone.
    const ended = (samples: Sample[]): number | undefined =>
      valueOf(samples, "grpc_server_handled_total", { grpc_method: "WatchSessions", grpc_code: "CANCELLED" });
    const deadline = Date.now() + 5000;
    let closed = open;
    while ((ended(closed) !== 2 || valueOf(closed, "session_service_watchers_open") !== 0) && Date.now() < deadline) {
      await new Promise((r) => setImmediate(r));
      closed = parseExposition((await scrape(server.metricsPort!)).body);
    }
    expect(ended(closed)).toBe(2);
    expect(valueOf(closed, "session_service_watchers_open")).toBe(0);
  });

  it("shows open stats streams, and one feed watcher per distinct stats request", async () => {
    const streams = [grpcStatsWatch(server.grpcPort, {}), connectStatsWatch(server.httpPort, {})];
    const its = streams.map((w) => w.messages[Symbol.asyncIterator]());
    for (const messages of its) expect((await messages.next()).value?.event.case).toBe("stats");
    const open = parseExposition((await scrape(server.metricsPort!)).body);
    expect(valueOf(open, "session_service_stats_watchers_open")).toBe(2);
    // Equal requests share one computation: one watcher of the feed.
    expect(valueOf(open, "session_service_watchers_open")).toBe(1);
    for (const w of streams) w.cancel();
    for (const messages of its) await messages.next().catch(() => undefined);
    const deadline = Date.now() + 5000;
    let closed = open;
    while (
      (valueOf(closed, "session_service_stats_watchers_open") !== 0 || valueOf(closed, "session_service_watchers_open") !== 0) &&
      Date.now() < deadline
    ) {
      await new Promise((r) => setImmediate(r));
      closed = parseExposition((await scrape(server.metricsPort!)).body);
    }
    expect(valueOf(closed, "session_service_stats_watchers_open")).toBe(0);
    expect(valueOf(closed, "session_service_watchers_open")).toBe(0);
  });
});
