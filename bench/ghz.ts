// The parts of `npm run bench` (bench/bench.ts) that drive the load: the server children it
// measures, ghz (the Go load generator, its own process) and one measured run.

import { spawn, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { CORES, machineCpu, machineTicks, sampleCpu } from "./lib/cpu";
import { durationMs } from "./lib/options";
import { BenchChild, pinned, REPO, spawnNode, tempDir, toolsDir, track } from "./lib/processes";
import { BENCH_PAGE_URL, BENCH_SESSION, BENCH_USER_AGENT } from "./requests";

const METHOD = "session.v1.SessionService.CreateSession";

/** A realistic first-visit CreateSession request: no id (the server makes one), so every call inserts. */
export const CREATE_REQUEST = { session: BENCH_SESSION, user_agent: BENCH_USER_AGENT, page_url: BENCH_PAGE_URL };

/** Referrers of the enriched creates, in turn: each channel rule's path (search, social, email, paid, referral, direct). */
const REFERRERS = [
  "https://www.google.com/search?q=shoes",
  "https://www.bing.com/",
  "https://m.facebook.com/",
  "https://t.co/abc",
  "https://mail.yahoo.com/",
  "https://blog.example.org/post/12",
  "",
  "https://www.youtube.com/watch?v=x",
];
/** Page URLs of the enriched creates, in turn: UTM tags, a click id, none. */
const PAGE_URLS = [BENCH_PAGE_URL, "https://shop.example/landing?gclid=abc123", "https://shop.example/"];

/**
 * The enriched create requests: the visitor's address (client_ip) and the referrer, GEO_REQUESTS
 * of them with random IPv4 addresses (fixed seed), which ghz sends in turn (a JSON array of call
 * data), so that geo lookups spread over the database as real traffic does rather than hitting
 * one cached record, and the channel classification takes each of its paths. An array rather
 * than ghz's template functions: templating every call would cost ghz time.
 */
export function geoCreateRequests(n = GEO_REQUESTS): object[] {
  let x = 0x9e3779b9;
  const next = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return Array.from({ length: n }, (_, i) => ({
    ...CREATE_REQUEST,
    client_ip: `${1 + (next() % 223)}.${next() & 255}.${next() & 255}.${next() & 255}`,
    referrer: REFERRERS[i % REFERRERS.length],
    page_url: PAGE_URLS[i % PAGE_URLS.length],
  }));
}
const GEO_REQUESTS = 4096;

export type ServerKind = "grpc-echo" | "connect-echo" | "create" | "create-baseline" | "create-secure" | "create-geo";

/** How ghz reaches a server: plaintext on 127.0.0.1, or TLS (for the certificate's name) with a key. */
export interface Target {
  address: string;
  args: string[];
  /** Send geoCreateRequests() instead of CREATE_REQUEST. */
  geo?: boolean;
}

/** --pin: servers on the last core, ghz on the others. */
export const Pin = {
  on: false,
  serverCpus: (): string => String(CORES - 1),
  ghzCpus: (): string => (CORES > 2 ? `0-${CORES - 2}` : "0"),
};

const SCRIPT: Record<ServerKind, string> = {
  "grpc-echo": "echo-grpc-server.js",
  "connect-echo": "echo-connect-server.js",
  create: "service-server.js",
  "create-baseline": "service-server.js",
  "create-secure": "service-server.js",
  "create-geo": "service-server.js",
};

/** A server child (bench/*-server.ts) of one kind, from this checkout or another built one. */
export class ServerChild extends BenchChild {
  port = 0;

  private constructor(
    readonly kind: ServerKind,
    proc: ReturnType<typeof spawnNode>,
    private readonly secure?: { ca: string; secret: string },
  ) {
    super(kind, proc, { readyTimeoutMs: 30_000 });
  }

  /** Where and how ghz calls this server. */
  get target(): Target {
    if (this.kind === "create-geo") return { address: `127.0.0.1:${this.port}`, args: ["--insecure"], geo: true };
    if (!this.secure) return { address: `127.0.0.1:${this.port}`, args: ["--insecure"] };
    return {
      address: `localhost:${this.port}`,
      args: ["--cacert", this.secure.ca, "--metadata", JSON.stringify({ authorization: `Bearer ${this.secure.secret}` })],
    };
  }

  static async start(
    kind: ServerKind,
    env: NodeJS.ProcessEnv,
    nodeArgs: string[] = [],
    repo = REPO,
    secure?: { ca: string; secret: string },
  ): Promise<ServerChild> {
    const proc = spawnNode(path.join(repo, "dist", "bench", SCRIPT[kind]), {
      nodeArgs,
      env,
      cwd: repo,
      cpus: Pin.on ? Pin.serverCpus() : undefined,
    });
    const child = new ServerChild(kind, proc, secure);
    child.port = Number((await child.ready).port);
    return child;
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

export interface GhzSettings {
  concurrency: number;
  connections: number;
  cpus: number;
}

/** ghz's version: the module scripts/tools.sh built (a `go install` binary says "dev"). */
export function ghzVersion(ghz: string): string {
  try {
    const stamp = fs.readFileSync(path.join(path.dirname(ghz), ".ghz.version"), "utf8").trim();
    return stamp.slice(stamp.lastIndexOf("@") + 1);
  } catch {
    const r = spawnSync(ghz, ["--version"], { encoding: "utf8" });
    return (r.stdout || r.stderr).trim();
  }
}

export class Ghz {
  constructor(
    readonly bin: string,
    private readonly protoset: string,
    private readonly dataFile: string,
    private readonly o: GhzSettings,
    private readonly geoDataFile: string,
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
      "--protoset",
      this.protoset,
      "--call",
      METHOD,
      ...target.args,
      ...load,
      "--connections",
      String(this.o.connections),
      "--cpus",
      String(this.o.cpus),
      "-D",
      target.geo ? this.geoDataFile : this.dataFile,
      "--disable-template-functions",
      "--disable-template-data",
      "--format",
      "json",
      target.address,
    ];
    return new Promise((resolve, reject) => {
      const [cmd, cmdArgs] = pinned(this.bin, args, Pin.on ? Pin.ghzCpus() : undefined);
      const proc = track(spawn(cmd, cmdArgs, { stdio: ["ignore", "pipe", "pipe"] }));
      let out = "";
      let err = "";
      proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
      proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
      const timer = setTimeout(() => proc.kill("SIGKILL"), (duration ? durationMs(duration) : 0) + 60_000);
      const cpu = sampleCpu(proc.pid!);
      proc.on("exit", (code) => {
        clearTimeout(timer);
        cpu.stop();
        if (code !== 0) return reject(new Error(`ghz exited with ${code}: ${err.trim() || out.trim()}`));
        try {
          resolve({ report: JSON.parse(out) as GhzReport, cpu: cpu.percent() });
        } catch {
          reject(new Error(`ghz printed no JSON report: ${out.slice(0, 500)} ${err.slice(0, 500)}`));
        }
      });
    });
  }
}

export interface RunResult {
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

/** One ghz run of `duration` against `server`, with the CPU of the server, ghz and the rest. */
export async function measure(ghz: Ghz, server: ServerChild, duration: string, round: number): Promise<RunResult> {
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
  const machine = machineCpu(m0, m1) / CORES;
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
    otherCpu: Math.max(0, machine * CORES - serverCpu - ghzCpu),
    machineCpu: machine,
  };
}

/** Builds ghz once (cached; quiet when it is there already), the protoset and the request file. */
export function setupGhz(o: GhzSettings): { ghz: Ghz; tmp: string } {
  const inst = spawnSync("bash", [path.join(REPO, "scripts", "tools.sh"), "ghz"], { cwd: REPO, stdio: ["ignore", "inherit", "inherit"] });
  if (inst.status !== 0) throw new Error("scripts/tools.sh ghz failed");
  const ghzBin = path.join(toolsDir(), "ghz");
  if (!fs.existsSync(ghzBin)) throw new Error(`ghz not found at ${ghzBin}`);

  const tmp = tempDir("session-bench-");
  const protoset = path.join(tmp, "session.binpb");
  const buf = path.join(REPO, "node_modules", ".bin", "buf");
  const b = spawnSync(buf, ["build", "-o", protoset], { cwd: REPO, encoding: "utf8" });
  if (b.status !== 0) throw new Error(`buf build failed: ${b.stderr}`);
  const dataFile = path.join(tmp, "create-session.json");
  fs.writeFileSync(dataFile, JSON.stringify(CREATE_REQUEST));
  const geoDataFile = path.join(tmp, "create-session-geo.json");
  fs.writeFileSync(geoDataFile, JSON.stringify(geoCreateRequests()));
  return { ghz: new Ghz(ghzBin, protoset, dataFile, o, geoDataFile), tmp };
}

/**
 * For --secure: a CA and a server certificate for localhost (openssl, P-256 as the tests use),
 * a keys file with one key of scope sessions.write, and its secret.
 */
export function secureFiles(tmp: string): { env: NodeJS.ProcessEnv; ca: string; secret: string } {
  const dir = path.join(tmp, "tls");
  fs.mkdirSync(dir);
  const f = (name: string): string => path.join(dir, name);
  const openssl = (args: string[]): void => {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    f("ca.key"),
    "-out",
    f("ca.crt"),
    "-subj",
    "/CN=Bench CA",
    "-days",
    "2",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  openssl(["req", "-new", ...ec, "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=localhost"]);
  fs.writeFileSync(f("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  openssl([
    "x509",
    "-req",
    "-in",
    f("server.csr"),
    "-CA",
    f("ca.crt"),
    "-CAkey",
    f("ca.key"),
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    f("server.ext"),
    "-out",
    f("server.crt"),
  ]);
  const secret = crypto.randomBytes(32).toString("hex");
  const sha256 = crypto.createHash("sha256").update(secret).digest("hex");
  fs.writeFileSync(f("keys.json"), JSON.stringify({ keys: [{ id: "bench", sha256, scopes: ["sessions.write"] }] }));
  return {
    env: { BENCH_TLS_CERT_FILE: f("server.crt"), BENCH_TLS_KEY_FILE: f("server.key"), BENCH_AUTH_KEYS_FILE: f("keys.json") },
    ca: f("ca.crt"),
    secret,
  };
}
