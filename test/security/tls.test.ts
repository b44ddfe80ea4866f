// TLS and mTLS (src/security/tls.ts) on real servers on free ports with real clients: a node
// http2 secure server (the HTTP port's engine: HTTP/2 and HTTP/1.1 by ALPN) and a grpc-js server
// serving a one-method echo service (bound directly, and through a connection injector as the
// service's gRPC port does). Certificates are made by openssl for each run (test/support/certs).
// Rotation: files rewritten on disk reach new connections while open connections and streams go on.

import { X509Certificate } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import * as http2 from "node:http2";
import * as https from "node:https";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { createLogger } from "../../src/log";
import {
  followRotation,
  grpcServerCredentials,
  httpsServerOptions,
  loadTlsMaterial,
  tlsFilesFromEnv,
  TlsWatcher,
  type TlsFiles,
  type TlsMaterial,
} from "../../src/security/tls";
import { TestCertificates, type CertFiles } from "../support/certs";

const silent = createLogger("silent");

let certs: TestCertificates;
let ca: CertFiles;
let server1: CertFiles;
let server2: CertFiles;
let client: CertFiles;
let otherCa: CertFiles;
let otherServer: CertFiles;
let otherClient: CertFiles;
let expiredServer: CertFiles;
let expiredClient: CertFiles;

beforeAll(() => {
  certs = new TestCertificates();
  ca = certs.ca("Test CA");
  server1 = certs.server(ca);
  server2 = certs.server(ca);
  client = certs.client(ca, "backend");
  otherCa = certs.ca("Other CA");
  otherServer = certs.server(otherCa);
  otherClient = certs.client(otherCa, "intruder");
  expiredServer = certs.server(ca, "localhost", { days: -1 });
  expiredClient = certs.client(ca, "old-backend", { days: -1 });
});
afterAll(() => certs?.cleanup());

const fingerprint = (files: CertFiles): string => new X509Certificate(readFileSync(files.cert)).fingerprint256;

/** A directory holding the files the server is configured with, rewritten by the tests. */
class LiveFiles {
  readonly dir = mkdtempSync(join(tmpdir(), "session-tls-"));
  readonly files: TlsFiles;
  constructor(server: CertFiles, clientCa?: CertFiles) {
    this.files = { certFile: join(this.dir, "server.crt"), keyFile: join(this.dir, "server.key") };
    if (clientCa) this.files.clientCaFile = join(this.dir, "client-ca.crt");
    this.install(server, clientCa);
  }
  /** Installs a certificate and key as a deployment tool would: key first, then certificate. */
  install(server: CertFiles, clientCa?: CertFiles): void {
    copyFileSync(server.key, this.files.keyFile);
    copyFileSync(server.cert, this.files.certFile);
    if (clientCa && this.files.clientCaFile) copyFileSync(clientCa.cert, this.files.clientCaFile);
  }
  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The next change to the certificate `fp` (and to the client CA `clientCa` when given). */
function nextChange(w: TlsWatcher, fp: string, clientCa?: CertFiles): Promise<TlsMaterial> {
  return new Promise((resolve) => {
    const off = w.onChange((m) => {
      if (m.fingerprint256 !== fp) return;
      if (clientCa && !m.ca?.equals(readFileSync(clientCa.cert))) return;
      off();
      resolve(m);
    });
  });
}

interface ClientTls {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}
const trust = (authority: CertFiles, identity?: CertFiles): ClientTls =>
  identity
    ? { ca: readFileSync(authority.cert), cert: readFileSync(identity.cert), key: readFileSync(identity.key) }
    : { ca: readFileSync(authority.cert) };

/** Fingerprint of the certificate a new TLS connection to `port` is served (ALPN h2). */
function servedFingerprint(port: number, creds: ClientTls): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername: "localhost", ALPNProtocols: ["h2"], ...creds }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.destroy();
    });
    socket.once("error", reject);
  });
}

// ---- HTTP port: node http2 secure server -------------------------------------------------

interface HttpHandle {
  server: http2.Http2SecureServer;
  port: number;
  close(): Promise<void>;
}

async function startHttp(w: TlsWatcher): Promise<HttpHandle> {
  const server = http2.createSecureServer(httpsServerOptions(w), (req, res) => {
    res.setHeader("content-type", "text/plain");
    res.end(`hello over HTTP/${req.httpVersion}`);
  });
  const unfollow = followRotation(server, w, silent);
  const sockets = new Set<net.Socket>();
  server.on("connection", (s: net.Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    server,
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        unfollow();
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A new HTTP/2 connection, resolved once its TLS handshake succeeded (rejects if it failed). */
function h2Connect(port: number, creds: ClientTls): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://localhost:${port}`, { host: "127.0.0.1", ...creds });
    session.once("error", reject);
    session.once("connect", () => {
      session.off("error", reject);
      session.on("error", () => undefined); // later errors fail the requests (h2Get)
      resolve(session);
    });
  });
}

/**
 * GET / on an open session: the body, or a rejection when no response arrives (with TLS 1.3 a
 * server refusing a client certificate does so after the client's handshake completed, so the
 * refusal shows on the first request).
 */
function h2Get(session: http2.ClientHttp2Session): Promise<string> {
  return new Promise((resolve, reject) => {
    let sessionError: Error | undefined;
    const onSessionError = (err: Error): void => void (sessionError = err);
    session.on("error", onSessionError);
    const req = session.request({ ":path": "/" });
    let responded = false;
    let body = "";
    req.setEncoding("utf8");
    req.on("response", () => (responded = true));
    req.on("data", (d: string) => (body += d));
    req.on("error", () => undefined); // reported at close
    req.on("close", () => {
      session.off("error", onSessionError);
      if (responded && req.rstCode === http2.constants.NGHTTP2_NO_ERROR) resolve(body);
      else reject(sessionError ?? new Error(`no response (stream closed with code ${req.rstCode})`));
    });
    req.end();
  });
}

/** One GET / on a new HTTP/2 connection, closed afterwards. */
async function h2GetOnce(port: number, creds: ClientTls): Promise<string> {
  const session = await h2Connect(port, creds);
  try {
    return await h2Get(session);
  } finally {
    session.destroy();
  }
}

/** One GET / over HTTP/1.1 (no ALPN offered: the fallback of allowHTTP1). */
function http1Get(port: number, creds: ClientTls): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: "127.0.0.1", servername: "localhost", port, path: "/", agent: false, ...creds }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve(body));
    });
    req.on("error", reject);
    req.end();
  });
}

// ---- gRPC port: grpc-js --------------------------------------------------------------------

const raw = (b: Buffer): Buffer => b;
const ECHO_SERVICE: grpc.ServiceDefinition = {
  Echo: {
    path: "/test.Echo/Echo",
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
  Chat: {
    path: "/test.Echo/Chat",
    requestStream: true,
    responseStream: true,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
};
const EchoClient = grpc.makeGenericClientConstructor(ECHO_SERVICE, "Echo");
type EchoClientT = InstanceType<typeof EchoClient> & {
  Echo(req: Buffer, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Buffer) => void): grpc.ClientUnaryCall;
  Chat(): grpc.ClientDuplexStream<Buffer, Buffer>;
};

const echoImpl: grpc.UntypedServiceImplementation = {
  Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request),
  Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    call.on("data", (d: Buffer) => call.write(d));
    call.on("end", () => call.end());
  },
};

interface GrpcHandle {
  port: number;
  close(): void;
}

async function startGrpc(w: TlsWatcher): Promise<GrpcHandle> {
  const server = new grpc.Server();
  server.addService(ECHO_SERVICE, echoImpl);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpcServerCredentials(w), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, close: () => server.forceShutdown() };
}

/**
 * As the service's gRPC port does it (src/rpc/grpc-listen.ts): a net.Server of ours
 * reads the first bytes of each connection, puts them back with unshift and hands the socket to
 * grpc-js's connection injector, whose TLS handshake must then see the whole ClientHello.
 */
async function startGrpcInjected(w: TlsWatcher): Promise<GrpcHandle> {
  const server = new grpc.Server();
  server.addService(ECHO_SERVICE, echoImpl);
  const injector = server.createConnectionInjector(grpcServerCredentials(w));
  const sockets = new Set<net.Socket>();
  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.once("data", (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      injector.injectConnection(socket);
    });
  });
  await new Promise<void>((resolve) => tcp.listen(0, "127.0.0.1", resolve));
  return {
    port: (tcp.address() as net.AddressInfo).port,
    close: () => {
      tcp.close();
      for (const s of sockets) s.destroy();
      injector.destroy();
      server.forceShutdown();
    },
  };
}

function grpcClient(port: number, creds: ClientTls): EchoClientT {
  const channelCreds = grpc.credentials.createSsl(creds.ca, creds.key ?? null, creds.cert ?? null);
  return new EchoClient(`localhost:${port}`, channelCreds) as EchoClientT;
}

/** One unary echo; resolves with the server certificate's fingerprint the call was made over. */
function echo(c: EchoClientT, text: string): Promise<{ reply: string; fingerprint: string | undefined }> {
  return new Promise((resolve, reject) => {
    const call = c.Echo(Buffer.from(text), { deadline: Date.now() + 10_000 }, (err, res) => {
      if (err) reject(err);
      else resolve({ reply: res!.toString(), fingerprint: call.getAuthContext()?.sslPeerCertificate?.fingerprint256 });
    });
  });
}

async function echoOnce(port: number, creds: ClientTls, text = "ping"): Promise<{ reply: string; fingerprint: string | undefined }> {
  const c = grpcClient(port, creds);
  try {
    return await echo(c, text);
  } finally {
    c.close();
  }
}

/** A bidirectional stream: say() writes a message and resolves with its echo. */
function openChat(c: EchoClientT): { say(text: string): Promise<string>; end(): void } {
  const stream = c.Chat();
  const waiting: Array<{ resolve(s: string): void; reject(e: Error): void }> = [];
  stream.on("data", (d: Buffer) => waiting.shift()?.resolve(d.toString()));
  stream.on("error", (e: Error) => {
    for (const w of waiting.splice(0)) w.reject(e);
  });
  return {
    say: (text) =>
      new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        stream.write(Buffer.from(text));
      }),
    end: () => stream.end(),
  };
}

// ---- tests -----------------------------------------------------------------------------------

describe("TLS configuration", () => {
  it("takes TLS_CERT_FILE and TLS_KEY_FILE together or not at all", () => {
    expect(tlsFilesFromEnv({})).toBeUndefined();
    expect(tlsFilesFromEnv({ TLS_CERT_FILE: "/c", TLS_KEY_FILE: "/k" })).toEqual({ certFile: "/c", keyFile: "/k" });
    expect(tlsFilesFromEnv({ TLS_CERT_FILE: "/c", TLS_KEY_FILE: "/k", TLS_CLIENT_CA_FILE: "/ca" })).toEqual({
      certFile: "/c",
      keyFile: "/k",
      clientCaFile: "/ca",
    });
    expect(() => tlsFilesFromEnv({ TLS_CERT_FILE: "/c" })).toThrow(
      "TLS_CERT_FILE is set without TLS_KEY_FILE: set both (or neither, for plaintext)",
    );
    expect(() => tlsFilesFromEnv({ TLS_KEY_FILE: "/k", TLS_CERT_FILE: " " })).toThrow("TLS_KEY_FILE is set without TLS_CERT_FILE");
    expect(() => tlsFilesFromEnv({ TLS_CLIENT_CA_FILE: "/ca" })).toThrow(
      "TLS_CLIENT_CA_FILE is set without TLS_CERT_FILE and TLS_KEY_FILE",
    );
  });

  it("loads a valid certificate, key and client CA", () => {
    const m = loadTlsMaterial({ certFile: server1.cert, keyFile: server1.key, clientCaFile: ca.cert });
    expect(m.fingerprint256).toBe(fingerprint(server1));
    expect(m.ca?.equals(readFileSync(ca.cert))).toBe(true);
    expect(m.notAfter.getTime()).toBeGreaterThan(Date.now());
  });

  it.each([
    [
      "an unreadable certificate",
      () => ({ certFile: "/nonexistent/server.crt", keyFile: server1.key }),
      "TLS_CERT_FILE /nonexistent/server.crt: cannot read it (ENOENT)",
    ],
    [
      "an unreadable key",
      () => ({ certFile: server1.cert, keyFile: "/nonexistent/server.key" }),
      "TLS_KEY_FILE /nonexistent/server.key: cannot read it (ENOENT)",
    ],
    [
      "an unreadable client CA",
      () => ({ certFile: server1.cert, keyFile: server1.key, clientCaFile: "/nonexistent/ca.crt" }),
      "TLS_CLIENT_CA_FILE /nonexistent/ca.crt: cannot read it (ENOENT)",
    ],
    ["a key in place of the certificate", () => ({ certFile: server1.key, keyFile: server1.key }), "no PEM certificate in it"],
    ["a certificate in place of the key", () => ({ certFile: server1.cert, keyFile: server1.cert }), "not an unencrypted PEM private key"],
    [
      "the key of another certificate",
      () => ({ certFile: server1.cert, keyFile: server2.key }),
      "is not the private key of the certificate in TLS_CERT_FILE",
    ],
    ["an expired certificate", () => ({ certFile: expiredServer.cert, keyFile: expiredServer.key }), "the certificate expired on"],
    [
      "a client CA file without a certificate",
      () => ({ certFile: server1.cert, keyFile: server1.key, clientCaFile: ca.key }),
      "TLS_CLIENT_CA_FILE",
    ],
  ])("refuses %s, naming the file and the problem", (_name, files, message) => {
    const f = files();
    expect(() => loadTlsMaterial(f)).toThrow(message);
  });

  it("on reload keeps the previous material when the new files do not validate", async () => {
    const live = new LiveFiles(server1);
    const lines: string[] = [];
    const w = TlsWatcher.open(live.files, { log: createLogger("info", (l) => lines.push(l)) });
    try {
      copyFileSync(server2.cert, live.files.certFile); // the new certificate with the old key
      expect(await w.reload()).toBe(false);
      expect(w.current.fingerprint256).toBe(fingerprint(server1));
      expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>)).toContainEqual(
        expect.objectContaining({
          level: "error",
          msg: "TLS files rejected; keeping the previous certificate",
          error: expect.stringContaining("is not the private key"),
        }),
      );
      copyFileSync(server2.key, live.files.keyFile); // and now its key
      expect(await w.reload()).toBe(true);
      expect(w.current.fingerprint256).toBe(fingerprint(server2));
      expect(await w.reload()).toBe(false); // unchanged
    } finally {
      w.close();
      live.cleanup();
    }
  });
});

describe("HTTP port over TLS (node http2 secure server)", () => {
  let live: LiveFiles;
  let w: TlsWatcher;
  let http: HttpHandle;

  beforeEach(async () => {
    live = new LiveFiles(server1);
    w = TlsWatcher.open(live.files, { log: silent, debounceMs: 50, pollMs: 200 }).start();
    http = await startHttp(w);
  });
  afterEach(async () => {
    await http.close();
    w.close();
    live.cleanup();
  });

  it("serves HTTP/2 and HTTP/1.1 by ALPN to clients trusting the CA", async () => {
    expect(await h2GetOnce(http.port, trust(ca))).toBe("hello over HTTP/2.0");
    expect(await http1Get(http.port, trust(ca))).toBe("hello over HTTP/1.1");
  });

  it("fails the handshake of a client trusting another CA", async () => {
    await expect(h2GetOnce(http.port, trust(otherCa))).rejects.toMatchObject({ code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" });
  });

  it("serves a certificate rotated on disk to new connections while an open connection goes on", async () => {
    const open = await h2Connect(http.port, trust(ca));
    try {
      expect(await h2Get(open)).toBe("hello over HTTP/2.0");
      const oldSocketCert = (open.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
      expect(oldSocketCert).toBe(fingerprint(server1));

      const changed = nextChange(w, fingerprint(server2));
      live.install(server2);
      await changed;

      expect(await servedFingerprint(http.port, trust(ca))).toBe(fingerprint(server2));
      expect(await h2GetOnce(http.port, trust(ca))).toBe("hello over HTTP/2.0");
      // The connection opened before the rotation still works on its original handshake.
      expect(await h2Get(open)).toBe("hello over HTTP/2.0");
      expect(open.closed || open.destroyed).toBe(false);
    } finally {
      open.destroy();
    }
  });

  it("rotates to a certificate of another CA (clients must then trust that CA)", async () => {
    const changed = nextChange(w, fingerprint(otherServer));
    // Written by rename, as editors and Kubernetes secret updates do.
    copyFileSync(otherServer.key, join(live.dir, "new.key"));
    copyFileSync(otherServer.cert, join(live.dir, "new.crt"));
    renameSync(join(live.dir, "new.key"), live.files.keyFile);
    renameSync(join(live.dir, "new.crt"), live.files.certFile);
    await changed;
    expect(await h2GetOnce(http.port, trust(otherCa))).toBe("hello over HTTP/2.0");
    await expect(h2GetOnce(http.port, trust(ca))).rejects.toMatchObject({ code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" });
  });

  it("keeps serving the previous certificate when a malformed one is written", async () => {
    const rejected = new Promise<Error>((resolve) => {
      const off = w.onReject((e) => {
        off();
        resolve(e);
      });
    });
    writeFileSync(live.files.certFile, "-----BEGIN CERTIFICATE-----\ntruncated");
    expect((await rejected).message).toContain(`TLS_CERT_FILE ${live.files.certFile}: no PEM certificate in it`);
    expect(await servedFingerprint(http.port, trust(ca))).toBe(fingerprint(server1));
    expect(await h2GetOnce(http.port, trust(ca))).toBe("hello over HTTP/2.0");
  });
});

describe("HTTP port with mTLS", () => {
  let live: LiveFiles;
  let w: TlsWatcher;
  let http: HttpHandle;

  beforeEach(async () => {
    live = new LiveFiles(server1, ca);
    w = TlsWatcher.open(live.files, { log: silent, debounceMs: 50, pollMs: 200 }).start();
    http = await startHttp(w);
  });
  afterEach(async () => {
    await http.close();
    w.close();
    live.cleanup();
  });

  it("serves a client certificate signed by TLS_CLIENT_CA_FILE, over HTTP/2 and HTTP/1.1", async () => {
    expect(await h2GetOnce(http.port, trust(ca, client))).toBe("hello over HTTP/2.0");
    expect(await http1Get(http.port, trust(ca, client))).toBe("hello over HTTP/1.1");
  });

  it.each([
    ["no client certificate", () => trust(ca)],
    ["a client certificate from another CA", () => trust(ca, otherClient)],
    ["an expired client certificate", () => trust(ca, expiredClient)],
  ])("refuses %s", async (_name, creds) => {
    await expect(h2GetOnce(http.port, creds())).rejects.toThrow();
    await expect(http1Get(http.port, creds())).rejects.toThrow();
  });

  it("accepts the clients of a client CA rotated on disk on new connections", async () => {
    const changed = new Promise<TlsMaterial>((resolve) => {
      const off = w.onChange((m) => {
        off();
        resolve(m);
      });
    });
    copyFileSync(otherCa.cert, live.files.clientCaFile!);
    expect((await changed).ca?.equals(readFileSync(otherCa.cert))).toBe(true);
    expect(await h2GetOnce(http.port, trust(ca, otherClient))).toBe("hello over HTTP/2.0");
    await expect(h2GetOnce(http.port, trust(ca, client))).rejects.toThrow();
  });
});

describe.each([
  ["bound by grpc-js", startGrpc],
  ["through a connection injector", startGrpcInjected],
])("gRPC port over TLS (grpc-js, %s)", (_name, start) => {
  let live: LiveFiles;
  let w: TlsWatcher;
  let g: GrpcHandle;

  beforeEach(async () => {
    live = new LiveFiles(server1);
    w = TlsWatcher.open(live.files, { log: silent, debounceMs: 50, pollMs: 200 }).start();
    g = await start(w);
  });
  afterEach(() => {
    g.close();
    w.close();
    live.cleanup();
  });

  it("serves a grpc-js client trusting the CA", async () => {
    expect(await echoOnce(g.port, trust(ca))).toEqual({ reply: "ping", fingerprint: fingerprint(server1) });
  });

  it("fails a client trusting another CA with UNAVAILABLE", async () => {
    await expect(echoOnce(g.port, trust(otherCa))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it("serves a rotated certificate to new connections while an open stream and channel go on", async () => {
    const c = grpcClient(g.port, trust(ca));
    const chat = openChat(c);
    try {
      expect(await chat.say("before")).toBe("before");
      expect((await echo(c, "unary before")).fingerprint).toBe(fingerprint(server1));

      const changed = nextChange(w, fingerprint(server2));
      live.install(server2);
      await changed;

      expect(await servedFingerprint(g.port, trust(ca))).toBe(fingerprint(server2));
      expect(await echoOnce(g.port, trust(ca))).toEqual({ reply: "ping", fingerprint: fingerprint(server2) });
      // The stream and the channel opened before the rotation keep their connection.
      expect(await chat.say("after")).toBe("after");
      expect(await echo(c, "unary after")).toEqual({ reply: "unary after", fingerprint: fingerprint(server1) });
    } finally {
      chat.end();
      c.close();
    }
  });
  it("fails no call while the certificate rotates under calls on new and open connections", async () => {
    const shared = grpcClient(g.port, trust(ca));
    const failures: unknown[] = [];
    const seen = new Set<string | undefined>();
    let rotated = false;
    let callsAfter = 0;
    // Each loop calls until 10 calls have completed after the rotation was installed.
    const loop = async (fresh: boolean): Promise<void> => {
      while (!rotated || callsAfter < 10) {
        try {
          const r = fresh ? await echoOnce(g.port, trust(ca)) : await echo(shared, "x");
          if (fresh) seen.add(r.fingerprint);
        } catch (err) {
          failures.push(err);
        }
        if (rotated) callsAfter++;
      }
    };
    try {
      const loops = [loop(true), loop(true), loop(false)];
      const changed = nextChange(w, fingerprint(server2));
      live.install(server2);
      await changed;
      rotated = true;
      await Promise.all(loops);
      expect(failures).toEqual([]);
      expect(seen).toContain(fingerprint(server2));
    } finally {
      shared.close();
    }
  });
});

describe("gRPC port with mTLS (grpc-js)", () => {
  let live: LiveFiles;
  let w: TlsWatcher;
  let g: GrpcHandle;

  beforeEach(async () => {
    live = new LiveFiles(server1, ca);
    w = TlsWatcher.open(live.files, { log: silent, debounceMs: 50, pollMs: 200 }).start();
    g = await startGrpc(w);
  });
  afterEach(() => {
    g.close();
    w.close();
    live.cleanup();
  });

  it("serves a client certificate signed by TLS_CLIENT_CA_FILE", async () => {
    expect(await echoOnce(g.port, trust(ca, client))).toEqual({ reply: "ping", fingerprint: fingerprint(server1) });
  });

  it.each([
    ["no client certificate", () => trust(ca)],
    ["a client certificate from another CA", () => trust(ca, otherClient)],
    ["an expired client certificate", () => trust(ca, expiredClient)],
  ])("refuses %s with UNAVAILABLE", async (_name, creds) => {
    await expect(echoOnce(g.port, creds())).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it("rotates the server certificate and the client CA for new connections", async () => {
    const open = grpcClient(g.port, trust(ca, client));
    try {
      expect((await echo(open, "x")).reply).toBe("x");
      const changed = nextChange(w, fingerprint(server2), otherCa);
      live.install(server2, otherCa);
      await changed;
      expect(await echoOnce(g.port, trust(ca, otherClient))).toEqual({ reply: "ping", fingerprint: fingerprint(server2) });
      await expect(echoOnce(g.port, trust(ca, client))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
      // The channel authenticated under the previous CA keeps its connection.
      expect(await echo(open, "still here")).toEqual({ reply: "still here", fingerprint: fingerprint(server1) });
    } finally {
      open.close();
    }
  });
});
