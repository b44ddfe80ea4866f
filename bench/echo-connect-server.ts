// Bare connect-node echo server over HTTP/2 cleartext (gRPC protocol, as ghz speaks it):
// connectNodeAdapter on http2.createServer, answering CreateSession with a
// CreateSessionResponse that holds the request's session. Measured with the same client as the
// grpc-js echo server: this is the engine-choice measurement.

import * as http2 from "node:http2";
import { create } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { CreateSessionResponseSchema, SessionService } from "../gen/session/v1/session_service_pb";
import { runChild } from "./child";

runChild("echo-connect-server", async () => {
  const adapter = connectNodeAdapter({
    routes: (router) =>
      router.rpc(SessionService.method.createSession, async (req) => create(CreateSessionResponseSchema, { session: req.session })),
  });
  const server = http2.createServer(adapter);
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      const addr = server.address();
      resolve(typeof addr === "object" && addr ? addr.port : 0);
    });
  });
  const sessions = new Set<http2.Http2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sessions) s.close();
      }),
  };
});
