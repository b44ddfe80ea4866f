// `npm run bench`: CreateSession throughput and p50/p99 latency at concurrency 50 against a bare
// echo server on the same engine, measured in the same run, printed as a ratio.
//
// Load generator: ghz (Go, its own process). Servers: each in its own Node child process
// (bench/*-server.ts), so the bench process never competes with a server for its core:
//   grpc-js echo     bare grpc-js, same method path and protobuf-es codecs, echoes the session
//   connect echo     bare connect-node over HTTP/2 cleartext (gRPC protocol), echoes the session
//   CreateSession    the real service (startServer) on the embedded SQLite store, fresh DATA_DIR
//   create-geo       the same with client_ip (4096 random IPv4 addresses in turn) and a referrer
//                    (search, social, email, click id, referral, direct in turn) and
//                    IP_ANONYMIZATION=truncate: the cost of geo from IP, anonymization and the
//                    channel classification per create
// Every round runs the three back to back (echo, connect echo, create); the table shows the
// medians over the rounds. Targets and latest figures: docs/performance.md.
//
// Options (npm run bench -- --rounds 5 ...):
//   --rounds N         measured rounds (default 3)
//   --duration D       ghz duration of one measured run, e.g. 10s (default 10s)
//   --warmup D         ghz warm-up per server before the first round (default 3s)
//   --concurrency N    ghz concurrent workers (default 50)
//   --cpus N           ghz GOMAXPROCS (default 1: on a 2-core machine the server keeps a core)
//   --connections N    ghz HTTP/2 connections (default 1)
//   --pin              pin the servers to the last core and ghz to the others (taskset)
//   --secure           also run the service with TLS and an API key ("create-secure": TLS on the
//                      gRPC port, AUTH_KEYS_FILE with one key, ghz with --cacert and the bearer
//                      key), in the same rounds: the cost of TLS and the key check beside plaintext
//   --echo-only        skip the real service
//   --no-connect       skip the connect-node echo (shorter rounds when comparing builds)
//   --no-geo           skip the create-geo variant
//   --geoip-city-db F  create-geo also reads this city database (GEOIP_CITY_DB)
//   --baseline DIR     also run the service of another built checkout (DIR/dist) as
//                      "create-baseline", in the same rounds: an A/B comparison on one machine state
//   --json FILE        also write the results as JSON
//   --profile TARGET   instead of the comparison: run TARGET (create | grpc-echo | connect-echo)
//                      under node --cpu-prof for one --duration run and print the top frames

import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Stats } from "./child";
import { CREATE_REQUEST, ghzVersion, measure, Pin, secureFiles, ServerChild, setupGhz, type RunResult, type ServerKind } from "./ghz";
import { backgroundCpu, CORES } from "./lib/cpu";
import { baselineDir, duration, int, oneOf, parseArgs } from "./lib/options";
import { REPO, runMain, sleep } from "./lib/processes";
import { median } from "./lib/stats";
import { mb, ratio, table, writeJson } from "./lib/table";
import { formatSummary, summarize } from "./profile-summary";

const TARGET_RATIO = 0.8;

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  rounds: number;
  duration: string;
  warmup: string;
  concurrency: number;
  cpus: number;
  connections: number;
  echoOnly: boolean;
  noConnect: boolean;
  noGeo: boolean;
  geoipCityDb?: string;
  secure: boolean;
  baseline?: string;
  pin: boolean;
  json?: string;
  profile?: ServerKind;
}

function parseOptions(argv: string[]): Options {
  const o: Options = {
    rounds: 3,
    duration: "10s",
    warmup: "3s",
    concurrency: 50,
    cpus: 1,
    connections: 1,
    echoOnly: false,
    noConnect: false,
    noGeo: false,
    secure: false,
    pin: false,
  };
  parseArgs(argv, {
    "--rounds": (v, n) => (o.rounds = int(v(), n)),
    "--duration": (v, n) => (o.duration = duration(v(), n)),
    "--warmup": (v, n) => (o.warmup = duration(v(), n)),
    "--concurrency": (v, n) => (o.concurrency = int(v(), n)),
    "--cpus": (v, n) => (o.cpus = int(v(), n)),
    "--connections": (v, n) => (o.connections = int(v(), n)),
    "--echo-only": () => (o.echoOnly = true),
    "--no-connect": () => (o.noConnect = true),
    "--no-geo": () => (o.noGeo = true),
    "--geoip-city-db": (v) => (o.geoipCityDb = path.resolve(v())),
    "--secure": () => (o.secure = true),
    "--baseline": (v) => (o.baseline = baselineDir(v(), "service-server.js")),
    "--pin": () => (o.pin = true),
    "--json": (v) => (o.json = v()),
    "--profile": (v, n) => (o.profile = oneOf(v(), n, ["create", "grpc-echo", "connect-echo"] as const)),
  });
  return o;
}

const LABEL: Record<ServerKind, string> = {
  "grpc-echo": "grpc-js echo (bare)",
  "connect-echo": "connect-node echo (bare, h2c)",
  create: "CreateSession (grpc-js, SQLite)",
  "create-baseline": "CreateSession, --baseline build",
  "create-secure": "CreateSession, TLS + API key",
  "create-geo": "CreateSession + client_ip, referrer",
};

// ---------------------------------------------------------------------------------------------
// Comparison mode (default)

async function compare(o: Options): Promise<number> {
  const { ghz, tmp } = setupGhz(o);
  const ghzBin = ghz.bin;
  const log = (s: string): void => void process.stderr.write(s + "\n");
  log(
    `bench: ghz ${ghzVersion(ghzBin)} -c ${o.concurrency} --connections ${o.connections} --cpus ${o.cpus}` +
      `${Pin.on ? ` (pinned: servers on cpu ${Pin.serverCpus()}, ghz on cpu ${Pin.ghzCpus()})` : ""}, ` +
      `${o.rounds} rounds of ${o.duration} per server after ${o.warmup} warm-up; node ${process.version}, ` +
      `${CORES} cores (${os.cpus()[0]?.model ?? "?"})`,
  );

  const background = await backgroundCpu(2000);
  log(`bench: background CPU before start ${background.toFixed(0)}% of one core (other processes on this machine)`);
  if (background > 20) log("bench: WARNING: the machine is busy with other work; the numbers will be noisy");

  const servers: ServerChild[] = [];
  servers.push(await ServerChild.start("grpc-echo", {}));
  if (!o.noConnect) servers.push(await ServerChild.start("connect-echo", {}));
  let serviceError: string | undefined;
  if (!o.echoOnly) {
    try {
      const dataDir = path.join(tmp, "data");
      fs.mkdirSync(dataDir);
      servers.push(await ServerChild.start("create", { BENCH_DATA_DIR: dataDir }));
      if (!o.noGeo) {
        const geoDir = path.join(tmp, "data-geo");
        fs.mkdirSync(geoDir);
        const env = { BENCH_DATA_DIR: geoDir, BENCH_IP_ANONYMIZATION: "truncate", BENCH_GEOIP_CITY_DB: o.geoipCityDb };
        servers.push(await ServerChild.start("create-geo", env));
      }
      if (o.secure) {
        const secureDir = path.join(tmp, "data-secure");
        fs.mkdirSync(secureDir);
        const { env, ca, secret } = secureFiles(tmp);
        servers.push(await ServerChild.start("create-secure", { BENCH_DATA_DIR: secureDir, ...env }, [], REPO, { ca, secret }));
      }
      if (o.baseline) {
        const baseDir = path.join(tmp, "data-baseline");
        fs.mkdirSync(baseDir);
        servers.push(await ServerChild.start("create-baseline", { BENCH_DATA_DIR: baseDir }, [], o.baseline));
      }
    } catch (err) {
      serviceError = err instanceof Error ? err.message : String(err);
      log(`bench: the real service did not start (${serviceError}); measuring the echo servers only`);
    }
  }

  // One call each before any load: a server that does not answer is reported, not timed.
  for (const s of [...servers]) {
    const problem = await ghz.probe(s.target);
    if (!problem) continue;
    if (s.kind !== "create" && s.kind !== "create-secure" && s.kind !== "create-geo") throw new Error(`${s.kind} server: ${problem}`);
    serviceError = `the real service started but ${problem}`;
    log(`bench: ${serviceError}; measuring the echo servers only`);
    servers.splice(servers.indexOf(s), 1);
    await s.stop();
  }

  await sleep(1000);
  const idle = new Map<ServerKind, Stats>();
  for (const s of servers) idle.set(s.kind, await s.stats());

  for (const s of servers) {
    const r = await measure(ghz, s, o.warmup, 0);
    log(`  warm-up  ${s.kind.padEnd(12)} ${r.rps.toFixed(0).padStart(6)} rps`);
  }
  const runs: RunResult[] = [];
  for (let round = 1; round <= o.rounds; round++) {
    for (const s of servers) {
      const r = await measure(ghz, s, o.duration, round);
      runs.push(r);
      log(
        `  round ${round}  ${s.kind.padEnd(12)} ${r.rps.toFixed(0).padStart(6)} rps  p50 ${r.p50Ms.toFixed(2)} ms  ` +
          `p99 ${r.p99Ms.toFixed(2)} ms  CPU: server ${r.serverCpu.toFixed(0)}% ghz ${r.ghzCpu.toFixed(0)}% other ${r.otherCpu.toFixed(0)}%`,
      );
    }
  }
  await sleep(2000);
  const after = new Map<ServerKind, Stats>();
  for (const s of servers) after.set(s.kind, await s.stats());
  await Promise.all(servers.map((s) => s.stop()));

  // Results
  const kinds = servers.map((s) => s.kind);
  const med = (k: ServerKind, f: (r: RunResult) => number): number => median(runs.filter((r) => r.server === k).map(f));
  const echoRps = med("grpc-echo", (r) => r.rps);
  const rows = kinds.map((k) => [
    LABEL[k],
    med(k, (r) => r.rps).toFixed(0),
    med(k, (r) => r.p50Ms).toFixed(2),
    med(k, (r) => r.p99Ms).toFixed(2),
    `${med(k, (r) => r.serverCpu).toFixed(0)}%`,
    `${med(k, (r) => r.ghzCpu).toFixed(0)}%`,
    `${med(k, (r) => r.otherCpu).toFixed(0)}%`,
    ratio(
      med(k, (r) => r.rps),
      echoRps,
    ),
    mb(idle.get(k)!.rss),
    mb(after.get(k)!.rss),
  ]);
  const out: string[] = [];
  out.push("");
  out.push(
    `CreateSession vs bare echo: concurrency ${o.concurrency}, ${o.connections} connection(s), ` +
      `median of ${o.rounds} x ${o.duration} per server (ghz --cpus ${o.cpus}; ${CORES} cores` +
      `${Pin.on ? `, servers pinned to cpu ${Pin.serverCpus()}, ghz to cpu ${Pin.ghzCpus()}` : ""}); ` +
      `CPU columns: % of one core`,
  );
  out.push("");
  out.push(
    table(
      ["server", "rps", "p50 ms", "p99 ms", "server CPU", "ghz CPU", "other CPU", "vs grpc-js echo", "idle RSS", "RSS after load"],
      rows,
    ),
  );
  out.push("");
  const connectRatio = kinds.includes("connect-echo") ? med("connect-echo", (r) => r.rps) / echoRps : undefined;
  if (connectRatio !== undefined) out.push(`engine: connect-node echo / grpc-js echo throughput = ${connectRatio.toFixed(2)}x`);
  let target: number | undefined;
  // The server's CPU time per call (µs, median over the rounds): less sensitive to other load
  // on the machine than rps, which moves with whatever else gets the cores.
  const cpuPerCall = (k: ServerKind): string =>
    median(runs.filter((r) => r.server === k).map((r) => (r.serverCpu * 1e4) / r.rps)).toFixed(0);
  if (kinds.includes("create")) {
    target = med("create", (r) => r.rps) / echoRps;
    // Per round: each server's rps over the grpc-js echo's in the same round.
    const rps = (k: ServerKind, round: number): number => runs.find((r) => r.server === k && r.round === round)!.rps;
    const perRoundOf = (k: ServerKind): string[] =>
      [...Array(o.rounds).keys()].map((i) => (rps(k, i + 1) / rps("grpc-echo", i + 1)).toFixed(2));
    const perRound = perRoundOf("create");
    out.push(
      `target: CreateSession / grpc-js echo throughput = ${target.toFixed(2)}x (per round: ${perRound.join(", ")}); ` +
        `target >= ${TARGET_RATIO}x: ${target >= TARGET_RATIO ? "MET" : "NOT MET"}`,
    );
    if (kinds.includes("create-baseline")) {
      const base = med("create-baseline", (r) => r.rps) / echoRps;
      const perRoundBase = perRoundOf("create-baseline");
      out.push(
        `baseline build (${o.baseline}): CreateSession / grpc-js echo = ${base.toFixed(2)}x (per round: ${perRoundBase.join(", ")}); ` +
          `server CPU per call of the baseline build: ${cpuPerCall("create-baseline")} us`,
      );
    }
    if (kinds.includes("create-secure")) {
      out.push(
        `with TLS and an API key: CreateSession ${med("create-secure", (r) => r.rps).toFixed(0)} rps = ` +
          `${ratio(
            med("create-secure", (r) => r.rps),
            med("create", (r) => r.rps),
          )} plaintext; ` +
          `server CPU per call ${cpuPerCall("create-secure")} us (plaintext ${cpuPerCall("create")} us)`,
      );
    }
    if (kinds.includes("create-geo")) {
      const geoCpu = Number(cpuPerCall("create-geo"));
      const plainCpu = Number(cpuPerCall("create"));
      out.push(
        `with client_ip and referrer (geo lookup${o.geoipCityDb ? " incl. city database" : ", bundled country database"} + truncate + channel): ` +
          `CreateSession ${med("create-geo", (r) => r.rps).toFixed(0)} rps = ` +
          `${ratio(
            med("create-geo", (r) => r.rps),
            med("create", (r) => r.rps),
          )} of without; server CPU per call ${geoCpu} us (without ${plainCpu} us: ${geoCpu - plainCpu >= 0 ? "+" : ""}${geoCpu - plainCpu} us per create)`,
      );
    }
    out.push(`server CPU per call: CreateSession ${cpuPerCall("create")} us, grpc-js echo ${cpuPerCall("grpc-echo")} us`);
    out.push(
      `idle RSS of the service (SQLite store): ${mb(idle.get("create")!.rss)} after start, ` +
        `${mb(after.get("create")!.rss)} after load (${runs.filter((r) => r.server === "create").reduce((n, r) => n + r.count, 0)} sessions created)`,
    );
  } else {
    out.push(`target: not measured, the real service did not start${serviceError ? `: ${serviceError}` : ""}`);
  }
  const otherMax = Math.max(...kinds.map((k) => med(k, (r) => r.otherCpu)));
  if (otherMax > 25) {
    out.push(
      `note: other processes used up to ${otherMax.toFixed(0)}% of a core during the runs (median per server); ` +
        `the machine was shared, so the absolute numbers are noisy (the alternating rounds keep the ratios comparable)`,
    );
  }
  process.stdout.write(out.join("\n") + "\n");

  if (o.json) {
    const result = {
      date: new Date().toISOString(),
      backgroundCpu: background,
      machine: { cores: CORES, cpu: os.cpus()[0]?.model, memory: os.totalmem(), node: process.version },
      pinned: Pin.on,
      ghz: {
        version: ghzVersion(ghzBin),
        concurrency: o.concurrency,
        connections: o.connections,
        cpus: o.cpus,
        duration: o.duration,
        rounds: o.rounds,
      },
      request: CREATE_REQUEST,
      runs,
      idleRss: Object.fromEntries(idle.entries()),
      afterLoadRss: Object.fromEntries(after.entries()),
      ratio: target,
      connectRatio,
      serviceError,
    };
    writeJson(o.json, result);
  }
  return kinds.includes("create") ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// Profile mode

async function profile(o: Options, target: ServerKind): Promise<number> {
  const { ghz, tmp } = setupGhz(o);
  // Kept after the run (outside the temp dir) so the profile can be opened in DevTools.
  const profDir = fs.mkdtempSync(path.join(os.tmpdir(), `session-bench-profile-${target}-`));
  const env: NodeJS.ProcessEnv = {};
  if (target === "create") {
    env.BENCH_DATA_DIR = path.join(tmp, "data");
    fs.mkdirSync(env.BENCH_DATA_DIR);
  }
  const server = await ServerChild.start(target, env, ["--cpu-prof", "--cpu-prof-dir", profDir]);
  const problem = await ghz.probe(server.target);
  if (problem) throw new Error(`${target} server: ${problem}`);
  await measure(ghz, server, o.warmup, 0);
  const r = await measure(ghz, server, o.duration, 1);
  process.stderr.write(
    `profiled ${target}: ${r.rps.toFixed(0)} rps, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, server CPU ${r.serverCpu.toFixed(0)}%\n`,
  );
  await server.stop();
  const file = fs.readdirSync(profDir).find((f) => f.endsWith(".cpuprofile"));
  if (!file) throw new Error(`no .cpuprofile written in ${profDir}`);
  const full = path.join(profDir, file);
  process.stdout.write(formatSummary(summarize(full), 25) + "\n");
  process.stdout.write(`profile (includes start-up and warm-up): ${full}\n`);
  return 0;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  if (o.pin) {
    if (CORES < 2) throw new Error("--pin needs at least 2 cores");
    if (spawnSync("taskset", ["-c", "0", "true"]).status !== 0) throw new Error("--pin needs taskset (util-linux)");
    Pin.on = true;
  }
  return o.profile ? profile(o, o.profile) : compare(o);
}

runMain("bench", main);
