// Seeded fuzzing of every SessionService method on both protocols (issue 10, "An adversarial
// suite"): gRPC with raw request bytes (grpc-js with identity serializers) and Connect (HTTP
// POST with application/proto and application/json bodies, enveloped for the stream). Inputs:
// random bytes, byte-level mutations of valid encodings (truncations, bit flips, duplicated
// fields, bad lengths), and structured mutations (huge and odd strings, extreme numbers,
// timestamps at and past the protobuf range, bad nanos, deep or wide Structs, odd field masks).
//
// What must hold (the contract, whatever the input):
//   - the server stays up: health answers SERVING after every HEALTH_EVERY cases;
//   - every answer's code is one of DOCUMENTED_CODES (never INTERNAL or UNKNOWN, never an HTTP
//     error without a Connect error body, never a dropped connection);
//   - at the end every stored session reads back, with GetSession on both protocols and through
//     ListSessions paging on both (nothing committed that cannot be read: no half-written
//     document).
//
// FUZZ_SEED replays a run (the seed is printed); FUZZ_CASES (embedded store, default 2500) and
// FUZZ_MONGO_CASES (MongoDB store on the suite's FerretDB, default 500) set the case counts;
// FUZZ_ONLY=12,345 runs only those case numbers (of the printed seed) to replay a failure.
// Figures of the last run: docs/reliability.md.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { GetSessionRequestSchema } from "../../gen/session/v1/session_service_pb";
import { loadConfig } from "../../src/config";
import type { Logger } from "../../src/log";
import { startServer, type RunningServer } from "../../src/server";
import { connectClient, grpcClient, type SessionClient } from "../support/clients";
import { freshDatabase, type FreshDatabase } from "../support/mongo";
import { testEnv, type StoreKind } from "../support/server";
import {
  encode,
  METHODS,
  methodDesc,
  mutateBytes,
  mutateJson,
  mutateJsonText,
  mutateMessage,
  validRequest,
  type Pool,
} from "./support/mutate";
import { intFrom, rng, seedFrom, type Rng } from "./support/prng";
import { connectStreamFirst, connectUnary, DOCUMENTED_CODES, RawGrpc, type Outcome } from "./support/raw";

const SEED = seedFrom("FUZZ_SEED");
const CASES: Record<StoreKind, number> = { sqlite: intFrom("FUZZ_CASES", 2500), mongodb: intFrom("FUZZ_MONGO_CASES", 500) };
const ONLY = (process.env.FUZZ_ONLY ?? "").split(",").filter(Boolean).map(Number);
const CONCURRENCY = 6;
const HEALTH_EVERY = 100;
// Unary calls get a generous deadline: a hang shows as DEADLINE_EXCEEDED and as the worst latency.
const UNARY_TIMEOUT_MS = 15_000;
// A watch is followed until its first message or its status; a quiet one ends at this deadline.
const STREAM_TIMEOUT_MS = 400;
const POOL_SESSIONS = 30;
// Health is also probed all along the run, to measure the worst stall an input causes.
const PROBE_MS = 250;

type Protocol = "grpc" | "connect-proto" | "connect-json";

interface Case {
  index: number;
  method: string;
  protocol: Protocol;
  /** How the input was made, for the report (and to replay by hand). */
  label: string;
  body: Buffer;
}

interface Violation {
  index: number;
  method: string;
  protocol: Protocol;
  label: string;
  code: string;
  http?: number;
  message: string;
}

function makeCase(index: number, r: Rng, pool: Pool): Case {
  const method = r.pick(METHODS);
  const protocol = r.pick<Protocol>(["grpc", "connect-proto", "connect-json"]);
  const json = protocol === "connect-json";
  const desc = methodDesc(method).input;
  const enc = encode(method, validRequest(method, r, pool));
  const roll = r.next();
  let label: string;
  let body: Buffer;
  if (roll < 0.12) {
    body = r.bytes(r.int(0, r.pick([8, 64, 512, 4096])));
    label = `random ${body.length} bytes`;
  } else if (roll < 0.45) {
    if (json) {
      const m = mutateJsonText(enc.json ?? "{}", r);
      body = Buffer.from(m.text, "utf8");
      label = `json ${m.label}`;
    } else {
      const m = mutateBytes(enc.binary, r);
      body = m.bytes;
      label = `bytes ${m.label}`;
    }
  } else if (roll < 0.92) {
    const labels: string[] = [];
    if (json) {
      const obj = JSON.parse(enc.json ?? "{}") as Record<string, never>;
      for (let k = r.int(1, 3); k > 0; k--) labels.push(mutateJson(desc, obj, r));
      body = Buffer.from(JSON.stringify(obj), "utf8");
    } else {
      for (let k = r.int(1, 3); k > 0; k--) labels.push(mutateMessage(desc, enc.msg, r));
      body = Buffer.from(toBinary(desc, enc.msg as never));
    }
    label = `fields ${labels.join(" ")}`;
  } else {
    body = json ? Buffer.from(enc.json ?? "{}", "utf8") : enc.binary;
    label = "valid";
  }
  return { index, method, protocol, label, body };
}

interface Run {
  kind: StoreKind;
  cases: number;
  codes: Record<Protocol, Record<string, number>>;
  violations: Violation[];
  healthFailures: string[];
  healthChecks: number;
  worstHealthMs: number;
  worstUnaryMs: number;
  worstUnary: string;
  /** Error-level log lines of the server (e.g. "internal error" with its stack). */
  serverErrors: Map<string, number>;
  stored: number;
  readBackFailures: string[];
  listedIds: Record<"grpc" | "connect", string[]>;
  probes: number;
  worstProbeMs: number;
  probeFailures: number;
  /** What the failed probes got: "code/status" -> count. */
  probeFailureKinds: Record<string, number>;
  slow: string[];
  /** Unary calls answered UNAVAILABLE or DEADLINE_EXCEEDED (documented codes, reported): by protocol, code and message. */
  shed: Map<string, { n: number; example: string }>;
  storedIds: string[];
  ms: number;
}

function capturingLogger(errors: Map<string, number>): Logger {
  const note = (msg: string, fields?: Record<string, unknown>) => {
    const detail = typeof fields?.error === "string" ? fields.error.split("\n")[0] : "";
    const key = `${msg}${fields?.method ? ` [${String(fields.method)}]` : ""}${detail ? `: ${detail}` : ""}`;
    errors.set(key, (errors.get(key) ?? 0) + 1);
  };
  return { debug: () => undefined, info: () => undefined, warn: () => undefined, error: note };
}

/** Server-streaming methods (WatchSessions, WatchSessionStats): only their first message is awaited. */
const isStream = (method: string) => methodDesc(method).methodKind === "server_streaming";

async function callCase(c: Case, raw: RawGrpc, httpPort: number): Promise<Outcome> {
  const stream = isStream(c.method);
  if (c.protocol === "grpc") {
    const path = `/session.v1.SessionService/${c.method}`;
    return stream ? raw.streamFirst(path, c.body, STREAM_TIMEOUT_MS) : raw.unary(path, c.body, UNARY_TIMEOUT_MS);
  }
  const format = c.protocol === "connect-json" ? "json" : "proto";
  return stream
    ? connectStreamFirst(httpPort, c.method, c.body, format, STREAM_TIMEOUT_MS)
    : connectUnary(httpPort, c.method, c.body, format, UNARY_TIMEOUT_MS);
}

/** Every stored session, read from the store itself (not through the RPCs under test). */
async function storedIds(server: RunningServer): Promise<string[]> {
  const ids: string[] = [];
  let after: { insert: Date; id: string } | undefined;
  for (;;) {
    const page = await server.store.list({ limit: 500, after });
    for (const d of page) ids.push(d.id);
    if (page.length < 500) return ids;
    const last = page[page.length - 1];
    after = { insert: last.metadata.time.insert, id: last.id };
  }
}

async function listAll(client: SessionClient, failures: string[], protocol: string): Promise<string[]> {
  const ids: string[] = [];
  let pageToken = "";
  for (let pages = 0; pages < 10_000; pages++) {
    try {
      const res = await client.listSessions({ pageToken }, { timeoutMs: UNARY_TIMEOUT_MS });
      ids.push(...res.sessions.map((s) => s.id));
      if (!res.nextPageToken) return ids;
      pageToken = res.nextPageToken;
    } catch (err) {
      failures.push(`ListSessions ${protocol} page ${pages + 1}: ${(err as { code?: number }).code} ${(err as Error).message}`);
      return ids;
    }
  }
  failures.push(`ListSessions ${protocol}: more than 10000 pages`);
  return ids;
}

async function fuzz(kind: StoreKind): Promise<Run> {
  const t0 = Date.now();
  const errors = new Map<string, number>();
  let db: FreshDatabase | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), "session-fuzz-"));
  const extra: Record<string, string> = {};
  if (kind === "mongodb") {
    db = await freshDatabase();
    extra.MONGODB_URI = db.uri;
    extra.MONGODB_DATABASE = db.dbName;
  }
  const config = loadConfig({ DATA_DIR: dataDir, ...testEnv(kind, extra) });
  const server = await startServer(config, capturingLogger(errors));
  const raw = new RawGrpc(server.grpcPort);
  const typedGrpc = grpcClient(server.grpcPort);
  const typedConnect = connectClient(server.httpPort);
  const run: Run = {
    kind,
    cases: 0,
    codes: { grpc: {}, "connect-proto": {}, "connect-json": {} },
    violations: [],
    healthFailures: [],
    healthChecks: 0,
    worstHealthMs: 0,
    worstUnaryMs: 0,
    worstUnary: "",
    serverErrors: errors,
    stored: 0,
    readBackFailures: [],
    listedIds: { grpc: [], connect: [] },
    storedIds: [],
    ms: 0,
    probes: 0,
    worstProbeMs: 0,
    probeFailures: 0,
    probeFailureKinds: {},
    slow: [],
    shed: new Map(),
  };
  // The probe has a connection of its own: it measures the server, not the fuzz cases' HTTP/2
  // connection (its stream limit, its flow control).
  const probe = new RawGrpc(server.grpcPort, true);
  let probing = true;
  const prober = (async () => {
    while (probing) {
      const h = await probe.health("session.v1.SessionService");
      run.probes++;
      run.worstProbeMs = Math.max(run.worstProbeMs, h.ms);
      if (h.code !== "ok" || h.status !== 1) {
        run.probeFailures++;
        const kind = h.code === "ok" ? `status ${h.status}` : `${h.code} ${h.message ?? ""}`;
        run.probeFailureKinds[kind] = (run.probeFailureKinds[kind] ?? 0) + 1;
      }
      await new Promise((r) => setTimeout(r, PROBE_MS));
    }
  })();
  try {
    const profiles = Array.from({ length: 6 }, (_, i) => `fz-p${i}`);
    const ids = Array.from({ length: POOL_SESSIONS }, (_, i) => `fz-${i}`);
    for (const [i, id] of ids.entries()) await typedGrpc.createSession({ session: { id, profile: { id: profiles[i % profiles.length] } } });
    const pool: Pool = { ids, profiles, newId: (r) => `fz-n${r.int(0, 1e9)}` };
    const base = rng(SEED).fork(kind === "sqlite" ? 1 : 2);
    const indices = ONLY.length ? ONLY : Array.from({ length: CASES[kind] }, (_, i) => i);

    const checkHealth = async (after: number) => {
      const h = await probe.health("session.v1.SessionService");
      run.healthChecks++;
      run.worstHealthMs = Math.max(run.worstHealthMs, h.ms);
      if (h.code !== "ok" || h.status !== 1) run.healthFailures.push(`after case ${after}: health ${h.code} status ${h.status}`);
      // The HTTP port too: a small listing over Connect.
      const l = await connectUnary(server.httpPort, "ListSessions", Buffer.from('{"pageSize":1}'), "json", 5000);
      if (l.code !== "ok") run.healthFailures.push(`after case ${after}: Connect ListSessions ${l.code} ${l.message}`);
    };

    for (let b = 0; b < indices.length; b += HEALTH_EVERY) {
      const batch = indices.slice(b, b + HEALTH_EVERY);
      let next = 0;
      const worker = async () => {
        while (next < batch.length) {
          const index = batch[next++];
          const c = makeCase(index, base.fork(index), pool);
          const out = await callCase(c, raw, server.httpPort);
          run.cases++;
          const codes = run.codes[c.protocol];
          codes[out.code] = (codes[out.code] ?? 0) + 1;
          if (!isStream(c.method) && out.ms > run.worstUnaryMs) {
            run.worstUnaryMs = out.ms;
            run.worstUnary = `case ${index} ${c.method} ${c.protocol} ${c.label.slice(0, 120)} -> ${out.code}`;
          }
          if (!isStream(c.method) && (out.code === "unavailable" || out.code === "deadline_exceeded")) {
            const key = `${c.protocol} ${out.code} ${JSON.stringify(out.message.replace(/\d+/g, "N").slice(0, 100))}`;
            const seen = run.shed.get(key);
            run.shed.set(key, {
              n: (seen?.n ?? 0) + 1,
              example: seen?.example ?? `case ${index} ${c.method} after ${out.ms.toFixed(0)} ms: ${c.label.slice(0, 80)}`,
            });
          }
          if (!isStream(c.method) && out.ms > 2000)
            run.slow.push(`case ${index} ${c.method} ${c.protocol} ${out.ms.toFixed(0)} ms ${out.code}: ${c.label.slice(0, 100)}`);
          if (!DOCUMENTED_CODES.has(out.code)) {
            run.violations.push({
              index,
              method: c.method,
              protocol: c.protocol,
              label: c.label.slice(0, 200),
              code: out.code,
              http: out.http,
              message: out.message.slice(0, 200),
            });
          }
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      await checkHealth(batch[batch.length - 1]);
    }

    // Read-back: every stored session, by every read path on both protocols.
    run.storedIds = await storedIds(server);
    run.stored = run.storedIds.length;
    for (const id of run.storedIds) {
      for (const [name, client] of [
        ["grpc", typedGrpc],
        ["connect-json", typedConnect],
      ] as const) {
        try {
          await client.getSession({ id }, { timeoutMs: UNARY_TIMEOUT_MS });
        } catch (err) {
          run.readBackFailures.push(
            `GetSession ${name} ${JSON.stringify(id.slice(0, 60))}: ${(err as { code?: number }).code} ${(err as Error).message}`,
          );
        }
      }
      const proto = await connectUnary(
        server.httpPort,
        "GetSession",
        Buffer.from(toBinary(GetSessionRequestSchema, create(GetSessionRequestSchema, { id }))),
        "proto",
        UNARY_TIMEOUT_MS,
      );
      if (proto.code !== "ok")
        run.readBackFailures.push(`GetSession connect-proto ${JSON.stringify(id.slice(0, 60))}: ${proto.code} ${proto.message}`);
    }
    run.listedIds.grpc = await listAll(typedGrpc, run.readBackFailures, "grpc");
    run.listedIds.connect = await listAll(typedConnect, run.readBackFailures, "connect-json");
  } finally {
    run.ms = Date.now() - t0;
    probing = false;
    await prober;
    probe.close();
    raw.close();
    typedGrpc.close();
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
    await db?.drop();
  }
  return run;
}

function summary(run: Run): string {
  const lines = [
    `fuzz ${run.kind} (FUZZ_SEED=${SEED}): ${run.cases} cases in ${(run.ms / 1000).toFixed(1)} s; health checked ${run.healthChecks} times (worst ${run.worstHealthMs.toFixed(0)} ms), ${run.healthFailures.length} failures`,
    ...Object.entries(run.codes).map(
      ([p, codes]) =>
        `  codes ${p}: ${Object.entries(codes)
          .sort((a, b) => b[1] - a[1])
          .map(([c, n]) => `${c} ${n}`)
          .join(", ")}`,
    ),
    `  worst unary call: ${run.worstUnaryMs.toFixed(0)} ms (${run.worstUnary})`,
    `  violations (code outside the documented set): ${run.violations.length}`,
  ];
  // Grouped by protocol, code and message (numbers blanked), with the methods and two inputs of
  // each group: one group is usually one defect.
  const groups = new Map<string, { n: number; methods: Set<string>; examples: string[] }>();
  for (const v of run.violations) {
    const key = `${v.protocol} ${v.code}${v.http ? ` (HTTP ${v.http})` : ""} ${JSON.stringify(v.message.replace(/\d+/g, "N").slice(0, 80))}`;
    const g = groups.get(key) ?? { n: 0, methods: new Set<string>(), examples: [] };
    groups.set(key, g);
    g.n++;
    g.methods.add(v.method);
    if (g.examples.length < 2) g.examples.push(`case ${v.index} ${v.method}: ${v.label.slice(0, 160)}`);
  }
  for (const [key, g] of [...groups].sort((a, b) => b[1].n - a[1].n)) {
    lines.push(`    ${g.n}x ${key} in ${[...g.methods].join(", ")}`);
    for (const e of g.examples) lines.push(`        e.g. ${e}`);
  }
  lines.push(
    `  health probed every ${PROBE_MS} ms during the run: ${run.probes} probes, worst ${run.worstProbeMs.toFixed(0)} ms, ${run.probeFailures} failed (no answer within 5 s or not SERVING)${run.probeFailures ? `: ${JSON.stringify(run.probeFailureKinds)}` : ""}`,
  );
  for (const [key, v] of run.shed) lines.push(`  unary ${key}: ${v.n}, e.g. ${v.example}`);
  lines.push(`  unary calls slower than 2 s: ${run.slow.length}${run.slow.length ? `: ${run.slow.slice(0, 5).join("; ")}` : ""}`);
  lines.push(`  stored sessions at the end: ${run.stored}; read-back failures: ${run.readBackFailures.length}`);
  lines.push(...run.readBackFailures.slice(0, 10).map((f) => `    ${f}`));
  if (run.serverErrors.size) {
    lines.push("  server error logs:");
    for (const [k, n] of run.serverErrors) lines.push(`    ${n}x ${k.slice(0, 240)}`);
  }
  return lines.join("\n");
}

describe.each<StoreKind>(["sqlite", "mongodb"])("fuzzing every method on both protocols, %s store", (kind) => {
  let run: Run;

  beforeAll(async () => {
    run = await fuzz(kind);
    console.log(summary(run));
  }, 240_000);

  it("runs every case and the server stays up (health SERVING, HTTP port answering, after every batch)", () => {
    expect(run.cases).toBe(ONLY.length || CASES[kind]);
    expect(run.healthChecks).toBeGreaterThan(0);
    expect(run.healthFailures).toEqual([]);
  });

  it("answers every case with a documented code (never INTERNAL/UNKNOWN, never an HTTP error without a Connect body)", () => {
    const shown = run.violations
      .slice(0, 30)
      .map((v) => `case ${v.index} ${v.method} ${v.protocol}: ${v.code}${v.http ? ` (HTTP ${v.http})` : ""} for ${v.label.slice(0, 120)}`);
    expect({ seed: SEED, count: run.violations.length, first: shown }).toEqual({ seed: SEED, count: 0, first: [] });
  });

  it("commits nothing that cannot be read back: GetSession on both protocols and ListSessions paging return every stored session", () => {
    expect(run.stored).toBeGreaterThan(0);
    expect(run.readBackFailures).toEqual([]);
    const stored = [...run.storedIds].sort();
    expect([...run.listedIds.grpc].sort()).toEqual(stored);
    expect([...run.listedIds.connect].sort()).toEqual(stored);
  });
});
