// The HTTP engine: connect-node serving the Connect protocol (curl + JSON) and gRPC-Web
// (browsers) over HTTP/1.1, with CORS for browser origins. Same handlers as the gRPC port.

import * as http from "node:http";
import { ConnectError, cors, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import type { Logger } from "../log";
import type { UnaryHandler } from "./grpc-server";
import { toRpcStatus } from "./status";

function callContext(ctx: HandlerContext) {
  const timeout = ctx.timeoutMs();
  return { signal: ctx.signal, deadline: timeout === undefined ? undefined : new Date(Date.now() + timeout) };
}

export interface HttpServiceOptions {
  service: DescService;
  handlers: Record<string, UnaryHandler>;
  log: Logger;
  readMaxBytes: number;
  /** Allowed browser origins ("*" for any). */
  corsOrigins: string[];
}

export function createHttpServer(options: HttpServiceOptions): http.Server {
  const { service, handlers, log } = options;
  const impl: Record<string, (req: unknown, ctx: HandlerContext) => Promise<unknown>> = {};
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    if (method.methodKind !== "unary" || !handler) continue;
    const rpcName = `${service.typeName}/${method.name}`;
    impl[method.localName] = async (req, ctx) => {
      try {
        return await handler(req, callContext(ctx));
      } catch (err) {
        const status = toRpcStatus(err, log, rpcName);
        throw new ConnectError(status.message, status.code, undefined, status.details);
      }
    };
  }
  const adapter = connectNodeAdapter({
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    routes: (router) => router.service(service, impl as any),
    readMaxBytes: options.readMaxBytes,
  });
  const allowAny = options.corsOrigins.includes("*");
  return http.createServer((req, res) => {
    const origin = req.headers.origin;
    if (origin && (allowAny || options.corsOrigins.includes(origin))) {
      res.setHeader("Access-Control-Allow-Origin", allowAny ? "*" : origin);
      res.setHeader("Access-Control-Expose-Headers", cors.exposedHeaders.join(", "));
      if (req.method === "OPTIONS") {
        res.setHeader("Access-Control-Allow-Methods", cors.allowedMethods.join(", "));
        res.setHeader("Access-Control-Allow-Headers", cors.allowedHeaders.join(", "));
        res.setHeader("Access-Control-Max-Age", "7200");
        res.writeHead(204).end();
        return;
      }
    }
    adapter(req, res);
  });
}
