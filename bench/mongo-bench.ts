// `npm run bench:mongo`: the MongoDB store on FerretDB.
//
// Starts its own FerretDB (scripts/ferretdb.sh, SQLite backend) in a temporary directory and the
// real service (startServer with MONGODB_URI) in a child process (this file with --serve), then:
//   1. baseline: the plain driver's insertOne of a session document (a copy of one the service
//      wrote, new _id) into the service's `sessions` collection, concurrency 50, ~10 s; run
//      before and after step 2, the mean is the baseline;
//   2. CreateSession through the service over gRPC (connect-node gRPC transport, HTTP/2),
//      concurrency 50, ~10 s; prints creates/s over inserts/s (target >= 0.8);
//   3. ListSessions latency (page_size 50, one profile with 100 sessions, sequential calls) with
//      10k stored sessions, then again after bulk-loading (driver insertMany, batches of 1000,
//      the service's document shape) towards 1M, stopping at --load-minutes.
// Everything it starts is stopped and the temporary directory removed at exit.
//
// Options: --duration S (10), --concurrency N (50), --calls N (200), --list-budget S (60: a
// latency run stops after this many seconds even below --calls), --target N (1000000),
// --load-minutes M (12), --backend sqlite|postgresql (sqlite), --json FILE (the result as JSON, as
// the BENCH_RESULT line).
//
// --backend postgresql: FerretDB's PostgreSQL backend on a private PostgreSQL
// (scripts/postgres.sh, in the same temporary directory), with FerretDB's experimental
// --test-enable-nested-pushdown (so that the `profile.id` filter reaches PostgreSQL) and insert
// batches of 1000. FerretDB's own indexes cannot serve that filter (it is sent as
// `_jsonb #> '{profile,id}' @> $2`, which no btree index answers), so the bench adds one GIN index
// on that expression directly in PostgreSQL (--pg-gin 0: without it), and after the large
// measurement measures once more without it. It prints PostgreSQL's plan for the filter at each
// size. Beyond the first 10k it loads in SQL (--pg-load sql, the default: copies of a row FerretDB
// stored, ~5k docs/s against ~1.2k/s through FerretDB; --pg-load driver: insertMany as on SQLite).
// Use a short --duration (1): the create and baseline runs store sessions too.
// The service child runs with SESSION_EXPIRY_INTERVAL=1h so that no expiry pass runs during it.
// Targets and latest figures: docs/performance.md.

import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import * as os from "node:os";
import * as path from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { MongoClient, type Document } from "mongodb";

import { SessionService } from "../gen/session/v1/session_service_pb";
import { runChild } from "./child";
import { closedLoop } from "./lib/load";
import { oneOf, parseArgs, positive } from "./lib/options";
import { BenchChild, runMain, sleep, spawnNode, startFerret, tempDir, toolsDir } from "./lib/processes";
import { percentile } from "./lib/stats";
import { writeJson } from "./lib/table";
import { BenchPostgres } from "./mongo-postgres";
import { BENCH_PAGE_URL, BENCH_PROFILE, BENCH_SESSION, BENCH_USER_AGENT } from "./requests";

const DATABASE = "bench";
const TARGET_RATIO = 0.8;
const PROFILE = BENCH_PROFILE;
const LIST_PROFILE = "5d9c2f10-list-4bench-8000-000000000100";
const LIST_PROFILE_SESSIONS = 100;

const CREATE_REQUEST = { session: BENCH_SESSION, userAgent: BENCH_USER_AGENT, pageUrl: BENCH_PAGE_URL };

// ---------------------------------------------------------------------------------------------
// Options and helpers

interface Options {
  duration: number;
  concurrency: number;
  calls: number;
  listBudget: number;
  target: number;
  loadMinutes: number;
  backend: "sqlite" | "postgresql";
  pgGin: boolean;
  pgLoad: "sql" | "driver";
  json?: string;
}

function parseOptions(argv: string[]): Options {
  const o: Options = {
    duration: 10,
    concurrency: 50,
    calls: 200,
    listBudget: 60,
    target: 1_000_000,
    loadMinutes: 12,
    backend: "sqlite",
    pgGin: true,
    pgLoad: "sql",
  };
  parseArgs(argv, {
    "--duration": (v, n) => (o.duration = positive(v(), n)),
    "--concurrency": (v, n) => (o.concurrency = positive(v(), n)),
    "--calls": (v, n) => (o.calls = positive(v(), n)),
    "--list-budget": (v, n) => (o.listBudget = positive(v(), n)),
    "--target": (v, n) => (o.target = positive(v(), n)),
    "--load-minutes": (v, n) => (o.loadMinutes = positive(v(), n)),
    "--backend": (v, n) => (o.backend = oneOf(v(), n, ["sqlite", "postgresql"] as const)),
    "--pg-gin": (v, n) => (o.pgGin = oneOf(v(), n, ["0", "1"] as const) === "1"),
    "--pg-load": (v, n) => (o.pgLoad = oneOf(v(), n, ["sql", "driver"] as const)),
    "--json": (v) => (o.json = v()),
  });
  return o;
}

const pct = percentile;
const f1 = (n: number): string => n.toFixed(1);
const f2 = (n: number): string => n.toFixed(2);
const log = (s: string): void => console.log(`[${new Date().toISOString().slice(11, 19)}] ${s}`);

// ---------------------------------------------------------------------------------------------
// The service child: this file with --serve (the entry point is at the end of this file)

async function startService(uri: string): Promise<BenchChild & { port: number }> {
  const child = new BenchChild("service child", spawnNode(__filename, { args: ["--serve"], env: { BENCH_MONGODB_URI: uri } }));
  return Object.assign(child, { port: Number((await child.ready).port) });
}

// ---------------------------------------------------------------------------------------------
// Documents in the service's shape

/** A copy of `template` (a document the service wrote) as another session. */
function sessionLike(template: Document, profileId: string, insert: Date): Document {
  const doc = structuredClone(template);
  doc._id = randomUUID();
  doc.profile = { ...(doc.profile as Document), id: profileId };
  const metadata = doc.metadata as Document;
  const time = metadata.time as Document;
  metadata.time = { ...time, insert, timestamp: insert.getTime() / 1000, weekday: insert.getUTCDay() };
  return doc;
}

const T0 = Date.UTC(2026, 0, 1);
let seq = 0;
/** Sessions of many other profiles (about 10 each), insert times spread over a year. */
function filler(template: Document, n: number): Document[] {
  const out: Document[] = [];
  for (let i = 0; i < n; i++) {
    const k = seq++;
    out.push(sessionLike(template, `filler-profile-${Math.floor(k / 10)}`, new Date(T0 + ((k * 7919) % 31_536_000) * 1000)));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

async function listLatency(
  client: ReturnType<typeof createClient<typeof SessionService>>,
  calls: number,
  budgetS: number,
): Promise<{ p50: number; p99: number; n: number; returned: number; errors: number; firstError?: string }> {
  const lat: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let returned = 0;
  const end = performance.now() + budgetS * 1000;
  for (let i = 0; i < calls && (i < 3 || performance.now() < end); i++) {
    const t = performance.now();
    try {
      const res = await client.listSessions({ profileId: LIST_PROFILE, pageSize: 50 }, { timeoutMs: 120_000 });
      lat.push(performance.now() - t);
      returned = res.sessions.length;
    } catch (err) {
      errors++;
      firstError ??= err instanceof Error ? err.message : String(err);
    }
  }
  lat.sort((a, b) => a - b);
  return { p50: pct(lat, 50), p99: pct(lat, 99), n: lat.length, returned, errors, firstError };
}

async function main(): Promise<void> {
  const { duration, concurrency, calls, listBudget, target, loadMinutes, backend, pgGin, pgLoad, json } = parseOptions(
    process.argv.slice(2),
  );

  const tmpDir = tempDir("mongo-bench-");
  const ferretDir = path.join(tmpDir, "ferretdb");
  const ferretEnv: NodeJS.ProcessEnv = { ...process.env };
  const pg = backend === "postgresql" ? BenchPostgres.start(tmpDir) : undefined;
  if (pg) {
    log(`PostgreSQL at ${pg.url} (${pg.sql("SHOW server_version")}), data in ${path.join(tmpDir, "postgres")}`);
    Object.assign(ferretEnv, pg.ferretEnv());
  }
  const { uri } = startFerret(ferretDir, ferretEnv);
  const ferretVersion =
    spawnSync(path.join(toolsDir(), "ferretdb"), ["--version"], { encoding: "utf8" })
      .stdout.split("\n")
      .find((l) => /version/i.test(l)) ?? "?";
  log(
    `FerretDB at ${uri} (${ferretVersion.trim()}, ${backend} backend${backend === "postgresql" ? ", nested pushdown" : ""}), data in ${ferretDir}`,
  );
  log(`load average: ${os.loadavg().map(f2).join(", ")}`);
  log(`machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? "?"}, node ${process.version}`);

  const svc = await startService(uri);
  const client = createClient(SessionService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${svc.port}` }));
  const mongo = new MongoClient(uri, { maxPoolSize: concurrency + 10 });
  await mongo.connect();
  const sessions = mongo.db(DATABASE).collection("sessions");

  // The store opens in the background: wait until a create goes through, and take its document.
  let firstId: string | undefined;
  for (let i = 0; i < 100 && !firstId; i++) {
    try {
      firstId = (await client.createSession(CREATE_REQUEST, { timeoutMs: 10_000 })).session?.id;
    } catch {
      await sleep(200);
    }
  }
  if (!firstId) throw new Error("CreateSession never succeeded");
  const template = await sessions.findOne({ _id: firstId as unknown as Document["_id"] });
  if (!template) throw new Error("the created session is not in the sessions collection");
  const docBytes = Buffer.byteLength(JSON.stringify(template));
  log(`session document template: ${Object.keys(template).length} top-level fields, ~${docBytes} bytes as JSON`);

  // 1 + 2: baseline, CreateSession, baseline.
  const insertOnce = async (): Promise<void> => {
    await sessions.insertOne(sessionLike(template, PROFILE, new Date()));
  };
  await closedLoop(concurrency, 2, insertOnce); // warm-up
  await closedLoop(concurrency, 2, async () => void (await client.createSession(CREATE_REQUEST, { timeoutMs: 30_000 })));
  log(`baseline insertOne, concurrency ${concurrency}, ${duration} s ...`);
  const base1 = await closedLoop(concurrency, duration, insertOnce);
  log(`  ${f1(base1.rate)} inserts/s (${base1.ok} ok, ${base1.errors} errors${base1.firstError ? `: ${base1.firstError}` : ""})`);
  log(`CreateSession through the service, concurrency ${concurrency}, ${duration} s ...`);
  const create = await closedLoop(
    concurrency,
    duration,
    async () => void (await client.createSession(CREATE_REQUEST, { timeoutMs: 30_000 })),
  );
  log(`  ${f1(create.rate)} creates/s (${create.ok} ok, ${create.errors} errors${create.firstError ? `: ${create.firstError}` : ""})`);
  log(`baseline insertOne again ...`);
  const base2 = await closedLoop(concurrency, duration, insertOnce);
  log(`  ${f1(base2.rate)} inserts/s (${base2.ok} ok, ${base2.errors} errors)`);
  const baseline = (base1.rate + base2.rate) / 2;
  const ratio = create.rate / baseline;
  log(
    `RATIO CreateSession / insertOne = ${f1(create.rate)} / ${f1(baseline)} = ${f2(ratio)} (target >= ${TARGET_RATIO}: ${ratio >= TARGET_RATIO ? "met" : "NOT met"})`,
  );
  const perCreate = {
    revisions: await mongo.db(DATABASE).collection("revisions").countDocuments(),
    changes: await mongo.db(DATABASE).collection("changes").countDocuments(),
  };
  log(`collections after the runs: revisions ${perCreate.revisions}, changes ${perCreate.changes}`);

  // 3: ListSessions latency at 10k and towards 1M.
  const listDocs: Document[] = [];
  for (let i = 0; i < LIST_PROFILE_SESSIONS; i++) listDocs.push(sessionLike(template, LIST_PROFILE, new Date(T0 + i * 3_600_000)));
  await sessions.insertMany(listDocs, { ordered: false });
  // Counted once here; afterwards the bench counts what it inserts (insertedCount), as
  // countDocuments reads the whole collection on FerretDB (minutes at 500k).
  let total = await sessions.countDocuments();
  let claimed = total;
  const load = async (upTo: number, deadline: number): Promise<void> => {
    const workers = 2;
    await Promise.all(
      Array.from({ length: workers }, async () => {
        while (claimed < upTo && performance.now() < deadline) {
          const n = Math.min(1000, upTo - claimed);
          claimed += n;
          const { insertedCount } = await sessions.insertMany(filler(template, n), { ordered: false });
          total += insertedCount; // not `total += await ...`: that reads total before the await
        }
      }),
    );
  };

  // PostgreSQL: the table FerretDB made for `sessions`, the GIN index, and the plan PostgreSQL
  // picks for FerretDB's `profile.id` filter.
  const indent = (text: string): string => text.split("\n").join("\n    ");
  const pgPlan = (label: string): void => {
    const { rows, plan } = pg!.plan(LIST_PROFILE);
    log(`PostgreSQL ${label}: ${rows} rows in the sessions table; plan of FerretDB's ListSessions query:\n    ${indent(plan)}`);
  };
  if (pg) {
    const indexes = pg.findTable();
    log(`PostgreSQL table of sessions: bench."${pg.table}"; indexes:\n    ${indent(indexes)}`);
    if (pgGin) log(`added: ${pg.addGin().replace(" IF NOT EXISTS", "")}`);
  }

  let t = performance.now();
  await load(10_000, Infinity);
  log(`stored sessions: ${total} (loaded in ${f1((performance.now() - t) / 1000)} s)`);
  if (pg) {
    pg.vacuum();
    pgPlan(`@ ${total}`);
  }
  await listLatency(client, 5, 30); // warm-up
  const l10k = await listLatency(client, calls, listBudget);
  const total10k = total;
  log(
    `ListSessions @ ${total10k}: p50 ${f1(l10k.p50)} ms, p99 ${f1(l10k.p99)} ms over ${l10k.n} calls (${l10k.returned} returned, ${l10k.errors} errors${l10k.firstError ? `: ${l10k.firstError}` : ""})`,
  );

  t = performance.now();
  const deadline = t + loadMinutes * 60_000;
  if (pg && pgLoad === "sql") {
    // Copies, in SQL, the row FerretDB stored for the last filler document the driver inserted,
    // with the fields filler() varies set the same way (BenchPostgres.copyRows).
    if (seq === 0) {
      // No filler went through the driver yet (the runs above stored 10k already): one now.
      await sessions.insertOne(filler(template, 1)[0]!);
      total++;
    }
    const sample = (await sessions.findOne({ "profile.id": `filler-profile-${Math.floor((seq - 1) / 10)}` })) as Document | null;
    if (!sample) throw new Error("no filler document to copy");
    const chunk = 50_000;
    log(
      `bulk-loading towards ${target} in PostgreSQL (INSERT ... SELECT of ${chunk} copies of a stored filler row, at most ${loadMinutes} min) ...`,
    );
    while (total < target && performance.now() < deadline) {
      const n = Math.min(chunk, target - total);
      const from = seq;
      seq += n;
      const inserted = pg.copyRows(sample._id, from, n, T0);
      total += inserted;
      log(`  ${total} stored, ${f1((total - total10k) / ((performance.now() - t) / 1000))} docs/s`);
    }
    // FerretDB reads the copies as documents of the same shape.
    const copy = (await sessions.findOne({ "profile.id": `filler-profile-${Math.floor((seq - 1) / 10)}` })) as Document | null;
    const time = (copy?.metadata as Document | undefined)?.time as Document | undefined;
    if (!copy || Object.keys(copy).join() !== Object.keys(sample).join() || !(time?.insert instanceof Date)) {
      throw new Error(`FerretDB does not read the SQL copies as session documents: ${JSON.stringify(copy)}`);
    }
    log(
      `  FerretDB reads a copy: _id ${String(copy._id)}, profile ${(copy.profile as Document).id}, insert ${(time.insert as Date).toISOString()}`,
    );
  } else {
    log(`bulk-loading towards ${target} (insertMany x1000, 2 in flight, at most ${loadMinutes} min) ...`);
    const progress = setInterval(
      () => log(`  ~${total} stored, ${f1((total - total10k) / ((performance.now() - t) / 1000))} docs/s`),
      30_000,
    );
    await load(target, deadline);
    clearInterval(progress);
  }
  const loadS = (performance.now() - t) / 1000;
  log(
    `stored sessions: ${total} (${total < target ? `stopped at the ${loadMinutes} min limit, ` : ""}${f1(loadS)} s, ${f1((total - total10k) / loadS)} docs/s)`,
  );
  if (pg) {
    // What autovacuum does in the background: statistics, the visibility map, and merging the GIN
    // index's pending list (rows inserted since are scanned linearly by every GIN lookup).
    const v = performance.now();
    pg.vacuum();
    log(`VACUUM (ANALYZE) of the sessions table: ${f1((performance.now() - v) / 1000)} s`);
    pgPlan(`@ ${total}`);
  }
  log(`load average: ${os.loadavg().map(f2).join(", ")}`);
  await listLatency(client, 2, 30); // warm-up
  const lBig = await listLatency(client, calls, listBudget);
  log(
    `ListSessions @ ${total}: p50 ${f1(lBig.p50)} ms, p99 ${f1(lBig.p99)} ms over ${lBig.n} calls (${lBig.returned} returned, ${lBig.errors} errors${lBig.firstError ? `: ${lBig.firstError}` : ""})`,
  );
  log(`RATIO ListSessions p50 @${total} / @${total10k} = ${f2(lBig.p50 / l10k.p50)}, p99 ${f2(lBig.p99 / l10k.p99)} (flat would be ~1)`);

  // PostgreSQL: the same at the large size without the GIN index (what FerretDB's own indexes give).
  let lNoGin: Awaited<ReturnType<typeof listLatency>> | undefined;
  if (pg && pgGin) {
    pg.dropGin();
    pgPlan(`@ ${total} without the GIN index`);
    await listLatency(client, 1, 30); // warm-up
    lNoGin = await listLatency(client, Math.min(calls, 20), Math.min(listBudget, 30));
    log(
      `ListSessions @ ${total} without the GIN index: p50 ${f1(lNoGin.p50)} ms, p99 ${f1(lNoGin.p99)} ms over ${lNoGin.n} calls (${lNoGin.returned} returned, ${lNoGin.errors} errors${lNoGin.firstError ? `: ${lNoGin.firstError}` : ""})`,
    );
  }

  const result = {
    backend,
    baseline1: base1.rate,
    baseline2: base2.rate,
    create: create.rate,
    ratio,
    total10k,
    l10k,
    totalBig: total,
    lBig,
    lNoGin,
    loadS,
    docBytes,
    loadavg: os.loadavg(),
  };
  console.log("\nBENCH_RESULT " + JSON.stringify(result));
  if (json) writeJson(json, { date: new Date().toISOString(), ...result });
  await mongo.close();
  await svc.stop();
}

// ---------------------------------------------------------------------------------------------
// Entry point: the server child, or the bench

if (process.argv.includes("--serve")) {
  runChild("mongo-service", async () => {
    const { loadConfig } = await import("../src/config");
    const { createLogger } = await import("../src/log");
    const { startServer } = await import("../src/server");
    const config = loadConfig({
      GRPC_PORT: "0",
      HTTP_PORT: "0",
      MONGODB_URI: process.env.BENCH_MONGODB_URI,
      MONGODB_DATABASE: DATABASE,
      STORE_TIMEOUT: "10m",
      LOG_LEVEL: "silent",
      SHUTDOWN_GRACE: "1s",
      // The expiry runner's pass at start sees only the few first sessions; its next pass would come
      // after the load and expire the bulk-loaded sessions (their insert times are months old) while
      // ListSessions is measured, one conditional update each. 1 h: no pass during the bench.
      SESSION_EXPIRY_INTERVAL: "1h",
    });
    const running = await startServer(config, createLogger("silent"));
    return { port: running.grpcPort, close: () => running.close() };
  });
} else {
  runMain("bench:mongo", main);
}
