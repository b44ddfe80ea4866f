// Bare grpc-js echo server: the same method path (/session.v1.SessionService/CreateSession) and
// the same protobuf-es codecs as the real gRPC port (grpcDefinitions), answering a
// CreateSessionResponse that holds the request's session. No store, no enrichment, no
// validation: the engine's own cost, the baseline CreateSession is compared to.

import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import {
  CreateSessionResponseSchema,
  SessionService,
  type CreateSessionRequest,
  type CreateSessionResponse,
} from "../gen/session/v1/session_service_pb";
import { grpcDefinitions } from "../src/rpc/grpc-codec";
import { runChild } from "./child";

runChild("echo-grpc-server", async () => {
  const server = new grpc.Server();
  const all = grpcDefinitions(SessionService);
  const createSession: grpc.handleUnaryCall<CreateSessionRequest, CreateSessionResponse> = (call, callback) => {
    callback(null, create(CreateSessionResponseSchema, { session: call.request.session }));
  };
  server.addService({ createSession: all.createSession }, { createSession });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => server.forceShutdown(), 1000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
});
