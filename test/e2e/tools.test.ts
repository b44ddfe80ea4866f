// The service with the tools its users already have, run as real processes against a real
// server on free ports: grpcurl through server reflection (no .proto files), the health service,
// plain curl over the Connect protocol; and health following the database (FerretDB stopped and
// restarted).

import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { loadConfig } from "../../src/config";
import { createLogger } from "../../src/log";
import { descriptorRegistry } from "../../src/rpc/reflection";
import { startServer, type RunningServer } from "../../src/server";
import { startFerret, uniqueDatabaseName, type FerretProcess } from "../support/mongo";
import { startTestServer, type TestServer } from "../support/server";
import { describeRun, eventually, run, spawnStreaming, tool, type RunResult } from "../support/tools";

const IPHONE_UA =
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";

let grpcurlBin: string;
beforeAll(() => {
  grpcurlBin = tool("grpcurl");
}, 600_000);

/** `grpcurl -plaintext [flags] 127.0.0.1:port [args]` */
function grpcurl(port: number, args: string[], flags: string[] = []): Promise<RunResult> {
  return run(grpcurlBin, ["-plaintext", "-max-time", "10", ...flags, `127.0.0.1:${port}`, ...args]);
}

/** A call with a JSON request body. */
function grpcurlCall(port: number, body: unknown, method: string): Promise<RunResult> {
  return grpcurl(port, [method], ["-d", JSON.stringify(body)]);
}

function expectOk(r: RunResult, what: string): void {
  if (r.code !== 0) throw new Error(describeRun(what, r));
}

async function healthStatus(port: number, service = ""): Promise<string> {
  const r = await grpcurlCall(port, { service }, "grpc.health.v1.Health/Check");
  expectOk(r, "grpcurl Health/Check");
  return (JSON.parse(r.stdout) as { status: string }).status;
}

describe("grpcurl, curl and health against a server on the embedded store", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer("sqlite");
  });
  afterAll(async () => {
    await server.close();
    await server.cleanup();
  });

  it("lists the session, health and reflection services through reflection", async () => {
    const r = await grpcurl(server.grpcPort, ["list"]);
    expectOk(r, "grpcurl list");
    expect(r.stdout.trim().split("\n").sort()).toEqual([
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "session.v1.SessionService",
    ]);
    const methods = await grpcurl(server.grpcPort, ["list", "session.v1.SessionService"]);
    expectOk(methods, "grpcurl list session.v1.SessionService");
    expect(methods.stdout.trim().split("\n")).toEqual(
      expect.arrayContaining([
        "session.v1.SessionService.CreateSession",
        "session.v1.SessionService.ListSessions",
        "session.v1.SessionService.WatchSessions",
      ]),
    );
  });

  it("describes messages and services with their proto comments", async () => {
    const session = await grpcurl(server.grpcPort, ["describe", "session.v1.Session"]);
    expectOk(session, "grpcurl describe session.v1.Session");
    expect(session.stdout).toContain("session.v1.Session is a message:");
    expect(session.stdout).toContain("// Session is one visit of a user to a site or app");
    expect(session.stdout).toMatch(
      /\/\/ Unique identifier of the session; the server makes a UUID when a create leaves it empty\.\n\s*string id = 1;/,
    );
    expect(session.stdout).toMatch(
      /\/\/ Output only\. Store-wide increasing number stamped on every change of this session;[^\n]*\n[^\n]*\n\s*int64 revision = 13;/,
    );

    const service = await grpcurl(server.grpcPort, ["describe", "session.v1.SessionService"]);
    expectOk(service, "grpcurl describe session.v1.SessionService");
    expect(service.stdout).toContain("// Returns one session by id; NOT_FOUND when absent.");
    expect(service.stdout).toContain(
      "rpc WatchSessions ( .session.v1.WatchSessionsRequest ) returns ( stream .session.v1.WatchSessionsResponse );",
    );

    // The error detail types resolve too (grpcurl prints details instead of "not recognized").
    const bad = await grpcurl(server.grpcPort, ["describe", "google.rpc.BadRequest.FieldViolation"]);
    expectOk(bad, "grpcurl describe google.rpc.BadRequest.FieldViolation");
    expect(bad.stdout).toContain("string field = 1;");
  });

  it("creates a session from a JSON request", async () => {
    const r = await grpcurlCall(
      server.grpcPort,
      { userAgent: IPHONE_UA, pageUrl: "https://shop.example/?utm_source=news", session: { profile: { id: "p-grpcurl" } } },
      "session.v1.SessionService/CreateSession",
    );
    expectOk(r, "grpcurl CreateSession");
    const { session } = JSON.parse(r.stdout) as {
      session: { id: string; os: { name: string }; utm: { source: string }; revision: string };
    };
    expect(session.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(session.os.name).toBe("iOS");
    expect(session.utm.source).toBe("news");
    expect(Number(session.revision)).toBeGreaterThan(0);

    const got = await grpcurlCall(server.grpcPort, { id: session.id }, "session.v1.SessionService/GetSession");
    expectOk(got, "grpcurl GetSession");
    expect((JSON.parse(got.stdout) as { session: { id: string } }).session.id).toBe(session.id);
  });

  it("prints the BadRequest field violation of an invalid request", async () => {
    const r = await grpcurlCall(server.grpcPort, { session: { id: "has space" } }, "session.v1.SessionService/CreateSession");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("Code: InvalidArgument");
    expect(r.stderr).toContain('"@type": "type.googleapis.com/google.rpc.ErrorInfo"');
    expect(r.stderr).toContain('"domain": "session.v1"');
    expect(r.stderr).toContain('"@type": "type.googleapis.com/google.rpc.BadRequest"');
    expect(r.stderr).toMatch(/"fieldViolations": \[\s*\{\s*"field": "session\.id"/);
    expect(r.stderr).not.toContain("not recognized");
  });

  it("answers health checks for the server and the session service", async () => {
    expect(await healthStatus(server.grpcPort)).toBe("SERVING");
    expect(await healthStatus(server.grpcPort, "session.v1.SessionService")).toBe("SERVING");
    const unknown = await grpcurlCall(server.grpcPort, { service: "no.such.Service" }, "grpc.health.v1.Health/Check");
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain("Code: NotFound");
    const list = await grpcurl(server.grpcPort, ["grpc.health.v1.Health/List"]);
    expectOk(list, "grpcurl Health/List");
    expect(JSON.parse(list.stdout)).toEqual({
      statuses: { "": { status: "SERVING" }, "session.v1.SessionService": { status: "SERVING" } },
    });
    // Watch of an unknown service: SERVICE_UNKNOWN, and the stream stays open.
    const watch = spawnStreaming(grpcurlBin, [
      "-plaintext",
      "-d",
      '{"service": "no.such.Service"}',
      `127.0.0.1:${server.grpcPort}`,
      "grpc.health.v1.Health/Watch",
    ]);
    try {
      await watch.waitFor((out) => out.includes('"status": "SERVICE_UNKNOWN"'), 10_000, "health watch: SERVICE_UNKNOWN");
      expect(watch.child.exitCode).toBeNull();
    } finally {
      await watch.stop();
    }
  });

  it("serves grpc.reflection.v1alpha as well as v1", async () => {
    // grpcurl uses v1; older tools use v1alpha: ask it directly, with a plain grpc-js client.
    const registry = descriptorRegistry();
    const Req = registry.getMessage("grpc.reflection.v1alpha.ServerReflectionRequest")!;
    const Res = registry.getMessage("grpc.reflection.v1alpha.ServerReflectionResponse")!;
    const client = new grpc.Client(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
    try {
      const call = client.makeBidiStreamRequest(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        (m: MessageShape<DescMessage>) => Buffer.from(toBinary(Req, m)),
        (b: Buffer) => fromBinary(Res, b),
      );
      const responses: Array<Record<string, unknown>> = [];
      const done = new Promise<void>((resolve, reject) => {
        call.on("data", (m: Record<string, unknown>) => responses.push(m));
        call.on("error", reject);
        call.on("end", resolve);
      });
      call.write(create(Req, { messageRequest: { case: "listServices", value: "*" } }));
      call.write(create(Req, { messageRequest: { case: "fileContainingSymbol", value: "session.v1.Session" } }));
      call.write(create(Req, { messageRequest: { case: "fileContainingSymbol", value: "no.such.Symbol" } }));
      call.end();
      await done;
      expect(responses).toHaveLength(3);
      const [list, file, missing] = responses.map((r) => r.messageResponse as { case: string; value: Record<string, unknown> });
      expect(list!.case).toBe("listServicesResponse");
      expect((list!.value.service as Array<{ name: string }>).map((s) => s.name).sort()).toEqual([
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "session.v1.SessionService",
      ]);
      expect(file!.case).toBe("fileDescriptorResponse");
      const files = (file!.value.fileDescriptorProto as Uint8Array[]).map((b) => fromBinary(FileDescriptorProtoSchema, b));
      expect(files[0]!.name).toBe("session/v1/session.proto");
      expect(files.map((f) => f.name)).toEqual(expect.arrayContaining(["google/protobuf/struct.proto", "google/protobuf/timestamp.proto"]));
      const comments = files[0]!.sourceCodeInfo?.location.map((l) => l.leadingComments) ?? [];
      expect(comments).toContain(" Unique identifier of the session; the server makes a UUID when a create leaves it empty.\n");
      expect(missing!.case).toBe("errorResponse");
      expect(missing!.value.errorCode).toBe(grpc.status.NOT_FOUND);
    } finally {
      client.close();
    }
  });

  it("makes a unary call with plain curl and JSON over the Connect protocol", async () => {
    const url = `http://127.0.0.1:${server.httpPort}/session.v1.SessionService/CreateSession`;
    const ok = await run("curl", [
      "-sS",
      "--fail-with-body",
      "-X",
      "POST",
      url,
      "-H",
      "Content-Type: application/json",
      "-d",
      JSON.stringify({ userAgent: IPHONE_UA, session: { id: "curl-1", profile: { id: "p-curl" } } }),
    ]);
    expectOk(ok, "curl CreateSession");
    const { session } = JSON.parse(ok.stdout) as { session: { id: string; os: { name: string }; metadata: { status: string } } };
    expect(session).toMatchObject({ id: "curl-1", os: { name: "iOS" }, metadata: { status: "active" } });

    const bad = await run("curl", [
      "-sS",
      "-w",
      "\n%{http_code}",
      "-X",
      "POST",
      url,
      "-H",
      "Content-Type: application/json",
      "-d",
      '{"session": {"id": "has space"}}',
    ]);
    expectOk(bad, "curl CreateSession (invalid)");
    const [body, httpCode] = bad.stdout.split("\n");
    expect(httpCode).toBe("400");
    const error = JSON.parse(body!) as { code: string; details: Array<{ type: string }> };
    expect(error.code).toBe("invalid_argument");
    expect(error.details.map((d) => d.type)).toEqual(expect.arrayContaining(["google.rpc.ErrorInfo", "google.rpc.BadRequest"]));
  });
});

describe("health during shutdown", () => {
  it("tells watchers NOT_SERVING and ends their streams without holding the shutdown up", async () => {
    const server = await startTestServer("sqlite");
    const watch = spawnStreaming(grpcurlBin, [
      "-plaintext",
      "-d",
      '{"service": ""}',
      `127.0.0.1:${server.grpcPort}`,
      "grpc.health.v1.Health/Watch",
    ]);
    try {
      await watch.waitFor((out) => out.includes('"status": "SERVING"'), 10_000, "health watch: SERVING");
      const started = Date.now();
      await server.close();
      expect(Date.now() - started).toBeLessThan(server.config.shutdownGraceMs);
      await watch.waitFor((out) => out.includes('"status": "NOT_SERVING"'), 10_000, "health watch: NOT_SERVING");
      await new Promise<void>((resolve) => (watch.child.exitCode !== null ? resolve() : watch.child.once("close", () => resolve())));
      expect(watch.child.exitCode).toBe(0);
    } finally {
      await watch.stop();
      await server.close();
      await server.cleanup();
    }
  });
});

describe("health follows the database", () => {
  let ferret: FerretProcess;
  let server: RunningServer;
  beforeAll(async () => {
    ferret = await startFerret();
    const config = loadConfig({
      HOST: "127.0.0.1",
      GRPC_PORT: "0",
      HTTP_PORT: "0",
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
      MONGODB_URI: ferret.uri,
      MONGODB_DATABASE: uniqueDatabaseName("health"),
    });
    server = await startServer(config, createLogger(config.logLevel));
  }, 600_000);
  afterAll(async () => {
    await server?.close();
    await ferret?.dispose();
  });

  it("is NOT_SERVING while FerretDB is stopped and SERVING again once it is back", async () => {
    const port = server.grpcPort;
    expect(await healthStatus(port)).toBe("SERVING");
    const watch = spawnStreaming(grpcurlBin, [
      "-plaintext",
      "-d",
      '{"service": "session.v1.SessionService"}',
      `127.0.0.1:${port}`,
      "grpc.health.v1.Health/Watch",
    ]);
    try {
      await watch.waitFor((out) => out.includes('"status": "SERVING"'), 10_000, "health watch: SERVING");

      await ferret.stop();
      await eventually(async () => (await healthStatus(port)) === "NOT_SERVING", 20_000, "Check: NOT_SERVING after FerretDB stopped");
      expect(await healthStatus(port, "session.v1.SessionService")).toBe("NOT_SERVING");
      await watch.waitFor((out) => out.includes('"status": "NOT_SERVING"'), 10_000, "health watch: NOT_SERVING");

      await ferret.restart();
      await eventually(async () => (await healthStatus(port)) === "SERVING", 30_000, "Check: SERVING after FerretDB restarted");
      // The watch saw SERVING, NOT_SERVING, SERVING, in that order.
      await watch.waitFor((out) => (out.match(/"status": "[A-Z_]+"/g) ?? []).length >= 3, 10_000, "health watch: SERVING again");
      expect(watch.output().match(/"status": "[A-Z_]+"/g)).toEqual([
        '"status": "SERVING"',
        '"status": "NOT_SERVING"',
        '"status": "SERVING"',
      ]);
    } finally {
      await watch.stop();
    }
  }, 120_000);
});
