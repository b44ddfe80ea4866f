// Cancellation and admission control, against the service as a process (dist/src/main.js) on
// the embedded store, attacked from this process:
// - rapid-reset bursts (5,000 calls, each reset right after its request was sent) of
//   GetSessionStats, ListSessions and CreateSession on the gRPC port, and the same with
//   HTTP/1.1 requests whose sockets are destroyed at once on the HTTP port: health answers
//   within 1 s of the burst's end, and every create either committed whole or not at all;
// - MAX_CONCURRENT_CALLS: over the limit a call fails at once with RESOURCE_EXHAUSTED and
//   RetryInfo on both ports, health still answers, and a cancelled call frees its slot at once.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb";
import { StatusSchema } from "../../gen/google/rpc/status_pb";
import {
  CreateSessionRequestSchema,
  GetSessionRequestSchema,
  GetSessionStatsRequestSchema,
  ListSessionsRequestSchema,
  SessionService,
  StatsGroupBy,
} from "../../gen/session/v1/session_service_pb";
import type { Session } from "../../gen/session/v1/session_pb";
import { grpcDefinitions } from "../../src/rpc/grpc-codec";
import { destroyedRequestBurst, grpcFrame, healthClient, resetBurst, rssMb } from "../support/attack";
import { grpcClient, type SessionClient } from "../support/clients";
import { startProcess, type ServiceProcess } from "../support/process";
import { eventually } from "../support/tools";

jest.setTimeout(60_000);

const SERVICE = "/session.v1.SessionService";
const BURST = 5000;
/** The bound: health answers within 1 s of a burst's end. */
const HEALTH_AFTER_BURST_MS = 1000;

const statsBody = grpcFrame(
  toBinary(GetSessionStatsRequestSchema, create(GetSessionStatsRequestSchema, { groupBy: StatsGroupBy.OS_NAME })),
);
const listBody = grpcFrame(toBinary(ListSessionsRequestSchema, create(ListSessionsRequestSchema, { pageSize: 1000 })));
const createBody = (id: string, i: number) =>
  grpcFrame(
    toBinary(
      CreateSessionRequestSchema,
      create(CreateSessionRequestSchema, {
        session: { id, profile: { id: `burst-profile-${i % 50}` }, properties: { i, tag: "burst" } },
        userAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        pageUrl: `https://shop.example/p/${i}?utm_source=burst`,
      }),
    ),
  );

/** A session written by a burst's create is complete: every field the create sent, and the server's. */
function expectComplete(s: Session, i: number): void {
  expect(s.properties).toEqual({ i, tag: "burst" });
  expect(s.profile?.id).toBe(`burst-profile-${i % 50}`);
  expect(s.utm?.source).toBe("burst");
  expect(s.os?.name).toBe("Linux");
  expect(s.metadata?.time?.insert).toBeDefined();
  expect(s.metadata?.status).toBe("active");
  expect(s.revision).toBeGreaterThan(0n);
}

/** Every session whose id starts with `prefix`, by paging ListSessions. */
async function listAll(client: SessionClient, prefix: string): Promise<Session[]> {
  const out: Session[] = [];
  let pageToken = "";
  do {
    const page = await client.listSessions({ pageSize: 1000, pageToken });
    out.push(...page.sessions.filter((s) => s.id.startsWith(prefix)));
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

/** Milliseconds from `endedAt` until a health Check has answered (with a status, not an error). */
async function timeToHealth(health: ReturnType<typeof healthClient>, endedAt: number): Promise<number> {
  expect(await health.check("")).toBeGreaterThan(0);
  return performance.now() - endedAt;
}

describe("rapid-reset bursts", () => {
  let dataDir: string;
  let svc: ServiceProcess;
  let client: SessionClient;
  let health: ReturnType<typeof healthClient>;
  const figures: string[] = [];

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "session-shed-"));
    svc = await startProcess({ DATA_DIR: dataDir });
    client = grpcClient(svc.grpcPort);
    health = healthClient(svc.grpcPort);
    // Sessions enough that every statistics or list call has real work to do.
    for (let b = 0; b < 20; b++) {
      await Promise.all(
        Array.from({ length: 100 }, (_, k) =>
          client.createSession({
            session: { profile: { id: `seed-${k % 20}` }, properties: { k } },
            userAgent: k % 2 ? "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)" : "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
          }),
        ),
      );
    }
    expect(await health.check("")).toBeGreaterThan(0);
  });

  afterAll(async () => {
    console.log(`load-shedding figures:\n${figures.join("\n")}`);
    health?.close();
    client?.close();
    await svc?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it.each([
    ["GetSessionStats", () => statsBody],
    ["ListSessions", () => listBody],
  ])("gRPC: 5,000 reset %s calls leave the service answering health within 1 s", async (method, body) => {
    const rssBefore = rssMb(svc.child.pid!);
    const burst = await resetBurst(svc.grpcPort, BURST, 4, () => ({ path: `${SERVICE}/${method}`, body: body() }));
    const ms = await timeToHealth(health, burst.endedAt);
    figures.push(
      `gRPC ${method}: ${burst.sent} resets on ${burst.connections} connections, health after ${ms.toFixed(0)} ms, RSS ${rssBefore.toFixed(0)} -> ${rssMb(svc.child.pid!).toFixed(0)} MB`,
    );
    expect(ms).toBeLessThan(HEALTH_AFTER_BURST_MS);
    // And the service works: a real call answers.
    expect((await client.getSessionStats({})).total).toBeGreaterThanOrEqual(2000n);
  });

  it("gRPC: 5,000 reset creates either commit whole or not at all", async () => {
    const burst = await resetBurst(svc.grpcPort, BURST, 4, (i) => ({ path: `${SERVICE}/CreateSession`, body: createBody(`rr-g-${i}`, i) }));
    const ms = await timeToHealth(health, burst.endedAt);
    expect(ms).toBeLessThan(HEALTH_AFTER_BURST_MS);
    // Creates still under way when the burst ended settle; then every stored one is whole.
    const stored = await listAll(client, "rr-g-");
    for (const s of stored) expectComplete(s, Number(s.id.slice("rr-g-".length)));
    for (const s of stored.slice(0, 100)) expect((await client.getSession({ id: s.id })).session).toEqual(s);
    figures.push(`gRPC CreateSession: ${burst.sent} resets, health after ${ms.toFixed(0)} ms, ${stored.length} committed (all complete)`);
  });

  it.each([
    ["GetSessionStats", () => JSON.stringify({ groupBy: "STATS_GROUP_BY_OS_NAME" })],
    ["ListSessions", () => JSON.stringify({ pageSize: 1000 })],
  ])("Connect: 5,000 %s requests on sockets destroyed at once leave health answering within 1 s", async (method, json) => {
    const rssBefore = rssMb(svc.child.pid!);
    const burst = await destroyedRequestBurst(svc.httpPort, BURST, 100, () => ({ path: `${SERVICE}/${method}`, json: json() }));
    const ms = await timeToHealth(health, burst.endedAt);
    figures.push(
      `Connect ${method}: ${BURST} destroyed requests, health after ${ms.toFixed(0)} ms, RSS ${rssBefore.toFixed(0)} -> ${rssMb(svc.child.pid!).toFixed(0)} MB`,
    );
    expect(ms).toBeLessThan(HEALTH_AFTER_BURST_MS);
    expect((await client.getSessionStats({})).total).toBeGreaterThanOrEqual(2000n);
  });

  it("Connect: 5,000 creates on destroyed sockets either commit whole or not at all", async () => {
    const burst = await destroyedRequestBurst(svc.httpPort, BURST, 100, (i) => ({
      path: `${SERVICE}/CreateSession`,
      json: JSON.stringify({
        session: { id: `rr-c-${i}`, profile: { id: `burst-profile-${i % 50}` }, properties: { i, tag: "burst" } },
        userAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        pageUrl: `https://shop.example/p/${i}?utm_source=burst`,
      }),
    }));
    const ms = await timeToHealth(health, burst.endedAt);
    expect(ms).toBeLessThan(HEALTH_AFTER_BURST_MS);
    const stored = await listAll(client, "rr-c-");
    for (const s of stored) expectComplete(s, Number(s.id.slice("rr-c-".length)));
    figures.push(
      `Connect CreateSession: ${BURST} destroyed requests, health after ${ms.toFixed(0)} ms, ${stored.length} committed (all complete)`,
    );
  });
});

/** The google.rpc.Status details of a failed grpc-js call. */
function grpcDetails(err: grpc.ServiceError): { reason?: string; retryMs?: number } {
  const bin = err.metadata.get("grpc-status-details-bin")[0];
  if (!(bin instanceof Buffer)) return {};
  const status = fromBinary(StatusSchema, bin);
  let reason: string | undefined;
  let retryMs: number | undefined;
  for (const any of status.details) {
    reason ??= anyUnpack(any, ErrorInfoSchema)?.reason;
    const retry = anyUnpack(any, RetryInfoSchema);
    if (retry?.retryDelay) retryMs = Number(retry.retryDelay.seconds) * 1000 + retry.retryDelay.nanos / 1e6;
  }
  return { reason, retryMs };
}

describe("MAX_CONCURRENT_CALLS", () => {
  const LIMIT = 4;
  let dataDir: string;
  let svc: ServiceProcess;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "session-admit-"));
    svc = await startProcess({ DATA_DIR: dataDir, MAX_CONCURRENT_CALLS: String(LIMIT), STORE_TIMEOUT: "30s" });
  });
  afterAll(async () => {
    await svc?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("refuses calls over the limit at once with RESOURCE_EXHAUSTED and RetryInfo, keeps health answering, and frees a cancelled call's slot at once", async () => {
    const defs = grpcDefinitions(SessionService);
    const raw = new grpc.Client(`127.0.0.1:${svc.grpcPort}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
    const client = grpcClient(svc.grpcPort);
    const connect = createClient(
      SessionService,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${svc.httpPort}`, httpVersion: "1.1" }),
    );
    const health = healthClient(svc.grpcPort);
    await client.createSession({ session: { id: "present" } });

    // Another process holds the embedded store's write lock: creates wait for it, holding slots.
    const locker = new Database(join(dataDir, "sessions.db"));
    locker.exec("BEGIN IMMEDIATE");
    const blocked: { call: grpc.ClientUnaryCall; done: Promise<grpc.ServiceError | null> }[] = [];
    try {
      for (let i = 0; i < LIMIT; i++) {
        let call!: grpc.ClientUnaryCall;
        const done = new Promise<grpc.ServiceError | null>((resolve) => {
          call = raw.makeUnaryRequest(
            defs.createSession!.path,
            defs.createSession!.requestSerialize,
            defs.createSession!.responseDeserialize,
            create(CreateSessionRequestSchema, { session: { id: `held-${i}`, properties: { i } } }),
            { deadline: Date.now() + 60_000 },
            (err) => resolve(err),
          );
        });
        blocked.push({ call, done });
      }

      // Every slot taken: a read that would succeed fails fast instead, on both ports.
      let refused: grpc.ServiceError | undefined;
      await eventually(
        async () => {
          try {
            await new Promise((resolve, reject) =>
              raw.makeUnaryRequest(
                defs.getSession!.path,
                defs.getSession!.requestSerialize,
                defs.getSession!.responseDeserialize,
                create(GetSessionRequestSchema, { id: "present" }),
                (err, res) => (err ? reject(err) : resolve(res)),
              ),
            );
            return false;
          } catch (err) {
            refused = err as grpc.ServiceError;
            return true;
          }
        },
        10_000,
        "a call refused for lack of a slot",
      );
      expect(refused!.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(grpcDetails(refused!)).toEqual({ reason: "TOO_MANY_CALLS", retryMs: 100 });
      const t0 = performance.now();
      const err = await connect.getSession({ id: "present" }).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code).toBe(Code.ResourceExhausted);
      expect(err?.findDetails(ErrorInfoSchema)[0]?.reason).toBe("TOO_MANY_CALLS");
      expect(err?.findDetails(RetryInfoSchema)).toHaveLength(1);
      expect(performance.now() - t0).toBeLessThan(2000); // fails fast, not at a deadline
      // Health is not admission-controlled.
      expect(await health.check("")).toBeGreaterThan(0);

      // One held create is cancelled by its client: its slot is free while the lock still holds.
      blocked[0]!.call.cancel();
      expect((await blocked[0]!.done)?.code).toBe(grpc.status.CANCELLED);
      await eventually(
        async () => {
          try {
            return (await client.getSession({ id: "present" })).session?.id === "present";
          } catch {
            return false;
          }
        },
        5_000,
        "a call admitted in the cancelled call's slot",
      );
    } finally {
      locker.exec("ROLLBACK");
      locker.close();
    }
    // The others complete once the lock is released; the cancelled one committed whole or not at all.
    for (const b of blocked.slice(1)) expect(await b.done).toBeNull();
    const cancelled = await client.getSession({ id: "held-0" }).then(
      (r) => r.session,
      () => undefined,
    );
    if (cancelled) expect(cancelled.properties).toEqual({ i: 0 });
    health.close();
    client.close();
    raw.close();
  });
});
