// Clients in other languages, generated from proto/ by their own standard tools: the Python
// (grpcio) and Go (grpc-go) examples run their scenario (create, masked update, get, list, a
// watch that sees the update, error details) as child processes against a real server; and
// their committed generated code is exactly what scripts/clients.sh generates.

import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { secretSha256 } from "../../src/security/keys";
import { TestCertificates, type CertFiles } from "../support/certs";
import { startTestServer, type TestServer } from "../support/server";
import { ROOT, describeRun, run } from "../support/tools";

const CLIENTS = join(ROOT, "scripts", "clients.sh");
const GENERATED = ["examples/python/gen", "examples/go/gen"];

function listFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (name === "__pycache__") return [];
    return statSync(p).isDirectory() ? listFiles(p) : [p];
  });
}

beforeAll(async () => {
  // Installs grpcio/grpcio-tools (virtualenv) and the Go plugins into the tool cache, once.
  const r = await run("bash", [CLIENTS, "setup"], { timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(describeRun("scripts/clients.sh setup", r));
}, 600_000);

describe("generated client code", () => {
  it("is what scripts/clients.sh generate makes from proto/", async () => {
    const out = mkdtempSync(join(tmpdir(), "clients-gen-"));
    try {
      const r = await run("bash", [CLIENTS, "generate", out], { timeoutMs: 120_000 });
      if (r.code !== 0) throw new Error(describeRun("scripts/clients.sh generate", r));
      for (const dir of GENERATED) {
        const fresh = listFiles(join(out, dir))
          .map((p) => relative(join(out, dir), p))
          .sort();
        const committed = listFiles(join(ROOT, dir))
          .map((p) => relative(join(ROOT, dir), p))
          .sort();
        expect({ dir, files: committed }).toEqual({ dir, files: fresh });
        expect(fresh.length).toBeGreaterThanOrEqual(3);
        for (const file of fresh) {
          expect({ file: join(dir, file), text: readFileSync(join(ROOT, dir, file), "utf8") }).toEqual({
            file: join(dir, file),
            text: readFileSync(join(out, dir, file), "utf8"),
          });
        }
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 180_000);
});

describe("example clients against a server on the embedded store", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer("sqlite");
  });
  afterAll(async () => {
    await server.close();
    await server.cleanup();
  });

  it.each([
    ["python", "python client: all checks passed"],
    ["go", "go client: all checks passed"],
  ])(
    "the %s client passes its scenario",
    async (language, passed) => {
      const r = await run("bash", [CLIENTS, language, `127.0.0.1:${server.grpcPort}`], { timeoutMs: 300_000 });
      if (r.code !== 0) throw new Error(describeRun(`scripts/clients.sh ${language}`, r));
      expect(r.stdout).toMatch(/^created [0-9a-f-]{36} \(revision \d+, iOS Mobile Safari\)$/m);
      expect(r.stdout).toMatch(/^watch saw CHANGE_KIND_UPDATED at revision \d+$/m);
      expect(r.stdout.trim().split("\n").pop()).toBe(passed);
    },
    300_000,
  );
});

describe("example clients over TLS with an API key, and over mTLS (issue 11)", () => {
  let certs: TestCertificates;
  let ca: CertFiles;
  let client: CertFiles;
  let keysFile: string;
  let tlsServer: TestServer;
  let mtlsServer: TestServer;
  const SECRET = "example-client-s3cret";

  beforeAll(async () => {
    certs = new TestCertificates();
    ca = certs.ca("Clients CA");
    const server = certs.server(ca);
    client = certs.client(ca, "example-client");
    keysFile = join(certs.dir, "keys.json");
    // The scenario creates, updates, reads, lists and watches: these scopes, not "*".
    writeFileSync(
      keysFile,
      JSON.stringify({
        keys: [{ id: "examples", sha256: secretSha256(SECRET), scopes: ["sessions.read", "sessions.write", "sessions.watch"] }],
      }),
    );
    const env = { TLS_CERT_FILE: server.cert, TLS_KEY_FILE: server.key, AUTH_KEYS_FILE: keysFile };
    tlsServer = await startTestServer("sqlite", env);
    mtlsServer = await startTestServer("sqlite", { ...env, TLS_CLIENT_CA_FILE: ca.cert });
  });
  afterAll(async () => {
    for (const s of [tlsServer, mtlsServer]) {
      await s?.close();
      await s?.cleanup();
    }
    certs?.cleanup();
  });

  const scenario = (language: string, args: string[], env: NodeJS.ProcessEnv = process.env) =>
    run("bash", [CLIENTS, language, ...args], { timeoutMs: 300_000, env });

  it.each([["python"], ["go"]])(
    "the %s client passes its scenario over TLS with a key, and over mTLS with a client certificate",
    async (language) => {
      const passed = `${language} client: all checks passed`;
      const overTls = await scenario(language, ["--cacert", ca.cert, `localhost:${tlsServer.grpcPort}`], {
        ...process.env,
        SESSION_API_KEY: SECRET,
      });
      if (overTls.code !== 0) throw new Error(describeRun(`scripts/clients.sh ${language} over TLS`, overTls));
      expect(overTls.stdout.trim().split("\n").pop()).toBe(passed);
      const overMtls = await scenario(language, [
        "--cacert",
        ca.cert,
        "--cert",
        client.cert,
        "--key",
        client.key,
        "--api-key",
        SECRET,
        `localhost:${mtlsServer.grpcPort}`,
      ]);
      if (overMtls.code !== 0) throw new Error(describeRun(`scripts/clients.sh ${language} over mTLS`, overMtls));
      expect(overMtls.stdout.trim().split("\n").pop()).toBe(passed);
      // The same run without the key fails at its first call, UNAUTHENTICATED.
      const withoutKey = await scenario(language, ["--cacert", ca.cert, `localhost:${tlsServer.grpcPort}`]);
      expect(withoutKey.code).not.toBe(0);
      expect(withoutKey.stdout + withoutKey.stderr).toMatch(/UNAUTHENTICATED|Unauthenticated/);
    },
    300_000,
  );
});
