// Request bytes that are not the method's request message get INVALID_ARGUMENT naming
// "request" on every protocol (grpc-js and connect-es would both answer INTERNAL by themselves).

import * as grpc from "@grpc/grpc-js";
import { startTestServer, type TestServer } from "../support/server";

const BAD = Buffer.from([0x0a, 0xff, 0xff]); // field 1, length-delimited, length past the end
const GOOD = Buffer.from([0x0a, 0x01, 0x78]); // GetSessionRequest{id: "x"}
const envelope = (payload: Buffer): Buffer => Buffer.concat([Buffer.from([0, 0, 0, 0, payload.length]), payload]);

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer("sqlite");
});
afterAll(async () => {
  await server.close();
  await server.cleanup();
});

describe("gRPC port", () => {
  let client: grpc.Client;
  const raw = (b: Buffer): Buffer => b;
  beforeAll(() => {
    client = new grpc.Client(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
  });
  afterAll(() => client.close());

  it.each(["GetSession", "CreateSession", "UpdateSession", "ListSessions", "GetSessionStats"])("%s: INVALID_ARGUMENT", async (method) => {
    const err = await new Promise<grpc.ServiceError>((resolve, reject) =>
      client.makeUnaryRequest(`/session.v1.SessionService/${method}`, raw, raw, BAD, (e) =>
        e ? resolve(e) : reject(new Error("succeeded")),
      ),
    );
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/^request: cannot be decoded/);
  });

  it("WatchSessions: INVALID_ARGUMENT", async () => {
    const stream = client.makeServerStreamRequest("/session.v1.SessionService/WatchSessions", raw, raw, BAD);
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      stream.on("data", () => undefined);
      stream.on("error", resolve);
    });
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe("HTTP port", () => {
  const post = (method: string, contentType: string, body: Buffer) =>
    fetch(`http://127.0.0.1:${server.httpPort}/session.v1.SessionService/${method}`, {
      method: "POST",
      headers: { "content-type": contentType },
      body,
    });

  it("Connect unary (application/proto): HTTP 400 invalid_argument with the field", async () => {
    const res = await post("GetSession", "application/proto", BAD);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe("invalid_argument");
    expect(body.message).toMatch(/^request: cannot be decoded/);
  });

  it("a valid binary request still reaches the handler", async () => {
    const res = await post("GetSession", "application/proto", GOOD);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { code: string }).code).toBe("not_found");
  });

  it("Connect streaming (application/connect+proto): the end message says invalid_argument", async () => {
    const res = await post("WatchSessions", "application/connect+proto", envelope(BAD));
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(bytes[0]).toBe(2); // end-of-stream envelope
    const end = JSON.parse(bytes.subarray(5).toString("utf8")) as { error: { code: string } };
    expect(end.error.code).toBe("invalid_argument");
  });

  it("gRPC-Web: grpc-status 3", async () => {
    const res = await post("GetSession", "application/grpc-web+proto", envelope(BAD));
    const text = Buffer.from(await res.arrayBuffer()).toString("latin1");
    expect(res.headers.get("grpc-status") ?? /grpc-status: ?(\d+)/.exec(text)?.[1]).toBe("3");
  });
});
