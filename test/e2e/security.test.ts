// Issue 11 end to end: the real service with TLS, mTLS and API keys on free ports, called by real
// clients (grpcurl, curl, grpc-js, connect-node over HTTP/1.1 and HTTP/2). Certificates are made
// by openssl for each run (test/support/certs.ts); keys files are written here with the SHA-256
// of their secrets. Each refusal is checked for its exact code and google.rpc.ErrorInfo reason.

import { X509Certificate } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import * as net from "node:net";
import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { createLogger, type Logger } from "../../src/log";
import { secretSha256 } from "../../src/security/keys";
import { TestCertificates, type CertFiles } from "../support/certs";
import {
  CallError,
  connectClient,
  connectGrpcClient,
  connectH2Client,
  connectWatch,
  grpcClient,
  grpcWatch,
  grpcWebClient,
  type SecureOptions,
  type SessionClient,
  type WatchStream,
} from "../support/clients";
import { startProcess } from "../support/process";
import { startTestServer, type TestServer } from "../support/server";
import { describeRun, eventually, run, tool, type RunResult } from "../support/tools";

let certs: TestCertificates;
let ca: CertFiles;
let server1: CertFiles;
let server2: CertFiles;
let client: CertFiles;
let otherCa: CertFiles;
let otherClient: CertFiles;
let expiredServer: CertFiles;
let expiredClient: CertFiles;
let grpcurlBin: string;

beforeAll(() => {
  grpcurlBin = tool("grpcurl");
  certs = new TestCertificates();
  ca = certs.ca("Sessions CA");
  server1 = certs.server(ca);
  server2 = certs.server(ca);
  client = certs.client(ca, "backend");
  otherCa = certs.ca("Other CA");
  otherClient = certs.client(otherCa, "intruder");
  expiredServer = certs.server(ca, "localhost", { days: -1 });
  expiredClient = certs.client(ca, "old-backend", { days: -1 });
}, 600_000);
afterAll(() => certs?.cleanup());

const SECRETS = { admin: "admin-s3cret-value", reader: "reader-s3cret-value", writer: "writer-s3cret-value" };
const KEYS = {
  keys: [
    { id: "admin", sha256: secretSha256(SECRETS.admin), scopes: ["*"] },
    { id: "reader", sha256: secretSha256(SECRETS.reader), scopes: ["sessions.read", "sessions.watch"] },
    { id: "writer", sha256: secretSha256(SECRETS.writer), scopes: ["sessions.write"] },
  ],
};

/** The files a server is configured with, in a directory of their own (rewritten by the tests). */
class Deployment {
  readonly dir = mkdtempSync(join(tmpdir(), "session-sec-"));
  readonly cert = join(this.dir, "server.crt");
  readonly key = join(this.dir, "server.key");
  readonly clientCa = join(this.dir, "client-ca.crt");
  readonly keys = join(this.dir, "keys.json");
  constructor(server: CertFiles) {
    this.installCertificate(server);
    copyFileSync(ca.cert, this.clientCa);
    this.writeKeys(KEYS);
  }
  /** Replaces the certificate and key as deployment tools do: each written aside, then renamed. */
  installCertificate(server: CertFiles): void {
    copyFileSync(server.key, `${this.key}.new`);
    copyFileSync(server.cert, `${this.cert}.new`);
    renameSync(`${this.key}.new`, this.key);
    renameSync(`${this.cert}.new`, this.cert);
  }
  writeKeys(doc: unknown): void {
    writeFileSync(`${this.keys}.new`, JSON.stringify(doc));
    renameSync(`${this.keys}.new`, this.keys);
  }
  env(extra: Record<string, string> = {}): Record<string, string> {
    return { TLS_CERT_FILE: this.cert, TLS_KEY_FILE: this.key, AUTH_KEYS_FILE: this.keys, ...extra };
  }
  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Audit lines, as the service writes them. */
function captureLog(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { log: createLogger("info", (line) => void lines.push(JSON.parse(line) as Record<string, unknown>)), lines };
}

const caOnly = (): SecureOptions["tls"] => ({ ca: readFileSync(ca.cert) });
const withClientCert = (files: CertFiles): SecureOptions["tls"] => ({
  ca: readFileSync(ca.cert),
  cert: readFileSync(files.cert),
  key: readFileSync(files.key),
});

async function callError(p: Promise<unknown>): Promise<CallError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof CallError) return err;
    throw err;
  }
  throw new Error("the call succeeded");
}

function expectOk(r: RunResult, what: string): void {
  if (r.code !== 0) throw new Error(describeRun(what, r));
}

/** The SHA-256 fingerprint of the certificate a new TLS connection to `port` is served. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      { host: "127.0.0.1", port, servername: "localhost", ca: readFileSync(ca.cert), ALPNProtocols: ["h2"] },
      () => {
        const fp = socket.getPeerX509Certificate()?.fingerprint256 ?? "";
        socket.destroy();
        resolve(fp);
      },
    );
    socket.once("error", reject);
  });
}

const fingerprint = (files: CertFiles): string => new X509Certificate(readFileSync(files.cert)).fingerprint256;

/** Both clients on both ports, with `options`. */
function bothPorts(server: TestServer, options: SecureOptions): Array<[string, SessionClient]> {
  return [
    ["gRPC port (grpc-js)", grpcClient(server.grpcPort, options)],
    ["HTTP port (Connect, HTTP/1.1)", connectClient(server.httpPort, options)],
    ["HTTP port (Connect, HTTP/2)", connectH2Client(server.httpPort, options)],
  ];
}

describe("TLS and API keys on both ports", () => {
  let deployment: Deployment;
  let server: TestServer;
  const audit = captureLog();

  beforeAll(async () => {
    deployment = new Deployment(server1);
    server = await startTestServer("sqlite", deployment.env(), { auditLog: audit.log });
  });
  afterAll(async () => {
    await server?.close();
    await server?.cleanup();
    deployment?.cleanup();
  });

  /**
   * Writes the original keys back and waits until the service has reloaded them (the reader key
   * answers again): the next test starts from them. The reload has no event a client can await.
   */
  async function restoreKeys(): Promise<void> {
    deployment.writeKeys(KEYS);
    const c = grpcClient(server.grpcPort, { tls: caOnly(), secret: SECRETS.reader });
    try {
      await eventually(
        () =>
          c.listSessions({ pageSize: 1 }).then(
            () => true,
            () => false,
          ),
        10_000,
        "the original keys are reloaded",
      );
    } finally {
      c.close();
    }
  }

  const grpcurl = (args: string[], flags: string[] = []): Promise<RunResult> =>
    run(grpcurlBin, ["-cacert", ca.cert, "-max-time", "10", ...flags, `localhost:${server.grpcPort}`, ...args]);

  it("grpcurl with -cacert lists the services through reflection and calls with a bearer key", async () => {
    const list = await grpcurl(["list"]);
    expectOk(list, "grpcurl list");
    expect(list.stdout.trim().split("\n")).toContain("session.v1.SessionService");
    const created = await grpcurl(
      ["session.v1.SessionService/CreateSession"],
      ["-H", `authorization: Bearer ${SECRETS.admin}`, "-d", JSON.stringify({ session: { id: "sec-grpcurl", profile: { id: "p-sec" } } })],
    );
    expectOk(created, "grpcurl CreateSession");
    expect(JSON.parse(created.stdout)).toMatchObject({ session: { id: "sec-grpcurl" } });
    // Without the key the same call is refused, and grpcurl shows the reason.
    const refused = await grpcurl(["session.v1.SessionService/GetSession"], ["-d", '{"id": "sec-grpcurl"}']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("Code: Unauthenticated");
    expect(refused.stderr).toContain('"reason": "API_KEY_MISSING"');
  });

  it("health stays open without a key, over TLS", async () => {
    const r = await grpcurl(["grpc.health.v1.Health/Check"], ["-d", '{"service": "session.v1.SessionService"}']);
    expectOk(r, "grpcurl Health/Check");
    expect(JSON.parse(r.stdout)).toEqual({ status: "SERVING" });
  });

  it("curl over HTTPS speaks the Connect protocol, HTTP/1.1 and HTTP/2, with a bearer key", async () => {
    for (const version of ["--http1.1", "--http2"]) {
      const r = await run("curl", [
        "-sS",
        "--fail-with-body",
        version,
        "--cacert",
        ca.cert,
        "-X",
        "POST",
        `https://localhost:${server.httpPort}/session.v1.SessionService/GetSession`,
        "-H",
        "Content-Type: application/json",
        "-H",
        `Authorization: Bearer ${SECRETS.reader}`,
        "-d",
        '{"id": "sec-grpcurl"}',
        "-w",
        "\n%{http_version}",
      ]);
      expectOk(r, `curl ${version}`);
      const [body, httpVersion] = r.stdout.trim().split("\n");
      expect(JSON.parse(body)).toMatchObject({ session: { id: "sec-grpcurl", profile: { id: "p-sec" } } });
      expect(httpVersion).toBe(version === "--http2" ? "2" : "1.1");
    }
    const missing = await run("curl", [
      "-sS",
      "--cacert",
      ca.cert,
      "-X",
      "POST",
      `https://localhost:${server.httpPort}/session.v1.SessionService/GetSession`,
      "-H",
      "Content-Type: application/json",
      "-d",
      '{"id": "sec-grpcurl"}',
      "-w",
      "\n%{http_code}",
    ]);
    const [body, status] = missing.stdout.trim().split("\n");
    expect(status).toBe("401");
    expect(JSON.parse(body)).toMatchObject({ code: "unauthenticated" });
  });

  it("refuses a missing key, an unknown key and a key without the scope with the exact code and reason, on both ports", async () => {
    for (const [port, c] of bothPorts(server, { tls: caOnly() })) {
      const e = await callError(c.getSession({ id: "sec-grpcurl" }));
      expect([port, e.code, e.errorInfo?.reason, e.errorInfo?.domain]).toEqual([
        port,
        Code.Unauthenticated,
        "API_KEY_MISSING",
        "session.v1",
      ]);
      c.close();
    }
    for (const [port, c] of bothPorts(server, { tls: caOnly(), secret: "not-a-key" })) {
      const e = await callError(c.getSession({ id: "sec-grpcurl" }));
      expect([port, e.code, e.errorInfo?.reason]).toEqual([port, Code.Unauthenticated, "API_KEY_INVALID"]);
      c.close();
    }
    for (const [port, c] of bothPorts(server, { tls: caOnly(), secret: SECRETS.reader })) {
      const e = await callError(c.deleteSession({ id: "sec-grpcurl" }));
      expect([port, e.code, e.errorInfo?.reason, e.errorInfo?.metadata.scope]).toEqual([
        port,
        Code.PermissionDenied,
        "SCOPE_MISSING",
        "sessions.write",
      ]);
      expect(e.message).toContain("sessions.write");
      // The same key may read.
      expect((await c.getSession({ id: "sec-grpcurl" })).session?.id).toBe("sec-grpcurl");
      c.close();
    }
    for (const [port, c] of bothPorts(server, { tls: caOnly(), secret: SECRETS.writer })) {
      const e = await callError(c.mergeProfiles({ sourceProfileIds: ["a"], targetProfileId: "b" }));
      expect([port, e.code, e.errorInfo?.reason, e.errorInfo?.metadata.scope]).toEqual([
        port,
        Code.PermissionDenied,
        "SCOPE_MISSING",
        "profiles.merge",
      ]);
      c.close();
    }
  });

  it("serves gRPC-Web and the gRPC protocol on the HTTP port over TLS too, with the key checked", async () => {
    for (const [what, c] of [
      ["gRPC-Web (HTTP/1.1)", grpcWebClient(server.httpPort, { tls: caOnly(), secret: SECRETS.reader })],
      ["gRPC (HTTP/2) on the HTTP port", connectGrpcClient(server.httpPort, { tls: caOnly(), secret: SECRETS.reader })],
    ] as const) {
      expect([what, (await c.getSession({ id: "sec-grpcurl" })).session?.id]).toEqual([what, "sec-grpcurl"]);
      const e = await callError(c.deleteSession({ id: "sec-grpcurl" }));
      expect([what, e.code, e.errorInfo?.reason]).toEqual([what, Code.PermissionDenied, "SCOPE_MISSING"]);
    }
  });

  it("resumes a watch by revision with a key, on both ports", async () => {
    const admin = grpcClient(server.grpcPort, { tls: caOnly(), secret: SECRETS.admin });
    const created = await admin.createSession({ session: { id: "sec-resume" } });
    const after = created.session!.revision;
    await admin.updateSession({
      session: { id: "sec-resume", metadata: { channel: "resumed" } },
      updateMask: { paths: ["metadata.channel"] },
    });
    admin.close();
    const options = { tls: caOnly(), secret: SECRETS.reader };
    for (const [port, w] of [
      ["gRPC port", grpcWatch(server.grpcPort, { filter: { ids: ["sec-resume"] }, afterRevision: after }, options)],
      ["HTTP port", connectWatch(server.httpPort, { filter: { ids: ["sec-resume"] }, afterRevision: after }, options)],
    ] as const) {
      for await (const msg of w.messages) {
        if (msg.event.case !== "change") continue;
        expect([port, msg.event.value.kind, msg.event.value.session?.metadata?.channel]).toEqual([port, 3 /* UPDATED */, "resumed"]);
        break;
      }
      w.cancel();
    }
  });

  it("refuses a client that does not trust the server's CA (no call reaches the service)", async () => {
    const wrong = { tls: { ca: readFileSync(otherCa.cert) }, secret: SECRETS.admin };
    const e = await callError(grpcClient(server.grpcPort, wrong).getSession({ id: "sec-grpcurl" }, { timeoutMs: 5000 }));
    expect(e.code).toBe(Code.Unavailable);
    const r = await run("curl", ["-sS", "--cacert", otherCa.cert, `https://localhost:${server.httpPort}/`]);
    expect(r.code).toBe(60); // curl: peer certificate cannot be authenticated with known CA certificates
    const g = await run(grpcurlBin, ["-cacert", otherCa.cert, "-max-time", "5", `localhost:${server.grpcPort}`, "list"]);
    expect(g.code).not.toBe(0);
    expect(g.stderr).toMatch(/certificate signed by unknown authority/);
  });

  it("audits every state-changing call: key id, client, method, ids and result code, never the secret", async () => {
    const admin = grpcClient(server.grpcPort, { tls: caOnly(), secret: SECRETS.admin });
    const reader = connectClient(server.httpPort, { tls: caOnly(), secret: SECRETS.reader });
    audit.lines.length = 0;
    await admin.createSession({ session: { id: "sec-audit", profile: { id: "p-audit" } } });
    await callError(
      grpcClient(server.grpcPort, { tls: caOnly(), secret: "guessed" }).updateSession({
        session: { id: "sec-audit" },
        updateMask: { paths: ["metadata.channel"] },
      }),
    );
    await admin.touchSession({ id: "sec-audit" });
    await callError(reader.deleteSession({ id: "sec-audit" }));
    await admin.mergeProfiles({ sourceProfileIds: ["p-audit"], targetProfileId: "p-target" });
    await callError(admin.deleteSession({ id: "sec-missing" }));
    await reader.getSession({ id: "sec-audit" }); // a read: not audited
    admin.close();
    const lines = audit.lines.filter((l) => l.msg === "audit");
    expect(lines.map(({ time: _t, level: _l, ...rest }) => rest)).toEqual([
      {
        msg: "audit",
        method: "session.v1.SessionService/CreateSession",
        key_id: "admin",
        client: "127.0.0.1",
        session_id: "sec-audit",
        profile_id: "p-audit",
        code: "OK",
      },
      {
        msg: "audit",
        method: "session.v1.SessionService/UpdateSession",
        key_id: null,
        client: "127.0.0.1",
        session_id: "sec-audit",
        code: "UNAUTHENTICATED",
      },
      {
        msg: "audit",
        method: "session.v1.SessionService/TouchSession",
        key_id: "admin",
        client: "127.0.0.1",
        session_id: "sec-audit",
        code: "OK",
      },
      {
        msg: "audit",
        method: "session.v1.SessionService/DeleteSession",
        key_id: "reader",
        client: "127.0.0.1",
        session_id: "sec-audit",
        code: "PERMISSION_DENIED",
      },
      {
        msg: "audit",
        method: "session.v1.SessionService/MergeProfiles",
        key_id: "admin",
        client: "127.0.0.1",
        source_profile_ids: ["p-audit"],
        target_profile_id: "p-target",
        code: "OK",
      },
      {
        msg: "audit",
        method: "session.v1.SessionService/DeleteSession",
        key_id: "admin",
        client: "127.0.0.1",
        session_id: "sec-missing",
        code: "NOT_FOUND",
      },
    ]);
    for (const secret of Object.values(SECRETS)) expect(JSON.stringify(audit.lines)).not.toContain(secret);
  });

  it("ends a revoked key's open watches with UNAUTHENTICATED within a few seconds, on both ports", async () => {
    const options = { tls: caOnly(), secret: SECRETS.reader };
    const watches: Array<[string, WatchStream]> = [
      ["gRPC port", grpcWatch(server.grpcPort, { filter: { ids: ["sec-revoke"] }, sendInitial: true }, options)],
      ["HTTP port", connectWatch(server.httpPort, { filter: { ids: ["sec-revoke"] }, sendInitial: true }, options)],
    ];
    // Each watch is open: its initial state has arrived.
    const iterators = watches.map(([, w]) => w.messages[Symbol.asyncIterator]());
    for (const it of iterators) expect((await it.next()).value?.event.case).toBe("initialStateEnd");
    const revokedAt = Date.now();
    deployment.writeKeys({ keys: KEYS.keys.filter((k) => k.id !== "reader") });
    for (const [i, [port]] of watches.entries()) {
      const e = await (async () => {
        try {
          for (;;) if ((await iterators[i].next()).done) throw new Error(`${port}: the watch ended without an error`);
        } catch (err) {
          if (err instanceof CallError) return err;
          throw err;
        }
      })();
      expect([port, e.code, e.errorInfo?.reason, e.errorInfo?.metadata.key_id]).toEqual([
        port,
        Code.Unauthenticated,
        "API_KEY_INVALID",
        "reader",
      ]);
    }
    expect(Date.now() - revokedAt).toBeLessThan(5000);
    // The next call with the revoked key fails too; the other keys go on.
    const e = await callError(grpcClient(server.grpcPort, options).getSession({ id: "sec-grpcurl" }));
    expect([e.code, e.errorInfo?.reason]).toEqual([Code.Unauthenticated, "API_KEY_INVALID"]);
    expect(
      (await grpcClient(server.grpcPort, { tls: caOnly(), secret: SECRETS.admin }).getSession({ id: "sec-grpcurl" })).session?.id,
    ).toBe("sec-grpcurl");
    await restoreKeys();
  }, 30_000);

  it("ends the open watch of a key that loses sessions.watch with PERMISSION_DENIED, and the key may still read", async () => {
    const options = { tls: caOnly(), secret: SECRETS.reader };
    const watch = grpcWatch(server.grpcPort, { filter: { ids: ["sec-scope"] }, sendInitial: true }, options);
    const it = watch.messages[Symbol.asyncIterator]();
    expect((await it.next()).value?.event.case).toBe("initialStateEnd");
    deployment.writeKeys({ keys: KEYS.keys.map((k) => (k.id === "reader" ? { ...k, scopes: ["sessions.read"] } : k)) });
    const e = await (async () => {
      try {
        for (;;) if ((await it.next()).done) throw new Error("the watch ended without an error");
      } catch (err) {
        if (err instanceof CallError) return err;
        throw err;
      }
    })();
    expect([e.code, e.errorInfo?.reason, e.errorInfo?.metadata.scope]).toEqual([Code.PermissionDenied, "SCOPE_MISSING", "sessions.watch"]);
    const c = grpcClient(server.grpcPort, options);
    expect((await c.getSession({ id: "sec-grpcurl" })).session?.id).toBe("sec-grpcurl");
    c.close();
    await restoreKeys();
  }, 30_000);

  it("serves a certificate rotated on disk to new connections on both ports while clients keep calling, and no call fails", async () => {
    expect(await servedFingerprint(server.grpcPort)).toBe(fingerprint(server1));
    expect(await servedFingerprint(server.httpPort)).toBe(fingerprint(server1));
    const options = { tls: caOnly(), secret: SECRETS.admin };
    const persistent = bothPorts(server, options);
    let calls = 0;
    const failures: unknown[] = [];
    let stop = false;
    const callers = persistent.map(async ([, c]) => {
      while (!stop) {
        try {
          await c.getSession({ id: "sec-grpcurl" });
          // A new connection for every other call: new clients must work across the switch too.
          const fresh = grpcClient(server.grpcPort, options);
          await fresh.getSession({ id: "sec-grpcurl" });
          fresh.close();
          calls += 2;
        } catch (err) {
          failures.push(err);
        }
      }
    });
    deployment.installCertificate(server2);
    const deadline = Date.now() + 15_000;
    let seen: string[] = [];
    while (Date.now() < deadline) {
      seen = await Promise.all([servedFingerprint(server.grpcPort), servedFingerprint(server.httpPort)]);
      if (seen.every((fp) => fp === fingerprint(server2))) break;
      await new Promise((r) => setTimeout(r, 100)); // polling what new connections see: there is no event to await
    }
    const callsAtSwitch = calls;
    // Calls go on after the switch, on the old connections and on new ones.
    while (calls < callsAtSwitch + 20) await new Promise((r) => setTimeout(r, 20));
    stop = true;
    await Promise.all(callers);
    for (const [, c] of persistent) c.close();
    expect(seen).toEqual([fingerprint(server2), fingerprint(server2)]);
    expect(failures).toEqual([]);
    expect(calls).toBeGreaterThan(20);
  }, 30_000);
});

describe("mTLS: client certificates on both ports", () => {
  let deployment: Deployment;
  let server: TestServer;

  beforeAll(async () => {
    deployment = new Deployment(server1);
    server = await startTestServer("sqlite", deployment.env({ TLS_CLIENT_CA_FILE: deployment.clientCa }));
  });
  afterAll(async () => {
    await server?.close();
    await server?.cleanup();
    deployment?.cleanup();
  });

  it("a grpc-js client and a Connect client with a client certificate and a key are served", async () => {
    for (const [port, c] of bothPorts(server, { tls: withClientCert(client), secret: SECRETS.admin })) {
      const res = await c.createSession({ session: { id: `mtls-${port.length}-${port.slice(0, 4)}` } });
      expect([port, res.session?.id]).toEqual([port, `mtls-${port.length}-${port.slice(0, 4)}`]);
      c.close();
    }
    const r = await run("curl", [
      "-sS",
      "--fail-with-body",
      "--cacert",
      ca.cert,
      "--cert",
      client.cert,
      "--key",
      client.key,
      "-X",
      "POST",
      `https://localhost:${server.httpPort}/session.v1.SessionService/ListSessions`,
      "-H",
      "Content-Type: application/json",
      "-H",
      `Authorization: Bearer ${SECRETS.reader}`,
      "-d",
      "{}",
    ]);
    expectOk(r, "curl with a client certificate");
    expect((JSON.parse(r.stdout) as { sessions: unknown[] }).sessions.length).toBeGreaterThan(0);
  });

  /**
   * What a TLS client made with `options` gets after sending the HTTP/2 preface: "served" when
   * the server answers (its SETTINGS frame), else the TLS alert it reads, or "closed" when the
   * server closes the connection without one (node checks a certificate's dates and chain after
   * OpenSSL's handshake and destroys the socket; only a missing certificate is refused by
   * OpenSSL itself, with an alert).
   */
  function handshakeOutcome(port: number, options: SecureOptions["tls"]): Promise<string> {
    return new Promise((resolve) => {
      const socket = tls.connect({
        host: "127.0.0.1",
        port,
        servername: "localhost",
        ca: options!.ca,
        cert: options!.cert,
        key: options!.key,
        ALPNProtocols: ["h2"],
      });
      // TLS 1.3: the server checks the client's certificate after the client's side of the
      // handshake is done, so its verdict arrives as the answer to the first bytes sent.
      socket.once("secureConnect", () => socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
      socket.once("data", () => {
        socket.destroy();
        resolve("served");
      });
      socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      socket.once("close", () => resolve("closed"));
    });
  }

  it("a client certificate of the CA is served at the TLS level (the check below is not vacuous)", async () => {
    for (const port of [server.grpcPort, server.httpPort])
      expect([port, await handshakeOutcome(port, withClientCert(client))]).toEqual([port, "served"]);
  });

  it.each([
    ["no client certificate", () => caOnly(), "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED"],
    ["an expired client certificate", () => withClientCert(expiredClient), "closed"],
    ["a client certificate of another CA", () => withClientCert(otherClient), "closed"],
  ])("refuses %s at the handshake on both ports", async (_what, tlsOptions, outcome) => {
    for (const port of [server.grpcPort, server.httpPort])
      expect([port, await handshakeOutcome(port, tlsOptions())]).toEqual([port, outcome]);
    // Real clients fail without reaching the service: no status of the service (no ErrorInfo).
    // Which code each client library makes of a dropped connection is its own choice (grpc-js:
    // UNAVAILABLE; connect-node: INTERNAL, or CANCELLED over HTTP/2 when the server closes first).
    for (const [port, c] of bothPorts(server, { tls: tlsOptions(), secret: SECRETS.admin })) {
      const e = await callError(c.getSession({ id: "x" }, { timeoutMs: 5000 }));
      expect([port, e.errorInfo]).toEqual([port, undefined]);
      if (port.startsWith("gRPC")) expect(e.code).toBe(Code.Unavailable);
      c.close();
    }
    const r = await run("curl", [
      "-sS",
      "--cacert",
      ca.cert,
      "-X",
      "POST",
      `https://localhost:${server.httpPort}/session.v1.SessionService/ListSessions`,
      "-d",
      "{}",
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe("");
  });
});

describe("rate limits and reflection with keys", () => {
  let deployment: Deployment;
  let server: TestServer;

  beforeAll(async () => {
    deployment = new Deployment(server1);
    deployment.writeKeys({
      keys: [...KEYS.keys, { id: "slow", sha256: secretSha256("slow-s3cret-value"), scopes: ["sessions.read"], rate_per_second: 2 }],
    });
    server = await startTestServer("sqlite", deployment.env({ RATE_LIMIT_PER_ADDRESS: "30", REFLECTION_REQUIRES_KEY: "true" }));
  });
  afterAll(async () => {
    await server?.close();
    await server?.cleanup();
    deployment?.cleanup();
  });

  it("refuses a key over its rate_per_second with RESOURCE_EXHAUSTED KEY_RATE_LIMITED, on both ports", async () => {
    for (const [port, c] of bothPorts(server, { tls: caOnly(), secret: "slow-s3cret-value" })) {
      // A burst of one second's worth (2) passes, the third call in the same instant does not.
      const results = await Promise.allSettled([1, 2, 3].map(() => c.getSessionStats({})));
      const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => r.reason as CallError);
      expect([port, refused.map((e) => [e.code, e.errorInfo?.reason, e.errorInfo?.metadata.key_id])]).toEqual([
        port,
        [[Code.ResourceExhausted, "KEY_RATE_LIMITED", "slow"]],
      ]);
      c.close();
      // Let the bucket refill before the next port's burst (2 tokens a second).
      await new Promise((r) => setTimeout(r, 1100));
    }
  });

  it("refuses calls over RATE_LIMIT_PER_ADDRESS with ADDRESS_RATE_LIMITED, keys or not, but never health", async () => {
    const c = grpcClient(server.grpcPort, { tls: caOnly(), secret: SECRETS.admin });
    const results = await Promise.allSettled(Array.from({ length: 60 }, () => c.getSessionStats({})));
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => r.reason as CallError);
    expect(refused.length).toBeGreaterThanOrEqual(20);
    expect(new Set(refused.map((e) => `${e.code} ${e.errorInfo?.reason}`))).toEqual(
      new Set([`${Code.ResourceExhausted} ADDRESS_RATE_LIMITED`]),
    );
    c.close();
    // grpcurl would ask reflection (limited) first: health is called directly, its request an
    // empty message and SERVING the bytes 08 01 (field 1, value 1).
    const healthClient = new grpc.Client(`localhost:${server.grpcPort}`, grpc.credentials.createSsl(readFileSync(ca.cert)));
    const answers = await Promise.all(
      Array.from(
        { length: 40 },
        () =>
          new Promise<string>((resolve, reject) =>
            healthClient.makeUnaryRequest(
              "/grpc.health.v1.Health/Check",
              (b: Buffer) => b,
              (b: Buffer) => b,
              Buffer.alloc(0),
              (err, res) => (err ? reject(err) : resolve((res as Buffer).toString("hex"))),
            ),
          ),
      ),
    );
    healthClient.close();
    expect(new Set(answers)).toEqual(new Set(["0801"]));
  });

  it("with REFLECTION_REQUIRES_KEY, grpcurl needs a key to list (any scope) while health stays open", async () => {
    await new Promise((r) => setTimeout(r, 1100)); // the address bucket refills: time is what it measures
    const without = await run(grpcurlBin, ["-cacert", ca.cert, "-max-time", "10", `localhost:${server.grpcPort}`, "list"]);
    expect(without.code).not.toBe(0);
    expect(without.stderr).toContain("Unauthenticated");
    const withKey = await run(grpcurlBin, [
      "-cacert",
      ca.cert,
      "-max-time",
      "10",
      "-H",
      `authorization: Bearer ${SECRETS.writer}`,
      `localhost:${server.grpcPort}`,
      "list",
    ]);
    expectOk(withKey, "grpcurl list with a key");
    expect(withKey.stdout).toContain("session.v1.SessionService");
  });
});

describe("CORS on the HTTP port", () => {
  const METHODS = [
    "GetSession",
    "ListSessions",
    "GetSessionStats",
    "WatchSessions",
    "CreateSession",
    "UpdateSession",
    "TouchSession",
    "DeleteSession",
    "MergeProfiles",
  ];

  async function corsHeaders(port: number, origin: string, method: string, preflight: boolean): Promise<Record<string, string>> {
    const res = await fetch(`http://127.0.0.1:${port}/session.v1.SessionService/${method}`, {
      method: preflight ? "OPTIONS" : "POST",
      headers: preflight
        ? { Origin: origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,authorization" }
        : { Origin: origin, "Content-Type": "application/json" },
      body: preflight ? undefined : "{}",
    });
    await res.arrayBuffer();
    return Object.fromEntries([...res.headers].filter(([k]) => k.startsWith("access-control-")));
  }

  it("gives no origin any permission by default, on any method", async () => {
    const server = await startTestServer("sqlite");
    try {
      for (const method of METHODS) {
        for (const preflight of [true, false]) {
          expect([method, preflight, await corsHeaders(server.httpPort, "https://app.example", method, preflight)]).toEqual([
            method,
            preflight,
            {},
          ]);
        }
      }
    } finally {
      await server.close();
      await server.cleanup();
    }
  });

  it("gives an origin not in CORS_ORIGINS no permission on any method, and a listed one its own origin, never credentials", async () => {
    const server = await startTestServer("sqlite", { CORS_ORIGINS: "https://app.example" });
    try {
      for (const method of METHODS) {
        for (const preflight of [true, false]) {
          expect([method, preflight, await corsHeaders(server.httpPort, "https://evil.example", method, preflight)]).toEqual([
            method,
            preflight,
            {},
          ]);
        }
        const allowed = await corsHeaders(server.httpPort, "https://app.example", method, true);
        expect(allowed["access-control-allow-origin"]).toBe("https://app.example");
        expect(allowed["access-control-allow-headers"]).toMatch(/authorization/i);
        expect(allowed["access-control-allow-credentials"]).toBeUndefined();
      }
    } finally {
      await server.close();
      await server.cleanup();
    }
  });

  it("answers * only when CORS_ORIGINS is *, without credentials", async () => {
    const server = await startTestServer("sqlite", { CORS_ORIGINS: "*" });
    try {
      const h = await corsHeaders(server.httpPort, "https://any.example", "GetSession", true);
      expect(h["access-control-allow-origin"]).toBe("*");
      expect(h["access-control-allow-credentials"]).toBeUndefined();
    } finally {
      await server.close();
      await server.cleanup();
    }
  });
});

describe("safe defaults and bad files (the built service)", () => {
  it("refuses a non-loopback HOST without TLS and keys, saying what to set", async () => {
    await expect(startProcess({ HOST: "0.0.0.0", DATA_DIR: mkdtempSync(join(tmpdir(), "session-sec-")) })).rejects.toThrow(
      /service exited with 2[\s\S]*HOST=0\.0\.0\.0 is not a loopback address[\s\S]*TLS_CERT_FILE[\s\S]*AUTH_KEYS_FILE[\s\S]*ALLOW_INSECURE=true/,
    );
  });

  it("starts with ALLOW_INSECURE=true and warns at start", async () => {
    const dir = mkdtempSync(join(tmpdir(), "session-sec-"));
    const p = await startProcess({ HOST: "0.0.0.0", ALLOW_INSECURE: "true", DATA_DIR: dir });
    try {
      const warning = p.lines
        .map((l) => (l.startsWith("{") ? (JSON.parse(l) as { level: string; msg: string }) : undefined))
        .find((l) => l?.level === "warn");
      expect(warning?.msg).toMatch(/ALLOW_INSECURE=true.*without TLS and API keys/);
    } finally {
      await p.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    [
      "a malformed keys file",
      (d: Deployment) => writeFileSync(d.keys, '{"keys": [{"id": "x"}]}'),
      /AUTH_KEYS_FILE .*keys\.json: keys\[0\]\.sha256/,
    ],
    [
      "an expired server certificate",
      (d: Deployment) => d.installCertificate(expiredServer),
      /TLS_CERT_FILE .*server\.crt: the certificate expired/,
    ],
    [
      "a key that is not the certificate's",
      (d: Deployment) => copyFileSync(client.key, d.key),
      /TLS_KEY_FILE .*server\.key is not the private key/,
    ],
  ])("stops at start on %s, naming the file and the problem (exit 2)", async (_what, spoil, message) => {
    const d = new Deployment(server1);
    try {
      spoil(d);
      await expect(startProcess({ ...d.env(), DATA_DIR: d.dir })).rejects.toThrow(message);
      await expect(startProcess({ ...d.env(), DATA_DIR: d.dir })).rejects.toThrow(/service exited with 2/);
    } finally {
      d.cleanup();
    }
  });

  it("keeps the HTTP limits over TLS: headers trickled in on HTTP/1.1 are cut after HEADERS_TIMEOUT with 408", async () => {
    const d = new Deployment(server1);
    const server = await startTestServer("sqlite", d.env({ HEADERS_TIMEOUT: "500ms", HTTP_REQUEST_TIMEOUT: "1s" }));
    try {
      const started = Date.now();
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = tls.connect(
          { host: "127.0.0.1", port: server.httpPort, servername: "localhost", ca: readFileSync(ca.cert), ALPNProtocols: ["http/1.1"] },
          () => {
            socket.write("POST /session.v1.SessionService/GetSession HTTP/1.1\r\nHost: localhost\r\n");
          },
        );
        let data = "";
        socket.setEncoding("utf8").on("data", (d: string) => (data += d));
        socket.once("error", reject);
        socket.once("close", () => resolve(data));
      });
      const elapsed = Date.now() - started;
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
      expect(elapsed >= 400 && elapsed < 5000).toBe(true);
    } finally {
      await server.close();
      await server.cleanup();
      d.cleanup();
    }
  });

  it("closes a TLS connection that never finishes its handshake after HEADERS_TIMEOUT, on both ports", async () => {
    const d = new Deployment(server1);
    const server = await startTestServer("sqlite", d.env({ HEADERS_TIMEOUT: "500ms" }));
    try {
      for (const port of [server.grpcPort, server.httpPort]) {
        const started = Date.now();
        await new Promise<void>((resolve, reject) => {
          const socket = net.connect(port, "127.0.0.1");
          socket.once("error", reject);
          socket.once("close", () => resolve());
        });
        const elapsed = Date.now() - started;
        expect([port, elapsed >= 400 && elapsed < 5000]).toEqual([port, true]);
      }
    } finally {
      await server.close();
      await server.cleanup();
      d.cleanup();
    }
  });
});
