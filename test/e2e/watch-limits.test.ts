// WatchSessions under hostile clients (issue 10, defect 3 and "watch memory is bounded"):
// send_initial watchers that never read, on both ports, against the real service process.
// - gRPC: raw node:http2 streams that are never read (paused), so HTTP/2 flow control pushes
//   back on the server once the stream's 64 KB window is full (a grpc-js client would read).
// - Connect: HTTP/1.1 requests from clients that stop reading, with a small receive buffer so
//   that TCP pushes back (test/support/stalled-connect.py).
// While they are stalled the service keeps answering health and GetSession, its RSS grows by a
// bounded amount per watcher, one watcher over MAX_WATCHERS is refused with RESOURCE_EXHAUSTED
// and RetryInfo, and after WATCH_STALL_TIMEOUT every stalled watcher is gone (its place is free)
// and, when its client reads again, ends with RESOURCE_EXHAUSTED (WATCHER_TOO_SLOW). A stalled
// live watcher's status names its last revision, the resume point.
//
// Sizes are scaled down for the suite (STALLED_GRPC, STALLED_CONNECT, STALLED_SESSIONS); the
// issue's full size is STALLED_GRPC=2000 STALLED_SESSIONS=2000. Figures are printed.

import { spawn } from "node:child_process";
import * as http2 from "node:http2";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema, RetryInfoSchema, type ErrorInfo, type RetryInfo } from "../../gen/google/rpc/error_details_pb";
import { StatusSchema } from "../../gen/google/rpc/status_pb";
import {
  WatchSessionsRequestSchema,
  WatchSessionsResponseSchema,
  type WatchSessionsResponse,
} from "../../gen/session/v1/session_service_pb";
import { grpcFrame, healthClient, rssMb } from "../support/attack";
import { grpcClient, grpcWatch, type SessionClient } from "../support/clients";
import { startProcess, type ServiceProcess } from "../support/process";

const GRPC_WATCHERS = Number(process.env.STALLED_GRPC ?? 500);
// Few: over HTTP/1.1 the kernel's socket buffers take up to about 4 MB of each stalled stream
// before the service sees any backpressure (docs/watch.md, "Memory per watcher").
const CONNECT_WATCHERS = Number(process.env.STALLED_CONNECT ?? 20);
const SESSIONS = Number(process.env.STALLED_SESSIONS ?? 2000);
const STALL_MS = Number(process.env.STALL_MS ?? 6000);
/** Streams per HTTP/2 connection of the stalled gRPC clients. */
const STREAMS_PER_CONNECTION = 50;
const WATCH_PATH = "/session.v1.SessionService/WatchSessions";
// Generous bounds (shared 2-core CI); the measured figures are printed.
const MAX_KB_PER_WATCHER = 600;
const MAX_PROBE_MS = 1000;

interface Ended {
  /** gRPC status code (Connect: the code name mapped to its number). */
  code: number;
  info?: ErrorInfo;
  retry?: RetryInfo;
  messages: WatchSessionsResponse[];
}

/** Splits a body of length-prefixed frames (gRPC and Connect envelopes alike). */
function frames(body: Buffer): Array<{ flags: number; data: Buffer }> {
  const out = [];
  for (let at = 0; at + 5 <= body.length;) {
    const len = body.readUInt32BE(at + 1);
    out.push({ flags: body[at]!, data: body.subarray(at + 5, at + 5 + len) });
    at += 5 + len;
  }
  return out;
}

function details(bin: Buffer | undefined): { info?: ErrorInfo; retry?: RetryInfo } {
  if (!bin) return {};
  const status = fromBinary(StatusSchema, bin);
  let info: ErrorInfo | undefined;
  let retry: RetryInfo | undefined;
  for (const any of status.details) {
    info ??= anyUnpack(any, ErrorInfoSchema);
    retry ??= anyUnpack(any, RetryInfoSchema);
  }
  return { info, retry };
}

/** A raw gRPC WatchSessions stream that is not read until `result()` is called. */
function stalledGrpc(session: http2.ClientHttp2Session, req: Parameters<typeof create<typeof WatchSessionsRequestSchema>>[1]) {
  const stream = session.request({ ":method": "POST", ":path": WATCH_PATH, "content-type": "application/grpc", te: "trailers" });
  stream.on("error", () => undefined);
  stream.end(grpcFrame(toBinary(WatchSessionsRequestSchema, create(WatchSessionsRequestSchema, req))));
  const responded = new Promise<void>((resolve) => stream.once("response", () => resolve()));
  let trailers: http2.IncomingHttpHeaders = {};
  stream.once("trailers", (t) => (trailers = t));
  stream.once("response", (h) => {
    if (h["grpc-status"] !== undefined) trailers = h; // trailers-only answer
  });
  // Listened for from the start: a stream the server resets closes before the client reads.
  const closed = new Promise<void>((resolve) => stream.once("close", () => resolve()));
  return {
    responded,
    /** Reads the rest of the stream (the client "wakes up") and returns how it ended. */
    result: (): Promise<Ended> =>
      new Promise((resolve) => {
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        void closed.then(() => {
          const bin = trailers["grpc-status-details-bin"];
          resolve({
            code: Number(trailers["grpc-status"] ?? -1),
            ...details(typeof bin === "string" ? Buffer.from(bin, "base64") : undefined),
            messages: frames(Buffer.concat(chunks)).map((f) => fromBinary(WatchSessionsResponseSchema, f.data)),
          });
        });
        stream.resume();
      }),
  };
}

const CONNECT_CODES: Record<string, number> = { resource_exhausted: 8, unavailable: 14, canceled: 1 };

/**
 * A Connect (HTTP/1.1, JSON) WatchSessions request from a client that stops reading once the
 * answer has begun, with a small receive buffer so that TCP pushes back on the server
 * (test/support/stalled-connect.py says why it is a Python process).
 */
function stalledConnect(port: number, json: string) {
  const child = spawn("python3", [join(__dirname, "..", "support", "stalled-connect.py"), String(port), WATCH_PATH, json], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  child.stdin.on("error", () => undefined);
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const line = await lines.next();
    if (line.done) throw new Error("the stalled Connect client exited early");
    return line.value;
  };
  const responded = next().then((line) => expect(line).toBe("responded"));
  return {
    responded,
    destroy: () => child.kill(),
    /** Reads the rest of the stream (the client "wakes up") and returns how it ended. */
    result: async (): Promise<Ended> => {
      child.stdin.write("read\n");
      const { end } = JSON.parse(await next()) as {
        end: { error?: { code: string; details?: Array<{ type: string; value: string }> } } | null;
      };
      const infoDetail = end?.error?.details?.find((d) => d.type === "google.rpc.ErrorInfo");
      return {
        code: end?.error ? (CONNECT_CODES[end.error.code] ?? -2) : end ? 0 : -1,
        info: infoDetail ? fromBinary(ErrorInfoSchema, Buffer.from(infoDetail.value, "base64")) : undefined,
        messages: [],
      };
    },
  };
}

/** The service's session_service_watchers_open gauge. */
async function watchersOpen(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("session_service_watchers_open "));
  if (line === undefined) throw new Error("no session_service_watchers_open in /metrics");
  return Number(line.split(" ")[1]);
}

const T0 = Date.now();
const step = (m: string) => process.env.WATCH_LIMITS_DEBUG && process.stderr.write(`[${Date.now() - T0} ms] ${m}\n`);

async function timed<T>(call: () => Promise<T>): Promise<number> {
  const start = performance.now();
  await call();
  return performance.now() - start;
}

describe("WatchSessions with watchers that do not read", () => {
  let svc: ServiceProcess;
  let client: SessionClient;
  let health: ReturnType<typeof healthClient>;
  const sessions: http2.ClientHttp2Session[] = [];
  const connections: Array<{ destroy(): void }> = [];

  beforeAll(async () => {
    svc = await startProcess({
      DATA_DIR: mkdtempSync(join(tmpdir(), "watch-limits-")),
      LOG_LEVEL: "info",
      WATCH_STALL_TIMEOUT: `${STALL_MS}ms`,
      METRICS_PORT: "0",
      // Exactly the stalled ones plus the live one: one more is over the limit.
      MAX_WATCHERS: String(GRPC_WATCHERS + CONNECT_WATCHERS + 1),
    });
    client = grpcClient(svc.grpcPort);
    health = healthClient(svc.grpcPort);
  });

  afterAll(async () => {
    sessions.forEach((s) => s.destroy());
    connections.forEach((c) => c.destroy());
    client?.close();
    health?.close();
    await svc?.stop();
  });

  it("stay bounded in memory, leave the service responsive, and end with RESOURCE_EXHAUSTED after the stall timeout", async () => {
    // Sessions of about 3.5 KB as JSON: a snapshot (7 MB) bigger than what the kernel's socket
    // buffers of a stalled Connect client take (its server's send buffer, 4 MB, and 16 KB).
    const pad = "p".repeat(2500);
    for (let i = 0; i < SESSIONS; i += 200) {
      await Promise.all(
        Array.from({ length: Math.min(200, SESSIONS - i) }, (_, j) =>
          client.createSession({ session: { profile: { id: `p${(i + j) % 50}` }, properties: { pad, n: i + j } as never } }),
        ),
      );
    }
    step("created");
    const probe = (await client.createSession({})).session!;
    // Warm up both ports' code paths, then the baseline.
    await timed(() => health.check(""));
    const baseline = rssMb(svc.child.pid!);

    // A live watcher that stalls: after_revision = now, then changes bigger than its window.
    const live = http2.connect(`http://127.0.0.1:${svc.grpcPort}`);
    live.on("error", () => undefined);
    sessions.push(live);
    const liveStream = stalledGrpc(live, { afterRevision: probe.revision });

    // The stalled send_initial watchers.
    const grpcStreams = [];
    for (let i = 0; i < GRPC_WATCHERS; i += STREAMS_PER_CONNECTION) {
      const s = http2.connect(`http://127.0.0.1:${svc.grpcPort}`);
      s.on("error", () => undefined);
      // The connection's window must not be what stalls the streams: each has its own 64 KB.
      s.once("connect", () => s.setLocalWindowSize(64 * 1024 * 1024));
      sessions.push(s);
      for (let j = 0; j < STREAMS_PER_CONNECTION && i + j < GRPC_WATCHERS; j++) grpcStreams.push(stalledGrpc(s, { sendInitial: true }));
    }
    const connectStreams = Array.from({ length: CONNECT_WATCHERS }, () => stalledConnect(svc.httpPort, '{"sendInitial":true}'));
    connections.push(...connectStreams);
    const opened = performance.now();
    await Promise.all([...grpcStreams, ...connectStreams].map((w) => w.responded));
    step("opened");
    const openMs = performance.now() - opened;
    // Make the live watcher fall behind: 60 updates of ~3 KB, more than its 64 KB window.
    const updates: bigint[] = [];
    for (let i = 0; i < 60; i++)
      updates.push(
        (await client.updateSession({ session: { id: probe.id, properties: { pad, i } as never }, updateMask: { paths: ["properties"] } }))
          .session!.revision,
      );

    step("updated");
    // One watcher over MAX_WATCHERS: RESOURCE_EXHAUSTED with RetryInfo, at once.
    const overStream = stalledGrpc(sessions[0]!, { sendInitial: true });
    const over = await Promise.race([
      overStream.result(),
      new Promise<Ended>((r) => setTimeout(() => r({ code: -9, messages: [] }), 5000)),
    ]);
    expect(over.code).toBe(8);
    expect(over.info?.reason).toBe("TOO_MANY_WATCHERS");
    expect(over.retry?.retryDelay).toBeDefined();

    step("over-limit checked");
    // While they are stalled: memory and responsiveness.
    await new Promise((r) => setTimeout(r, 500));
    const stalledRss = rssMb(svc.child.pid!);
    const watchers = GRPC_WATCHERS + CONNECT_WATCHERS + 1;
    const kbPerWatcher = ((stalledRss - baseline) * 1024) / watchers;
    const latencies: number[] = [];
    for (let i = 0; i < 20; i++) {
      latencies.push(await timed(() => health.check("")));
      latencies.push(await timed(() => client.getSession({ id: probe.id })));
    }
    const worst = Math.max(...latencies);
    console.log(
      `stalled watchers: ${GRPC_WATCHERS} gRPC + ${CONNECT_WATCHERS} Connect + 1 live over ${SESSIONS} sessions, opened in ${openMs.toFixed(0)} ms; ` +
        `RSS ${baseline.toFixed(0)} -> ${stalledRss.toFixed(0)} MB (${kbPerWatcher.toFixed(0)} KB/watcher); health/GetSession worst ${worst.toFixed(1)} ms`,
    );
    expect(kbPerWatcher).toBeLessThan(MAX_KB_PER_WATCHER);
    expect(worst).toBeLessThan(MAX_PROBE_MS);

    step("probed");
    // After the stall timeout every stalled watcher is gone. A Connect watcher stalls only once
    // its socket's buffers are full, which on a loaded machine may take a while: the service's
    // own count of open watchers (METRICS_PORT) says when all are gone.
    const deadline = Date.now() + STALL_MS + 60_000;
    for (let open = await watchersOpen(svc.metricsPort!); open > 0; open = await watchersOpen(svc.metricsPort!)) {
      if (Date.now() > deadline) throw new Error(`${open} stalled watchers still open ${STALL_MS + 60_000} ms after the stall timeout`);
      await new Promise((r) => setTimeout(r, 250));
    }
    // Then a new one gets a place: admitted, it stays open (heartbeats); refused, it ends at once.
    const admitted = stalledGrpc(sessions[0]!, { filter: { ids: ["nobody"] }, heartbeatInterval: { seconds: 1n } });
    await admitted.responded;
    expect(await Promise.race([admitted.result(), new Promise<"open">((r) => setTimeout(() => r("open"), 1500))])).toBe("open");
    step("freed");
    const freedRss = rssMb(svc.child.pid!);

    // Read again: each stalled stream ends with RESOURCE_EXHAUSTED (WATCHER_TOO_SLOW).
    let endedG = 0;
    let endedC = 0;
    const progress = setInterval(
      () => step(`ended: gRPC ${endedG}/${grpcStreams.length}, Connect ${endedC}/${connectStreams.length}`),
      2000,
    );
    // Bounded: streams that do not end in time fail the test rather than hang it.
    let endsTimer: NodeJS.Timeout | undefined;
    const ends = await Promise.race([
      Promise.all([
        ...grpcStreams.map((w) => w.result().finally(() => endedG++)),
        ...connectStreams.map((w) => w.result().finally(() => endedC++)),
      ]),
      new Promise<never>((_, reject) => {
        endsTimer = setTimeout(() => {
          const ended = `gRPC ${endedG}/${grpcStreams.length}, Connect ${endedC}/${connectStreams.length}`;
          reject(new Error(`stalled streams still open 60 s after being read again: ended ${ended}`));
        }, 60_000);
      }),
    ]).finally(() => {
      clearInterval(progress);
      clearTimeout(endsTimer);
    });
    const codes = new Map<string, number>();
    for (const e of ends) codes.set(`${e.code}/${e.info?.reason}`, (codes.get(`${e.code}/${e.info?.reason}`) ?? 0) + 1);
    console.log(
      `after the stall timeout: RSS ${freedRss.toFixed(0)} MB; stalled streams ended with ${JSON.stringify(Object.fromEntries(codes))}`,
    );
    expect([...codes.keys()]).toEqual(["8/WATCHER_TOO_SLOW"]);

    step("ends read");
    // The live one names its last revision: the last change it was sent, a resume point.
    const liveEnd = await liveStream.result();
    expect(liveEnd.code).toBe(8);
    expect(liveEnd.info?.reason).toBe("WATCHER_TOO_SLOW");
    const changes = liveEnd.messages.filter((m) => m.event.case === "change");
    expect(changes.length).toBeGreaterThan(0);
    const lastSent = changes[changes.length - 1]!.event.value!.revision;
    expect(liveEnd.info?.metadata.last_revision).toBe(String(lastSent));
    // Resuming from it continues with the next change: no gap, no duplicate.
    const resumed = grpcWatch(svc.grpcPort, { afterRevision: lastSent, filter: { ids: [probe.id] } });
    const it = resumed.messages[Symbol.asyncIterator]();
    let first = (await it.next()).value as WatchSessionsResponse;
    while (first.event.case !== "change") first = (await it.next()).value as WatchSessionsResponse;
    expect(first.event.value.revision).toBe(updates.filter((r) => r > lastSent).reduce((a, b) => (a < b ? a : b)));
    resumed.cancel();
    await it.next().catch(() => undefined);
    // A hang guard, not a target: about 12 s on a quiet machine, over 120 s when other work shares
    // the 2 cores (500 stalled streams and a 7 MB snapshot each way).
  }, 240_000);
});
