// `npm run bench`: CreateSession throughput and p50/p99 latency at concurrency 50 against a bare
// echo server on the same engine, measured in the same run, printed as a ratio.
//
// Load generator: ghz (Go, its own process). Servers: each in its own Node child process
// (bench/*-server.ts), so the bench process never competes with a server for its core:
//   grpc-js echo     bare grpc-js, same method path and protobuf-es codecs, echoes the session
//   connect echo     bare connect-node over HTTP/2 cleartext (gRPC protocol), echoes the session
//   CreateSession    the real service (startServer) on the embedded SQLite store, fresh DATA_DIR
// Every round runs the three back to back (echo, connect echo, create); the table shows the
// medians over the rounds. Results and notes: docs/performance.md.
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
//                      key), in the same rounds: the cost of issue 11's security beside plaintext
//   --echo-only        skip the real service
//   --no-connect       skip the connect-node echo (shorter rounds when comparing builds)
//   --baseline DIR     also run the service of another built checkout (DIR/dist) as
//                      "create-baseline", in the same rounds: an A/B comparison on one machine state
//   --json FILE        also write the results as JSON
//   --profile TARGET   instead of the comparison: run TARGET (create | grpc-echo | connect-echo)
//                      under node --cpu-prof for one --duration run and print the top frames

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import { formatSummary, summarize } from "./profile-summary";
import { BENCH_PAGE_URL, BENCH_SESSION, BENCH_USER_AGENT } from "./requests";
import type { Stats } from "./child";

const REPO = path.resolve(__dirname, "..", "..");
const METHOD = "session.v1.SessionService.CreateSession";
const TARGET_RATIO = 0.8;
const CORES = os.cpus().length;

/** A realistic first-visit CreateSession request: no id (the server makes one), so every call inserts. */
const CREATE_REQUEST = { session: BENCH_SESSION, user_agent: BENCH_USER_AGENT, page_url: BENCH_PAGE_URL };

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
  secure: boolean;
  baseline?: string;
  pin: boolean;
  json?: string;
  profile?: ServerKind;
}

type ServerKind = "grpc-echo" | "connect-echo" | "create" | "create-baseline" | "create-secure";

/** How ghz reaches a server: plaintext on 127.0.0.1, or TLS (for the certificate's name) with a key. */
interface Target {
  address: string;
  args: string[];
}

function parseOptions(argv: string[]): Options {
  const o: Options = { rounds: 3, duration: "10s", warmup: "3s", concurrency: 50, cpus: 1, connections: 1, echoOnly: false, noConnect: false, secure: false, pin: false };
  const dur = (v: string, name: string): string => {
    if (!/^\d+(ms|s|m)$/.test(v)) throw new Error(`${name}: expected a duration like 10s, got ${JSON.stringify(v)}`);
    return v;
  };
  const int = (v: string, name: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: expected a positive whole number, got ${JSON.stringify(v)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    switch (a) {
      case "--rounds": o.rounds = int(next(), a); break;
      case "--duration": o.duration = dur(next(), a); break;
      case "--warmup": o.warmup = dur(next(), a); break;
      case "--concurrency": o.concurrency = int(next(), a); break;
      case "--cpus": o.cpus = int(next(), a); break;
      case "--connections": o.connections = int(next(), a); break;
      case "--echo-only": o.echoOnly = true; break;
      case "--no-connect": o.noConnect = true; break;
      case "--secure": o.secure = true; break;
      case "--baseline": {
        const dir = path.resolve(next());
        if (!fs.existsSync(path.join(dir, "dist", "bench", "service-server.js"))) throw new Error(`--baseline: ${dir}/dist/bench/service-server.js not found (build that checkout first)`);
        o.baseline = dir;
        break;
      }
      case "--pin": o.pin = true; break;
      case "--json": o.json = next(); break;
      case "--profile": {
        const t = next();
        if (t !== "create" && t !== "grpc-echo" && t !== "connect-echo") throw new Error(`--profile: expected create, grpc-echo or connect-echo`);
        o.profile = t;
        break;
      }
      default:
        throw new Error(`unknown option ${a}`);
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// Cleanup: children and temp dirs go away on every exit path.

const children = new Set<ChildProcess>();
const tempDirs: string[] = [];

function cleanupSync(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  }
  children.clear();
  for (const d of tempDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}
process.on("exit", cleanupSync);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    process.stderr.write(`\nbench: ${sig}, stopping\n`);
    cleanupSync();
    process.exit(130);
  });
}

function tempDir(prefix: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

// ---------------------------------------------------------------------------------------------
// CPU pinning (--pin): taskset execs the command, so the child's pid stays the command's pid.

let PIN = false;
const SERVER_CPUS = (): string => String(CORES - 1);
const GHZ_CPUS = (): string => (CORES > 2 ? `0-${CORES - 2}` : "0");

function command(cmd: string, args: string[], cpus: string): [string, string[]] {
  return PIN ? ["taskset", ["-c", cpus, cmd, ...args]] : [cmd, args];
}

// ---------------------------------------------------------------------------------------------
// Server children

class ServerChild {
  private readonly waiters: { type: string; resolve: (msg: Record<string, unknown>) => void }[] = [];
  private exited?: string;
  port = 0;

  constructor(
    readonly kind: ServerKind,
    private readonly proc: ChildProcess,
    private readonly secure?: { ca: string; secret: string },
  ) {
    children.add(proc);
    readline.createInterface({ input: proc.stdout! }).on("line", (line) => {
      if (!line.startsWith("BENCH ")) {
        process.stderr.write(`[${kind}] ${line}\n`);
        return;
      }
      const msg = JSON.parse(line.slice(6)) as Record<string, unknown>;
      const i = this.waiters.findIndex((w) => w.type === msg.type);
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve(msg);
    });
    proc.on("exit", (code, signal) => {
      children.delete(proc);
      this.exited = `exited (code ${code}, signal ${signal})`;
      for (const w of this.waiters.splice(0)) w.resolve({ type: "exit", error: this.exited });
    });
  }

  /** Where and how ghz calls this server. */
  get target(): Target {
    if (!this.secure) return { address: `127.0.0.1:${this.port}`, args: ["--insecure"] };
    return { address: `localhost:${this.port}`, args: ["--cacert", this.secure.ca, "--metadata", JSON.stringify({ authorization: `Bearer ${this.secure.secret}` })] };
  }

  static async start(kind: ServerKind, env: NodeJS.ProcessEnv, nodeArgs: string[] = [], repo = REPO, secure?: { ca: string; secret: string }): Promise<ServerChild> {
    const script = {
      "grpc-echo": "echo-grpc-server.js",
      "connect-echo": "echo-connect-server.js",
      create: "service-server.js",
      "create-baseline": "service-server.js",
      "create-secure": "service-server.js",
    }[kind];
    const [cmd, args] = command(process.execPath, [...nodeArgs, path.join(repo, "dist", "bench", script)], SERVER_CPUS());
    const proc = spawn(cmd, args, {
      cwd: repo,
      env: { ...process.env, ...env },
      stdio: ["pipe", "pipe", "inherit"],
    });
    const child = new ServerChild(kind, proc, secure);
    const ready = await child.request("ready", undefined, 30_000);
    child.port = Number(ready.port);
    return child;
  }

  private request(type: string, command: string | undefined, timeoutMs: number): Promise<Record<string, unknown>> {
    if (this.exited) return Promise.reject(new Error(`${this.kind} server ${this.exited}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.kind} server: no "${type}" within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        type,
        resolve: (msg) => {
          clearTimeout(timer);
          if (msg.type === "exit") reject(new Error(`${this.kind} server ${String(msg.error)}`));
          else resolve(msg);
        },
      });
      if (command) this.proc.stdin!.write(command + "\n");
    });
  }

  async stats(): Promise<Stats> {
    return (await this.request("stats", "stats", 10_000)) as unknown as Stats;
  }

  /** Asks the child to close and exit (so a --cpu-prof profile gets written); kills it after 10 s. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.proc.once("exit", () => resolve()));
    this.proc.stdin!.write("exit\n");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 10_000);
    await done;
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// ghz

interface GhzReport {
  count: number;
  total: number; // ns
  average: number; // ns
  rps: number;
  latencyDistribution: { percentage: number; latency: number }[] | null;
  statusCodeDistribution?: Record<string, number>;
  errorDistribution?: Record<string, number> | null;
}

interface RunResult {
  server: ServerKind;
  round: number; // 0 = warm-up
  rps: number;
  p50Ms: number;
  p99Ms: number;
  count: number;
  errors: number;
  /** CPU used by the server process during the run, % of one core. */
  serverCpu: number;
  /** CPU used by ghz during the run, % of one core (sampled from /proc). */
  ghzCpu: number;
  /** CPU used by everything else on the machine during the run, % of one core. */
  otherCpu: number;
  /** CPU used by the whole machine during the run, % of all cores. */
  machineCpu: number;
}

function machineTicks(): { busy: number; total: number } {
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = v[3] + (v[4] ?? 0);
  return { busy: total - idle, total };
}

const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/** CPU time (user + system) of a process so far, seconds; undefined once it is gone. */
function procCpuSeconds(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** ghz's version: the module scripts/tools.sh built (a `go install` binary says "dev"). */
function ghzVersion(ghz: string): string {
  try {
    const stamp = fs.readFileSync(path.join(path.dirname(ghz), ".ghz.version"), "utf8").trim();
    return stamp.slice(stamp.lastIndexOf("@") + 1);
  } catch {
    const r = spawnSync(ghz, ["--version"], { encoding: "utf8" });
    return (r.stdout || r.stderr).trim();
  }
}

class Ghz {
  constructor(
    private readonly bin: string,
    private readonly protoset: string,
    private readonly dataFile: string,
    private readonly o: Options,
  ) {}

  /** One call with a short timeout: does the server answer at all? Returns an error text, or undefined. */
  async probe(target: Target): Promise<string | undefined> {
    const { report } = await this.run(target, "", ["-n", "1", "-c", "1", "--timeout", "10s"]);
    const ok = report.statusCodeDistribution?.OK ?? 0;
    if (ok === 1) return undefined;
    return `no answer to one CreateSession: ${JSON.stringify(report.errorDistribution ?? report.statusCodeDistribution ?? {})}`;
  }

  run(target: Target, duration: string, override?: string[]): Promise<{ report: GhzReport; cpu: number }> {
    const load = override ?? ["-c", String(this.o.concurrency), "-z", duration, "--duration-stop", "ignore"];
    const args = [
      "--protoset", this.protoset,
      "--call", METHOD,
      ...target.args,
      ...load,
      "--connections", String(this.o.connections),
      "--cpus", String(this.o.cpus),
      "-D", this.dataFile,
      "--disable-template-functions",
      "--disable-template-data",
      "--format", "json",
      target.address,
    ];
    return new Promise((resolve, reject) => {
      const [cmd, cmdArgs] = command(this.bin, args, GHZ_CPUS());
      const proc = spawn(cmd, cmdArgs, { stdio: ["ignore", "pipe", "pipe"] });
      children.add(proc);
      let out = "";
      let err = "";
      proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
      proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
      const timer = setTimeout(() => proc.kill("SIGKILL"), (duration ? parseDurationMs(duration) : 0) + 60_000);
      // ghz's CPU use: /proc samples while it runs (the last ~100 ms before its exit are missed).
      const t0 = process.hrtime.bigint();
      let cpu = 0;
      const sampler = setInterval(() => {
        const c = procCpuSeconds(proc.pid!);
        if (c !== undefined) cpu = (100 * c) / (Number(process.hrtime.bigint() - t0) / 1e9);
      }, 100);
      proc.on("exit", (code) => {
        clearTimeout(timer);
        clearInterval(sampler);
        children.delete(proc);
        if (code !== 0) return reject(new Error(`ghz exited with ${code}: ${err.trim() || out.trim()}`));
        try {
          resolve({ report: JSON.parse(out) as GhzReport, cpu });
        } catch {
          reject(new Error(`ghz printed no JSON report: ${out.slice(0, 500)} ${err.slice(0, 500)}`));
        }
      });
    });
  }
}

function parseDurationMs(d: string): number {
  const m = /^(\d+)(ms|s|m)$/.exec(d);
  if (!m) return 60_000;
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] as "ms" | "s" | "m"];
}

async function measure(ghz: Ghz, server: ServerChild, duration: string, round: number): Promise<RunResult> {
  const s0 = await server.stats();
  const m0 = machineTicks();
  const t0 = process.hrtime.bigint();
  const { report, cpu: ghzCpu } = await ghz.run(server.target, duration);
  const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
  const m1 = machineTicks();
  const s1 = await server.stats();
  const pct = (p: number): number => (report.latencyDistribution ?? []).find((x) => x.percentage === p)?.latency ?? NaN;
  const statuses = report.statusCodeDistribution ?? {};
  const errors = Object.entries(statuses).reduce((n, [code, count]) => (code === "OK" ? n : n + count), 0);
  if (errors > 0) {
    const detail = JSON.stringify(report.errorDistribution ?? statuses).slice(0, 600);
    throw new Error(`${server.kind}: ${errors} of ${report.count} calls failed: ${detail}`);
  }
  if (report.count === 0) throw new Error(`${server.kind}: no call completed within ${duration} (is the server answering?)`);
  const serverCpu = (100 * (s1.cpuUser + s1.cpuSystem - s0.cpuUser - s0.cpuSystem)) / wallUs;
  const machineCpu = (100 * (m1.busy - m0.busy)) / Math.max(1, m1.total - m0.total);
  return {
    server: server.kind,
    round,
    rps: report.rps,
    p50Ms: pct(50) / 1e6,
    p99Ms: pct(99) / 1e6,
    count: report.count,
    errors,
    serverCpu,
    ghzCpu,
    otherCpu: Math.max(0, machineCpu * CORES - serverCpu - ghzCpu),
    machineCpu,
  };
}

// ---------------------------------------------------------------------------------------------
// Setup shared by both modes

interface Setup {
  ghz: Ghz;
  ghzBin: string;
  tmp: string;
}

function setup(o: Options): Setup {
  // Builds ghz once (cached); quiet when it is there already.
  const tools = path.join(REPO, "scripts", "tools.sh");
  const inst = spawnSync("bash", [tools, "ghz"], { cwd: REPO, stdio: ["ignore", "inherit", "inherit"] });
  if (inst.status !== 0) throw new Error("scripts/tools.sh ghz failed");
  const dir = spawnSync("bash", [tools, "--print-dir"], { cwd: REPO, encoding: "utf8" }).stdout.trim();
  const ghzBin = path.join(dir, "ghz");
  if (!fs.existsSync(ghzBin)) throw new Error(`ghz not found at ${ghzBin}`);

  const tmp = tempDir("session-bench-");
  const protoset = path.join(tmp, "session.binpb");
  const buf = path.join(REPO, "node_modules", ".bin", "buf");
  const b = spawnSync(buf, ["build", "-o", protoset], { cwd: REPO, encoding: "utf8" });
  if (b.status !== 0) throw new Error(`buf build failed: ${b.stderr}`);
  const dataFile = path.join(tmp, "create-session.json");
  fs.writeFileSync(dataFile, JSON.stringify(CREATE_REQUEST));
  return { ghz: new Ghz(ghzBin, protoset, dataFile, o), ghzBin, tmp };
}

/** CPU used by the whole machine over `ms`, % of one core (before any server runs: other processes). */
async function backgroundCpu(ms: number): Promise<number> {
  const a = machineTicks();
  await sleep(ms);
  const b = machineTicks();
  return (100 * CORES * (b.busy - a.busy)) / Math.max(1, b.total - a.total);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(" | ")} |`;
  return [line(head), `|${w.map((n, i) => (i === 0 ? "-".repeat(n + 2) : "-".repeat(n + 1) + ":")).join("|")}|`, ...rows.map(line)].join("\n");
}

const LABEL: Record<ServerKind, string> = {
  "grpc-echo": "grpc-js echo (bare)",
  "connect-echo": "connect-node echo (bare, h2c)",
  create: "CreateSession (grpc-js, SQLite)",
  "create-baseline": "CreateSession, --baseline build",
  "create-secure": "CreateSession, TLS + API key",
};

/**
 * For --secure: a CA and a server certificate for localhost (openssl, P-256 as the tests use),
 * a keys file with one key of scope sessions.write, and its secret.
 */
function secureFiles(tmp: string): { env: NodeJS.ProcessEnv; ca: string; secret: string } {
  const dir = path.join(tmp, "tls");
  fs.mkdirSync(dir);
  const f = (name: string): string => path.join(dir, name);
  const openssl = (args: string[]): void => {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl(["req", "-x509", ...ec, "-keyout", f("ca.key"), "-out", f("ca.crt"), "-subj", "/CN=Bench CA", "-days", "2",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  openssl(["req", "-new", ...ec, "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=localhost"]);
  fs.writeFileSync(f("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  openssl(["x509", "-req", "-in", f("server.csr"), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", f("server.ext"), "-out", f("server.crt")]);
  const secret = crypto.randomBytes(32).toString("hex");
  const sha256 = crypto.createHash("sha256").update(secret).digest("hex");
  fs.writeFileSync(f("keys.json"), JSON.stringify({ keys: [{ id: "bench", sha256, scopes: ["sessions.write"] }] }));
  return { env: { BENCH_TLS_CERT_FILE: f("server.crt"), BENCH_TLS_KEY_FILE: f("server.key"), BENCH_AUTH_KEYS_FILE: f("keys.json") }, ca: f("ca.crt"), secret };
}

// ---------------------------------------------------------------------------------------------
// Comparison mode (default)

async function compare(o: Options): Promise<number> {
  const { ghz, ghzBin, tmp } = setup(o);
  const log = (s: string): void => void process.stderr.write(s + "\n");
  log(
    `bench: ghz ${ghzVersion(ghzBin)} -c ${o.concurrency} --connections ${o.connections} --cpus ${o.cpus}` +
      `${PIN ? ` (pinned: servers on cpu ${SERVER_CPUS()}, ghz on cpu ${GHZ_CPUS()})` : ""}, ` +
      `${o.rounds} rounds of ${o.duration} per server after ${o.warmup} warm-up; node ${process.version}, ` +
      `${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"})`,
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
    if (s.kind !== "create" && s.kind !== "create-secure") throw new Error(`${s.kind} server: ${problem}`);
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
    `${(med(k, (r) => r.rps) / echoRps).toFixed(2)}x`,
    mb(idle.get(k)!.rss),
    mb(after.get(k)!.rss),
  ]);
  const out: string[] = [];
  out.push("");
  out.push(
    `CreateSession vs bare echo: concurrency ${o.concurrency}, ${o.connections} connection(s), ` +
      `median of ${o.rounds} x ${o.duration} per server (ghz --cpus ${o.cpus}; ${os.cpus().length} cores` +
      `${PIN ? `, servers pinned to cpu ${SERVER_CPUS()}, ghz to cpu ${GHZ_CPUS()}` : ""}); ` +
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
  let ratio: number | undefined;
  // The server's CPU time per call (µs, median over the rounds): less sensitive to other load
  // on the machine than rps, which moves with whatever else gets the cores.
  const cpuPerCall = (k: ServerKind): string => median(runs.filter((r) => r.server === k).map((r) => (r.serverCpu * 1e4) / r.rps)).toFixed(0);
  if (kinds.includes("create")) {
    ratio = med("create", (r) => r.rps) / echoRps;
    const perRound = [...Array(o.rounds).keys()].map((i) => {
      const e = runs.find((r) => r.server === "grpc-echo" && r.round === i + 1)!.rps;
      const c = runs.find((r) => r.server === "create" && r.round === i + 1)!.rps;
      return (c / e).toFixed(2);
    });
    out.push(
      `target: CreateSession / grpc-js echo throughput = ${ratio.toFixed(2)}x (per round: ${perRound.join(", ")}); ` +
        `target >= ${TARGET_RATIO}x: ${ratio >= TARGET_RATIO ? "MET" : "NOT MET"}`,
    );
    if (kinds.includes("create-baseline")) {
      const base = med("create-baseline", (r) => r.rps) / echoRps;
      const perRoundBase = [...Array(o.rounds).keys()].map((i) => {
        const e = runs.find((r) => r.server === "grpc-echo" && r.round === i + 1)!.rps;
        const c = runs.find((r) => r.server === "create-baseline" && r.round === i + 1)!.rps;
        return (c / e).toFixed(2);
      });
      out.push(
        `baseline build (${o.baseline}): CreateSession / grpc-js echo = ${base.toFixed(2)}x (per round: ${perRoundBase.join(", ")}); ` +
          `server CPU per call of the baseline build: ${cpuPerCall("create-baseline")} us`,
      );
    }
    if (kinds.includes("create-secure")) {
      out.push(
        `with TLS and an API key: CreateSession ${med("create-secure", (r) => r.rps).toFixed(0)} rps = ` +
          `${(med("create-secure", (r) => r.rps) / med("create", (r) => r.rps)).toFixed(2)}x plaintext; ` +
          `server CPU per call ${cpuPerCall("create-secure")} us (plaintext ${cpuPerCall("create")} us)`,
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
      machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, memory: os.totalmem(), node: process.version },
      pinned: PIN,
      ghz: { version: ghzVersion(ghzBin), concurrency: o.concurrency, connections: o.connections, cpus: o.cpus, duration: o.duration, rounds: o.rounds },
      request: CREATE_REQUEST,
      runs,
      idleRss: Object.fromEntries(idle.entries()),
      afterLoadRss: Object.fromEntries(after.entries()),
      ratio,
      connectRatio,
      serviceError,
    };
    fs.writeFileSync(o.json, JSON.stringify(result, null, 2) + "\n");
  }
  return kinds.includes("create") ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// Profile mode

async function profile(o: Options, target: ServerKind): Promise<number> {
  const { ghz, tmp } = setup(o);
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
    PIN = true;
  }
  return o.profile ? profile(o, o.profile) : compare(o);
}

main().then(
  (code) => {
    cleanupSync();
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    cleanupSync();
    process.exit(1);
  },
);
