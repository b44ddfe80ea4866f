// The HTTP engine: connect-node serving the Connect protocol (curl + JSON) and gRPC-Web
// (browsers) over HTTP/1.1, with CORS for browser origins. Same handlers as the gRPC port.

import * as http from "node:http";
import * as http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import {
  Code,
  ConnectError,
  createConnectRouter,
  createContextKey,
  createContextValues,
  cors,
  type HandlerContext,
  type Interceptor,
} from "@connectrpc/connect";
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import type { Logger } from "../log";
import { InvalidArgumentError, ShuttingDownError } from "../domain/errors";
import { checkBinaryBody, DECODE_ERROR } from "./connect-decode";
import { checkHandlers, type Handler, type StreamHandler, type UnaryHandler } from "./grpc-server";
import type { CallContext } from "./handlers";
import { toRpcStatus } from "./status";
import { Admission } from "./admission";
import type { Dashboard } from "./dashboard";
import { CallGuard, refusedKey } from "./guard";
import { clientAddress } from "../security/rate-limit";
import { httpsServerOptions, followRotation, type TlsWatcher } from "../security/tls";

/** The client address of the request, put in the call's context values by the adapter. */
const CLIENT_ADDRESS = createContextKey<string>("unknown");

/** The headers a browser may send cross-origin: connect's, plus the API key. */
const ALLOWED_HEADERS = [...cors.allowedHeaders, "Authorization"].join(", ");

function callContext(ctx: HandlerContext, shutdown: AbortSignal) {
  const timeout = ctx.timeoutMs();
  return { signal: AbortSignal.any([ctx.signal, shutdown]), deadline: timeout === undefined ? undefined : new Date(Date.now() + timeout) };
}

export interface HttpServiceOptions {
  service: DescService;
  handlers: Record<string, Handler>;
  log: Logger;
  readMaxBytes: number;
  /** Allowed browser origins (["*"]: any, never with credentials; []: no cross-origin access). */
  corsOrigins: string[];
  /** Access checks, audit and key tracking of each call; default: every call allowed. */
  guard?: CallGuard;
  /** HTTP/2 and HTTP/1.1 over TLS (ALPN) from these files, following their rotation; undefined: plaintext HTTP/1.1. */
  tls?: TlsWatcher;
  /** Aborts when the server shuts down: open streams end with UNAVAILABLE. */
  shutdown: AbortSignal;
  /** The global limit of unary calls in flight, shared with the gRPC port. */
  admission?: Admission;
  /** Connection limits and timeouts (config.ts); node's defaults where unset. */
  limits?: HttpLimits;
  /** Around every call (the metrics); none by default. */
  interceptors?: Interceptor[];
  /** The static files served at `/` (the dashboard); none: 404. */
  dashboard?: Dashboard;
}

export interface HttpLimits {
  maxConnections: number;
  /** A request's headers must arrive within this (also: the first request on a new connection). */
  headersTimeoutMs: number;
  /** A whole request, headers and body, must arrive within this. */
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxHeaderBytes: number;
}

/** The HTTP port's server, plaintext (node:http) or TLS (node:http2 with HTTP/1.1), and its connection control. */
export interface HttpServer {
  server: http.Server | http2.Http2SecureServer;
  /** Closes connections with no request in flight (and asks HTTP/2 clients to go, GOAWAY); the others after their responses. */
  closeIdleConnections(): void;
  /** Closes every connection now. */
  closeAllConnections(): void;
}

export function createHttpServer(options: HttpServiceOptions): HttpServer {
  const { service, handlers, log } = options;
  const { shutdown } = options;
  const guard = options.guard ?? CallGuard.open();
  const authorizationOf = (ctx: HandlerContext): string | undefined => ctx.requestHeader.get("authorization") ?? undefined;
  const admission = options.admission ?? new Admission(Number.MAX_SAFE_INTEGER);
  const impl: Record<string, unknown> = {};
  const toConnectError = (err: unknown, rpcName: string): ConnectError => {
    const status = toRpcStatus(err, log, rpcName);
    return new ConnectError(status.message, status.code, undefined, status.details);
  };
  /** A request whose binary message did not decode (see connect-decode.ts): INVALID_ARGUMENT. */
  const rejectUndecodable = (ctx: HandlerContext, rpcName: string): void => {
    const reason = ctx.values.get(DECODE_ERROR);
    if (reason !== undefined) {
      throw toConnectError(InvalidArgumentError.field("request", `cannot be decoded as the method's request message: ${reason}`), rpcName);
    }
  };
  checkHandlers(service, handlers);
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    const rpcName = `${service.typeName}/${method.name}`;
    if (method.methodKind === "unary") {
      // connect-node's signal aborts when the client goes away or the call's timeout passes; a
      // shutdown lets unary calls finish (grace period), so it is not part of a unary signal.
      impl[method.localName] = async (req: unknown, ctx: HandlerContext) => {
        const address = ctx.values.get(CLIENT_ADDRESS);
        let key;
        try {
          // Access first: a caller without a valid key learns nothing of its request.
          key = guard.admit(rpcName, authorizationOf(ctx), address);
          rejectUndecodable(ctx, rpcName);
        } catch (err) {
          const e = err instanceof ConnectError ? err : toConnectError(err, rpcName);
          guard.audit(rpcName, key ?? refusedKey(err), address, e.code, req);
          throw e;
        }
        const timeout = ctx.timeoutMs();
        const call = { signal: ctx.signal, deadline: timeout === undefined ? undefined : new Date(Date.now() + timeout) };
        try {
          const res = await admission.run(ctx.signal, () => (handler as UnaryHandler)(req, call));
          guard.audit(rpcName, key, address, 0 /* OK */, req, res);
          return res;
        } catch (err) {
          // Nobody waits for a cancelled call's answer (nothing to map or log); a passed timeout
          // is answered with connect-node's own deadline_exceeded.
          const e = ctx.signal.aborted
            ? ctx.signal.reason instanceof ConnectError
              ? ctx.signal.reason
              : new ConnectError("the call was cancelled", Code.Canceled)
            : toConnectError(err, rpcName);
          guard.audit(rpcName, key, address, e.code, req);
          throw e;
        }
      };
    } else if (method.methodKind === "server_streaming") {
      // connect-node waits for the socket at each yield: backpressure without buffering. After a
      // client disconnects it may never resume this generator, so the inner stream is ended
      // from the abort signal: the watcher's resources are freed whatever connect-node does.
      // A yield that connect-node does not resume within the handler's stall timeout (the client
      // does not read: connect-node is waiting for "drain") ends the inner stream at once, which
      // frees the watcher; the stall error is then the stream's end if the client reads again.
      impl[method.localName] = async function* (req: unknown, ctx: HandlerContext) {
        let key;
        try {
          key = guard.admit(rpcName, authorizationOf(ctx), ctx.values.get(CLIENT_ADDRESS));
        } catch (err) {
          throw toConnectError(err, rpcName);
        }
        rejectUndecodable(ctx, rpcName);
        // A stream outlives the check above: a keys file reload that revokes its key ends it.
        const revocation = guard.trackStream(key, rpcName);
        const call: CallContext = callContext(ctx, revocation.signal ? AbortSignal.any([shutdown, revocation.signal]) : shutdown);
        const inner = (handler as StreamHandler)(req, call)[Symbol.asyncIterator]();
        const end = (): void => void inner.return?.(undefined).catch(() => undefined);
        call.signal.addEventListener("abort", end, { once: true });
        let yielding = false;
        let stalled: Error | undefined;
        let stallTimer: NodeJS.Timeout | undefined;
        try {
          for (;;) {
            const next = await inner.next();
            if (next.done) break;
            if (call.stall !== undefined) {
              // One timer per stream, re-armed per message.
              stallTimer ??= setTimeout(() => {
                if (!yielding || stalled !== undefined) return;
                stalled = call.stall!.error();
                end();
              }, call.stall.timeoutMs).unref();
              stallTimer.refresh();
            }
            yielding = true;
            yield next.value;
            yielding = false;
            if (stalled !== undefined) throw stalled;
          }
        } catch (err) {
          if (revocation.signal?.aborted) throw toConnectError(revocation.signal.reason, rpcName);
          // The client went away while a message was written (a yield threw EPIPE, ECONNRESET,
          // ERR_STREAM_DESTROYED): nobody gets a status, so there is nothing to map or log.
          if (ctx.signal.aborted || isClientGone(err)) throw err;
          throw toConnectError(err, rpcName);
        } finally {
          revocation.release();
          clearTimeout(stallTimer);
          call.signal.removeEventListener("abort", end);
          end();
        }
        if (revocation.signal?.aborted && !ctx.signal.aborted) throw toConnectError(revocation.signal.reason, rpcName);
        if (shutdown.aborted && !ctx.signal.aborted) throw toConnectError(new ShuttingDownError(), rpcName);
      };
    }
  }
  // The router and request/response plumbing of connect-node, dispatched here rather than with
  // connectNodeAdapter, which reports a failed response with console.error: a client that
  // disconnects while its stream is written is routine for watches, and our logs are JSON lines.
  const router = createConnectRouter({ readMaxBytes: options.readMaxBytes, interceptors: options.interceptors });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- Connect types a service implementation per generated method; the handlers are checked against the service in checkHandlers
  router.service(service, impl as any);
  const routes = new Map(router.handlers.map((h) => [h.requestPath, h]));
  const adapter = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void => {
    // An answer sent before the request body was read to its end (e.g. connect-node's
    // end-of-stream error for a streaming request over readMaxBytes) leaves the rest of the body
    // in the socket: node:http only discards an unread body that nobody started reading, and
    // connect-node had started. The connection then stayed paused; the client's next request on
    // it (HTTP/1.1 keep-alive) was never read, and the keep-alive timeout destroyed the socket
    // with that request unread: ECONNRESET after ~5 s (the fuzz's dropped Connect calls). So the
    // rest is read and discarded, as node:http does for unread bodies (HTTP_REQUEST_TIMEOUT
    // still bounds a body that never ends), and the connection serves the next request.
    res.once("finish", () => {
      if (req.complete || req.destroyed) return;
      // A reader still attached ("readable") would keep the stream out of flowing mode; node
      // applies a listener's removal on the next tick.
      req.removeAllListeners("readable");
      process.nextTick(() => req.resume());
    });
    const handler = routes.get(req.url?.split("?", 2)[0] ?? "");
    if (!handler) {
      if (options.dashboard?.serve(req, res)) return;
      res.writeHead(404).end();
      return;
    }
    const values = createContextValues();
    values.set(CLIENT_ADDRESS, clientAddress(req.socket?.remoteAddress ?? "unknown"));
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- connect-node's adapter is typed for http.IncomingMessage/Http2ServerRequest; ours is either
    const uReq = universalRequestFromNodeRequest(req as any, res as any, undefined, values);
    // connect-node's body iterator destroys the request when a reader stops early (a message
    // over readMaxBytes): the socket is then left paused with the rest of the body unread. This
    // one leaves the request alive, so the rest can be discarded once the answer is sent (above).
    uReq.body = req.iterator({ destroyOnReturn: false });
    const encoded = [req.headers["content-encoding"], req.headers["connect-content-encoding"], req.headers["grpc-encoding"]].some(
      (e) => e !== undefined && e !== "identity",
    );
    checkBinaryBody(
      uReq.body as AsyncIterable<Uint8Array>,
      { contentType: req.headers["content-type"] ?? "", encoded },
      handler.method.input,
      options.readMaxBytes,
    )
      .then((checked) => {
        uReq.body = checked.body;
        if (checked.error !== undefined) {
          uReq.contextValues?.set(DECODE_ERROR, checked.error);
          uReq.header.delete("content-length"); // the stand-in message is shorter
        }
        return handler(uReq);
      })
      .then((uRes) => universalResponseToNodeResponse(uRes, res))
      .catch((reason: unknown) => {
        const err = ConnectError.from(reason);
        const gone = err.code === Code.Aborted || res.destroyed || req.destroyed;
        const fields = { method: `${handler.service.typeName}/${handler.method.name}`, error: err.message };
        if (gone) log.debug("client went away while the response was written", fields);
        else log.error("writing a response failed", fields);
      });
  };
  // CORS: only the listed origins get any permission (none by default), "*" only when listed,
  // and Access-Control-Allow-Credentials is never sent: a browser then sends no cookies or HTTP
  // auth of its own, and a page must hold the API key itself to call (Authorization is allowed).
  const allowAny = options.corsOrigins.includes("*");
  const allowed = new Set(options.corsOrigins);
  const onRequest = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void => {
    // Shutting down: this is the connection's last answer (HTTP/2 gets GOAWAY instead).
    if (options.shutdown.aborted && req.httpVersionMajor === 1) res.setHeader("Connection", "close");
    const origin = req.headers.origin;
    if (!allowAny && allowed.size > 0) res.setHeader("Vary", "Origin");
    if (origin && (allowAny || allowed.has(origin))) {
      res.setHeader("Access-Control-Allow-Origin", allowAny ? "*" : origin);
      res.setHeader("Access-Control-Expose-Headers", cors.exposedHeaders.join(", "));
      if (req.method === "OPTIONS") {
        res.setHeader("Access-Control-Allow-Methods", cors.allowedMethods.join(", "));
        res.setHeader("Access-Control-Allow-Headers", ALLOWED_HEADERS);
        res.setHeader("Access-Control-Max-Age", "7200");
        res.writeHead(204).end();
        return;
      }
    }
    adapter(req, res);
  };
  if (options.tls) return secureServer(options.tls, options.limits, onRequest, log);
  const server = http.createServer(httpServerOptions(options.limits), onRequest);
  // Connections over the limit are closed as they are accepted (node:http's own counter).
  if (options.limits) {
    server.maxConnections = options.limits.maxConnections;
    server.keepAliveTimeout = options.limits.keepAliveTimeoutMs;
  }
  return { server, closeIdleConnections: () => server.closeIdleConnections(), closeAllConnections: () => server.closeAllConnections() };
}

/**
 * The HTTP port over TLS: node:http2's secure server with allowHTTP1, so ALPN picks HTTP/2
 * (gRPC, Connect, gRPC-Web) or HTTP/1.1 (curl, browsers without h2). node:http2 takes the
 * HTTP/1.1 limits of node:http as properties of the server (its constructor has no options for
 * them) and checks them on the HTTP/1.1 connections; the TLS handshake gets the headers
 * timeout; HTTP/2 sessions get the header list limit as a SETTINGS value.
 * http2 servers have no closeIdleConnections, so connections are tracked here.
 */
function secureServer(
  tls: TlsWatcher,
  limits: HttpLimits | undefined,
  onRequest: (req: http2.Http2ServerRequest | http.IncomingMessage, res: http2.Http2ServerResponse | http.ServerResponse) => void,
  log: Logger,
): HttpServer {
  const server = http2.createSecureServer({
    ...httpsServerOptions(tls),
    ...(limits ? { handshakeTimeout: limits.headersTimeoutMs, settings: { maxHeaderListSize: limits.maxHeaderBytes } } : {}),
  });
  followRotation(server, tls, log);
  if (limits) {
    const props = server as unknown as Record<string, number>;
    props.headersTimeout = limits.headersTimeoutMs;
    props.requestTimeout = limits.requestTimeoutMs;
    props.keepAliveTimeout = limits.keepAliveTimeoutMs;
    props.maxHeaderSize = limits.maxHeaderBytes;
    props.connectionsCheckingInterval = Math.max(25, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4)));
    server.maxConnections = limits.maxConnections;
  }
  const sessions = new Set<http2.ServerHttp2Session>();
  // HTTP/1.1 connections and their requests in flight.
  const http1 = new Map<TLSSocket, number>();
  let closing = false;
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    if (closing) session.close();
  });
  server.on("secureConnection", (socket: TLSSocket) => {
    socket.on("error", () => undefined); // a reset mid-handshake or mid-response is routine
    if (socket.alpnProtocol === "h2") return;
    http1.set(socket, 0);
    socket.once("close", () => http1.delete(socket));
  });
  // A failed handshake (wrong CA, no client certificate) is the client's problem, not a log line.
  server.on("tlsClientError", () => undefined);
  server.on("request", (req, res) => {
    if (req.httpVersionMajor !== 1) return onRequest(req, res);
    const socket = req.socket as unknown as TLSSocket;
    http1.set(socket, (http1.get(socket) ?? 0) + 1);
    res.once("close", () => {
      const left = (http1.get(socket) ?? 1) - 1;
      http1.set(socket, left);
      if (closing && left === 0) socket.destroy();
    });
    if (closing) res.setHeader("Connection", "close");
    onRequest(req, res);
  });
  return {
    server,
    closeIdleConnections: () => {
      closing = true;
      for (const session of sessions) session.close(); // GOAWAY; open streams finish
      for (const [socket, inFlight] of http1) if (inFlight === 0) socket.destroy();
    },
    closeAllConnections: () => {
      for (const session of sessions) session.destroy();
      for (const socket of http1.keys()) socket.destroy();
    },
  };
}

/**
 * node:http's slow-client defences, made explicit and configurable. headersTimeout also closes a
 * connection that sends nothing at all; requestTimeout bounds the whole request including its
 * body, so a body trickled in chunk by chunk (slowloris) is answered 408 and the connection
 * closed. Both only run while a request is being received: a response streamed for hours
 * (WatchSessions) is not cut, and the socket has no inactivity timeout for the same reason
 * (a watch with nothing to say is legitimately quiet between heartbeats).
 */
function httpServerOptions(limits: HttpLimits | undefined): http.ServerOptions {
  if (!limits) return {};
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    maxHeaderSize: limits.maxHeaderBytes,
    // How often node checks those two timeouts (default 30 s, which would let a slow client
    // outlive a short limit by that much).
    connectionsCheckingInterval: Math.max(25, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
  };
}

const CLIENT_GONE = new Set(["EPIPE", "ECONNRESET", "ERR_STREAM_DESTROYED", "ERR_STREAM_WRITE_AFTER_END"]);

/** An error of writing to a connection the client has closed. */
function isClientGone(err: unknown): boolean {
  return err instanceof Error && CLIENT_GONE.has((err as NodeJS.ErrnoException).code ?? "");
}
