// Wires the service together: store -> domain -> handlers -> engines (grpc-js on the gRPC
// port, connect-node on the HTTP port). `startServer` is what main.ts and the tests call.

import type * as http from "node:http";
import * as grpc from "@grpc/grpc-js";
import { SessionService } from "../gen/session/v1/session_service_pb";
import type { Config } from "./config";
import { Lifecycle, startExpiry } from "./domain/lifecycle";
import { listPageBytes } from "./domain/limits";
import { Sessions } from "./domain/sessions";
import { ChangeFeed } from "./domain/watch";
import type { Logger } from "./log";
import { createHttpServer } from "./rpc/connect-server";
import { Admission } from "./rpc/admission";
import { grpcService, listenGrpc, type GrpcListener } from "./rpc/grpc-server";
import { createHealth, HEALTH_SERVICE } from "./rpc/health";
import { addReflection } from "./rpc/reflection";
import { createSessionHandlers } from "./rpc/handlers";
import { openStore } from "./store/open";
import type { SessionStore } from "./store/port";

export interface RunningServer {
  grpcPort: number;
  httpPort: number;
  store: SessionStore;
  feed: ChangeFeed;
  /** Stops accepting calls, lets in-flight calls finish (up to the grace period), closes the store. */
  close(): Promise<void>;
}

/** A port that cannot be bound: names the port and the reason (e.g. EADDRINUSE). */
export class ListenError extends Error {}

function listenHttp(server: http.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(new ListenError(`cannot listen on ${host}:${port} (HTTP_PORT): ${err.code ?? err.message}`, { cause: err })),
    );
    server.listen(port, host, () => {
      server.off("error", reject);
      const addr = server.address();
      resolve(typeof addr === "object" && addr ? addr.port : port);
    });
  });
}

export async function startServer(config: Config, log: Logger, store?: SessionStore): Promise<RunningServer> {
  // grpc-js's own messages (e.g. a failed bind) as JSON log lines like ours.
  grpc.setLogger({ error: (...args: unknown[]) => log.debug("grpc-js", { message: args.map(String).join(" ") }) });
  const sessionStore = store ?? (await openStore(config, log));
  const feed = new ChangeFeed(sessionStore, log, {
    pollIntervalMs: config.watchPollMs,
    bufferSize: config.watchBufferSize,
    retentionMs: config.watchRetentionMs,
    trimIntervalMs: 60_000,
    maxWatchers: config.maxWatchers,
    stallTimeoutMs: config.watchStallTimeoutMs,
  });
  void feed.start();
  const shutdown = new AbortController();
  const lifecycle = new Lifecycle(sessionStore, {
    idleMs: config.sessionIdleTimeoutMs,
    maxDurationMs: config.sessionMaxDurationMs,
    maxSessionBytes: config.maxSessionBytes,
    maxStringLength: config.maxStringLength,
  });
  const sessions = new Sessions(sessionStore, undefined, undefined, {
    maxSessionBytes: config.maxSessionBytes,
    maxMaskPaths: config.maxMaskPaths,
    maxStringLength: config.maxStringLength,
    maxFreeFormKeys: config.maxFreeFormKeys,
    listPageBytes: listPageBytes(config.maxMessageBytes),
  });
  const handlers = createSessionHandlers(sessions, lifecycle, feed, sessionStore);

  const grpcServer = new grpc.Server({
    "grpc.max_receive_message_length": config.maxMessageBytes,
    "grpc.max_send_message_length": config.maxMessageBytes,
    // Per-connection limits; the connection count and the preface timeout are in listenGrpc.
    "grpc.max_concurrent_streams": config.grpcMaxConcurrentStreams,
    "grpc.max_connection_idle_ms": config.grpcIdleTimeoutMs,
    "grpc.keepalive_time_ms": config.grpcKeepaliveTimeMs,
    "grpc.keepalive_timeout_ms": config.grpcKeepaliveTimeoutMs,
  });
  // One limit of unary calls in flight for both ports (health and reflection are not counted).
  const admission = new Admission(config.maxConcurrentCalls);
  const { definition, implementation } = grpcService(SessionService, handlers, log, shutdown.signal, admission);
  grpcServer.addService(definition, implementation);
  const health = createHealth(sessionStore, log, { intervalMs: config.healthProbeIntervalMs, timeoutMs: config.healthProbeTimeoutMs });
  health.addTo(grpcServer);
  addReflection(grpcServer, [SessionService.typeName, HEALTH_SERVICE]);

  const httpServer = createHttpServer({
    service: SessionService,
    handlers,
    log,
    readMaxBytes: config.maxMessageBytes,
    corsOrigins: config.corsOrigins,
    shutdown: shutdown.signal,
    admission,
    limits: {
      maxConnections: config.maxConnections,
      headersTimeoutMs: config.headersTimeoutMs,
      requestTimeoutMs: config.httpRequestTimeoutMs,
      keepAliveTimeoutMs: config.httpKeepAliveTimeoutMs,
      maxHeaderBytes: config.maxHeaderBytes,
    },
  });

  let grpcPort: number;
  let httpPort: number;
  let grpcListener: GrpcListener | undefined;
  try {
    // The first health status is a measured one (bounded by the probe's timeout).
    await health.ready;
    grpcListener = await listenGrpc(grpcServer, config.host, config.grpcPort, log, {
      maxConnections: config.maxConnections,
      prefaceTimeoutMs: config.headersTimeoutMs,
      maxHeaderListBytes: config.maxHeaderBytes,
    });
    grpcPort = grpcListener.port;
    httpPort = await listenHttp(httpServer, config.host, config.httpPort);
  } catch (err) {
    grpcListener?.close();
    grpcServer.forceShutdown();
    httpServer.close();
    health.close();
    feed.close();
    await sessionStore.close();
    throw err;
  }
  log.info("listening", { host: config.host, grpc_port: grpcPort, http_port: httpPort, store: sessionStore.kind });
  const expiry = startExpiry(lifecycle, config.sessionExpiryIntervalMs, log);

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      log.info("shutting down", { grace_ms: config.shutdownGraceMs });
      health.setShuttingDown(); // NOT_SERVING, health watches end
      // Open watches end at once with UNAVAILABLE; unary calls in flight may finish.
      shutdown.abort();
      grpcListener?.close(); // no new connections (grpc-js drains the open ones)
      const grace = setTimeout(() => {
        log.warn("grace period over, cancelling remaining calls");
        grpcServer.forceShutdown();
        httpServer.closeAllConnections();
      }, config.shutdownGraceMs);
      await Promise.all([
        new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve())),
        new Promise<void>((resolve) => {
          httpServer.close(() => resolve());
          httpServer.closeIdleConnections();
        }),
      ]);
      clearTimeout(grace);
      await expiry.stop();
      feed.close();
      await sessionStore.close();
      log.info("stopped");
    })());

  return { grpcPort, httpPort, store: sessionStore, feed, close };
}
