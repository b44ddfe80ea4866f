// The HTTP engine: connect-node serving the Connect protocol (curl + JSON) and gRPC-Web
// (browsers) over HTTP/1.1, with CORS for browser origins. Same handlers as the gRPC port.

import * as http from "node:http";
import { Code, ConnectError, createConnectRouter, cors, type HandlerContext } from "@connectrpc/connect";
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import type { Logger } from "../log";
import { ShuttingDownError } from "../domain/errors";
import type { Handler, StreamHandler, UnaryHandler } from "./grpc-server";
import { toRpcStatus } from "./status";

function callContext(ctx: HandlerContext, shutdown: AbortSignal) {
  const timeout = ctx.timeoutMs();
  return { signal: AbortSignal.any([ctx.signal, shutdown]), deadline: timeout === undefined ? undefined : new Date(Date.now() + timeout) };
}

export interface HttpServiceOptions {
  service: DescService;
  handlers: Record<string, Handler>;
  log: Logger;
  readMaxBytes: number;
  /** Allowed browser origins ("*" for any). */
  corsOrigins: string[];
  /** Aborts when the server shuts down: open streams end with UNAVAILABLE. */
  shutdown: AbortSignal;
}

export function createHttpServer(options: HttpServiceOptions): http.Server {
  const { service, handlers, log } = options;
  const { shutdown } = options;
  const impl: Record<string, unknown> = {};
  const toConnectError = (err: unknown, rpcName: string): ConnectError => {
    const status = toRpcStatus(err, log, rpcName);
    return new ConnectError(status.message, status.code, undefined, status.details);
  };
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    if (!handler) continue;
    const rpcName = `${service.typeName}/${method.name}`;
    if (method.methodKind === "unary") {
      impl[method.localName] = async (req: unknown, ctx: HandlerContext) => {
        try {
          return await (handler as UnaryHandler)(req, callContext(ctx, shutdown));
        } catch (err) {
          throw toConnectError(err, rpcName);
        }
      };
    } else if (method.methodKind === "server_streaming") {
      // connect-node waits for the socket at each yield: backpressure without buffering. After a
      // client disconnects it may never resume this generator, so the inner stream is ended
      // from the abort signal: the watcher's resources are freed whatever connect-node does.
      impl[method.localName] = async function* (req: unknown, ctx: HandlerContext) {
        const call = callContext(ctx, shutdown);
        const inner = (handler as StreamHandler)(req, call)[Symbol.asyncIterator]();
        const end = (): void => void inner.return?.(undefined).catch(() => undefined);
        call.signal.addEventListener("abort", end, { once: true });
        try {
          for (;;) {
            const next = await inner.next();
            if (next.done) break;
            yield next.value;
          }
        } catch (err) {
          throw toConnectError(err, rpcName);
        } finally {
          call.signal.removeEventListener("abort", end);
          end();
        }
        if (shutdown.aborted && !ctx.signal.aborted) throw toConnectError(new ShuttingDownError(), rpcName);
      };
    }
  }
  // The router and request/response plumbing of connect-node, dispatched here rather than with
  // connectNodeAdapter, which reports a failed response with console.error: a client that
  // disconnects while its stream is written is routine for watches, and our logs are JSON lines.
  const router = createConnectRouter({ readMaxBytes: options.readMaxBytes });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  router.service(service, impl as any);
  const routes = new Map(router.handlers.map((h) => [h.requestPath, h]));
  const adapter = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const handler = routes.get(req.url?.split("?", 2)[0] ?? "");
    if (!handler) {
      res.writeHead(404).end();
      return;
    }
    handler(universalRequestFromNodeRequest(req, res, undefined, undefined))
      .then((uRes) => universalResponseToNodeResponse(uRes, res))
      .catch((reason: unknown) => {
        const err = ConnectError.from(reason);
        const gone = err.code === Code.Aborted || res.destroyed || req.destroyed;
        const fields = { method: `${handler.service.typeName}/${handler.method.name}`, error: err.message };
        if (gone) log.debug("client went away while the response was written", fields);
        else log.error("writing a response failed", fields);
      });
  };
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
