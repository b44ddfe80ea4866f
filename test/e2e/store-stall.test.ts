// Issue 10, defect 5: one slow or stalled store call must not stop the service, and health must
// tell the truth. On the embedded store, with a real server and real clients:
// - statistics over 300,000 stored sessions run while health Check and GetSession keep answering
//   (the store's work is off the event loop);
// - another connection holds the SQLite write lock (as another process would): health goes
//   NOT_SERVING while Check itself keeps answering at once, reads go on, a write fails within its
//   deadline without being applied, and everything is SERVING and writable again afterwards;
// - the disk is full: writes fail with UNAVAILABLE, nothing acknowledged is lost, health goes
//   NOT_SERVING and comes back once space is freed.

import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import Database from "better-sqlite3";
import { service as healthService } from "grpc-health-check";
import { StatsGroupBy } from "../../gen/session/v1/session_service_pb";
import { SqliteSessionStore } from "../../src/store/sqlite";
import { CallError, grpcClient, type SessionClient } from "../support/clients";
import { startTestServer, type TestServer } from "../support/server";
import { eventually } from "../support/tools";

const BULK_SESSIONS = 300_000;
const BULK_PROFILE = "p-bulk";
/** Generous bound on one health Check or GetSession while the store is busy (the goal is 100 ms). */
const RESPONSIVE_MS = 300;

interface HealthClient {
  /** The serving status as a name ("SERVING", "NOT_SERVING"). */
  check(service?: string): Promise<string>;
  /** Opens a Watch: the statuses it has received so far, and the function that ends it. */
  watch(service?: string): { statuses: string[]; cancel(): void };
  close(): void;
}

function healthClient(port: number): HealthClient {
  const Ctor = grpc.makeGenericClientConstructor(healthService as unknown as grpc.ServiceDefinition, "Health");
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Check(req: { service: string }, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: { status: string }) => void): void;
    Watch(req: { service: string }): grpc.ClientReadableStream<{ status: string }>;
  };
  return {
    check: (service = "") =>
      new Promise((resolve, reject) =>
        client.Check({ service }, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(String(res.status)))),
      ),
    watch: (service = "") => {
      const statuses: string[] = [];
      const stream = client.Watch({ service });
      stream.on("data", (res: { status: string }) => statuses.push(String(res.status)));
      stream.on("error", () => undefined); // the cancellation at the end
      return { statuses, cancel: () => stream.cancel() };
    },
    close: () => client.close(),
  };
}

/** Runs `fn` and returns its duration in ms. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/**
 * Fills the store's file with `count` small sessions of one profile in one SQL statement
 * (seconds, not the minutes the API would take). They count in statistics (grouped by os.name
 * over 7 values); they are "ended" so that the expiry pass leaves them alone, and the test reads
 * back only sessions it created through the API. Rows written behind the store's back are not in
 * its maintained counts, so the count tables are dropped, as in a file from before them: the
 * service fills them again when it opens the file.
 */
function bulkInsert(file: string, count: number): void {
  const db = new Database(file);
  try {
    db.pragma("synchronous = OFF");
    db.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
       INSERT INTO sessions (id, doc, revision, profile_id, status, channel, insert_ms, request_id, active_ms)
       SELECT 'bulk-' || i,
              json_object('id', 'bulk-' || i, 'os', json_object('name', 'os-' || (i % 7)),
                          'properties', json_object('pad', substr(hex(zeroblob(500)), 1, 1000))),
              1, '${BULK_PROFILE}', 'ended', 'web', 1700000000000 + i, NULL, 1700000000000 + i
       FROM n`,
    ).run(count);
    db.exec("DROP TABLE stats_totals; DROP TABLE stats_hourly;");
  } finally {
    db.close();
  }
}

describe("a slow or stalled embedded store stops nothing", () => {
  let dir: string;
  let server: TestServer;
  let client: SessionClient;
  let health: HealthClient;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "store-stall-"));
    // The schema first, then the bulk rows, then the service on that file.
    await SqliteSessionStore.open(dir).close();
    bulkInsert(join(dir, "sessions.db"), BULK_SESSIONS);
    server = await startTestServer("sqlite", { DATA_DIR: dir, HEALTH_PROBE_INTERVAL: "100ms", HEALTH_PROBE_TIMEOUT: "500ms" });
    client = grpcClient(server.grpcPort);
    health = healthClient(server.grpcPort);
    await client.createSession({ session: { id: "seed" } });
    // Starts the store's reader thread for short reads (threads start on demand), so the
    // measurement below is of a running service.
    await client.getSession({ id: "seed" });
    expect(await health.check()).toBe("SERVING");
  }, 60_000);

  afterAll(async () => {
    client?.close();
    health?.close();
    await server?.close();
    await server?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // Statistics of one profile read its sessions one by one (the maintained counts serve only
  // queries without a profile): the longest read the API can ask for.
  it("answers health and GetSession within bounds while statistics over 300,000 sessions run", async () => {
    const checks: number[] = [];
    const gets: number[] = [];
    let running = true;
    const statsStart = performance.now();
    const stats = client
      .getSessionStats({ filter: { profileId: BULK_PROFILE }, groupBy: StatsGroupBy.OS_NAME }, { timeoutMs: 60_000 })
      .finally(() => (running = false));
    while (running) {
      checks.push(await timed(async () => expect(await health.check("session.v1.SessionService")).toBe("SERVING")));
      gets.push(await timed(async () => expect((await client.getSession({ id: "seed" })).session?.id).toBe("seed")));
    }
    const result = await stats;
    const statsMs = performance.now() - statsStart;
    expect(Number(result.total)).toBe(BULK_SESSIONS);
    expect(result.groups.filter((g) => g.key?.startsWith("os-"))).toHaveLength(7);
    const worst = (xs: number[]) => Math.round(Math.max(...xs));
    console.log(
      `stats over the ${BULK_SESSIONS} sessions of one profile: ${Math.round(statsMs)} ms; during it ${checks.length} health checks (worst ${worst(checks)} ms) and ${gets.length} GetSession (worst ${worst(gets)} ms)`,
    );
    // The query was under way during the samples (on the event loop they could not interleave).
    expect(checks.length).toBeGreaterThanOrEqual(3);
    expect(worst(checks)).toBeLessThan(RESPONSIVE_MS);
    expect(worst(gets)).toBeLessThan(RESPONSIVE_MS);
  }, 60_000);

  it("counts the rows of the file it opened in its maintained counts", async () => {
    const all = await client.getSessionStats({ groupBy: StatsGroupBy.OS_NAME });
    expect(Number(all.total)).toBe(BULK_SESSIONS + 1);
    expect(all.groups.filter((g) => g.key?.startsWith("os-")).reduce((n, g) => n + Number(g.count), 0)).toBe(BULK_SESSIONS);
  });

  it("goes NOT_SERVING while another connection holds the write lock, keeps answering reads, and recovers", async () => {
    const watch = health.watch("session.v1.SessionService");
    await eventually(async () => watch.statuses.length > 0, 5000, "the first status of a health Watch", 20);
    const holder = new Database(join(dir, "sessions.db"));
    let held = true;
    const checks: number[] = [];
    let status = "";
    const check = async (): Promise<string> => {
      checks.push(await timed(async () => (status = await health.check())));
      return status;
    };
    try {
      holder.exec("BEGIN EXCLUSIVE");
      const lockedAt = performance.now();
      await eventually(async () => (await check()) === "NOT_SERVING", 5000, "health NOT_SERVING while the write lock is held", 50);
      const notServingMs = performance.now() - lockedAt;
      expect(await health.check("session.v1.SessionService")).toBe("NOT_SERVING");

      // Reads do not wait for the lock.
      const getMs = await timed(async () => expect((await client.getSession({ id: "seed" })).session?.id).toBe("seed"));
      expect(getMs).toBeLessThan(RESPONSIVE_MS);

      // A write cannot commit: it fails within its deadline, UNAVAILABLE (the store gave up
      // waiting for the lock) or DEADLINE_EXCEEDED (the client's deadline came first).
      const writeStart = performance.now();
      const err = await client.createSession({ session: { id: "during-stall" } }, { timeoutMs: 1000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      const writeMs = performance.now() - writeStart;
      expect(err).toBeInstanceOf(CallError);
      expect([Code.Unavailable, Code.DeadlineExceeded]).toContain((err as CallError).code);
      expect(writeMs).toBeLessThan(3000);
      // Health kept answering at once all along.
      for (let i = 0; i < 5; i++) expect(await check()).toBe("NOT_SERVING");

      holder.exec("ROLLBACK");
      held = false;
      const releasedAt = performance.now();
      await eventually(async () => (await check()) === "SERVING", 5000, "health SERVING again after the lock is released", 50);
      const servingMs = performance.now() - releasedAt;
      console.log(
        `write lock held: NOT_SERVING after ${Math.round(notServingMs)} ms, SERVING again ${Math.round(servingMs)} ms after release; ` +
          `${checks.length} health checks (worst ${Math.round(Math.max(...checks))} ms); GetSession ${Math.round(getMs)} ms; a write failed after ${Math.round(writeMs)} ms`,
      );
      expect(Math.max(...checks)).toBeLessThan(RESPONSIVE_MS);

      // The failed write left nothing; writes work again.
      await expect(client.getSession({ id: "during-stall" })).rejects.toMatchObject({ code: Code.NotFound });
      expect((await client.createSession({ session: { id: "after-stall" } })).session?.id).toBe("after-stall");
      // A watcher was told each change as it happened.
      await eventually(async () => watch.statuses.length >= 3, 5000, "health Watch saw the stall and the recovery", 20);
      expect(watch.statuses).toEqual(["SERVING", "NOT_SERVING", "SERVING"]);
    } finally {
      watch.cancel();
      if (held) holder.exec("ROLLBACK");
      holder.close();
    }
  }, 30_000);
});

// Needs root (it mounts a small tmpfs as the data directory), as the suite's CI and dev
// containers run.
describe("a full disk on the embedded store", () => {
  let dir: string;
  let server: TestServer | undefined;
  let client: SessionClient;
  let health: HealthClient;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "store-full-"));
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", dir]);
    server = await startTestServer("sqlite", { DATA_DIR: dir, HEALTH_PROBE_INTERVAL: "100ms", HEALTH_PROBE_TIMEOUT: "500ms" });
    client = grpcClient(server.grpcPort);
    health = healthClient(server.grpcPort);
  });

  afterAll(async () => {
    client?.close();
    health?.close();
    await server?.close();
    execFileSync("umount", [dir]);
    rmSync(dir, { recursive: true, force: true });
  });

  it("fails writes with UNAVAILABLE, loses nothing, goes NOT_SERVING and recovers once space is freed", async () => {
    // About 80 KB each (ten 8,000-character values).
    const big = (i: number) => Object.fromEntries(Array.from({ length: 10 }, (_, k) => [`k${k}`, `${i}-${k}-`.padEnd(8000, "x")]));
    const acknowledged: string[] = [];
    for (let i = 0; i < 5; i++)
      acknowledged.push((await client.createSession({ session: { id: `full-${i}`, properties: big(i) } })).session!.id);
    expect(await health.check()).toBe("SERVING");

    // Fill the file system to the last byte.
    const filler = join(dir, "filler");
    const fd = openSync(filler, "w");
    try {
      const chunk = Buffer.alloc(64 * 1024, 1);
      for (;;) {
        try {
          writeSync(fd, chunk);
        } catch {
          break; // ENOSPC
        }
      }
    } finally {
      closeSync(fd);
    }

    const failed: string[] = [];
    for (let i = 5; i < 15 && failed.length < 3; i++) {
      const id = `full-${i}`;
      try {
        acknowledged.push((await client.createSession({ session: { id, properties: big(i) } }, { timeoutMs: 5000 })).session!.id);
      } catch (err) {
        expect((err as CallError).code).toBe(Code.Unavailable);
        failed.push(id);
      }
    }
    expect(failed.length).toBeGreaterThan(0);
    await eventually(async () => (await health.check()) === "NOT_SERVING", 5000, "health NOT_SERVING on a full disk", 50);
    // Reads go on.
    expect((await client.getSession({ id: acknowledged[0] })).session?.id).toBe(acknowledged[0]);

    unlinkSync(filler);
    await eventually(async () => (await health.check()) === "SERVING", 5000, "health SERVING once space is freed", 50);
    acknowledged.push((await client.createSession({ session: { id: "full-after", properties: big(99) } })).session!.id);

    // Every acknowledged write is there, every failed one is not.
    for (const id of acknowledged) expect((await client.getSession({ id })).session?.properties?.k0).toMatch(/^\d+-0-x/);
    for (const id of failed) await expect(client.getSession({ id })).rejects.toMatchObject({ code: Code.NotFound });
  }, 30_000);
});
