// Wires the service together: store -> domain -> handlers -> engines (grpc-js on the gRPC
// port, connect-node on the HTTP port). `startServer` is what main.ts and the tests call.

import type * as http from "node:http";
import * as grpc from "@grpc/grpc-js";
import { SessionService } from "../gen/session/v1/session_service_pb";
import type { Config } from "./config";
import { Lifecycle, startExpiry } from "./domain/lifecycle";
import { Sessions } from "./domain/sessions";
import { ChangeFeed } from "./domain/watch";
import type { Logger } from "./log";
import { createHttpServer } from "./rpc/connect-server";
import { grpcService } from "./rpc/grpc-server";
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

function bindGrpc(server: grpc.Server, host: string, port: number): Promise<number> {
  const address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return new Promise((resolve, reject) =>
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, bound) =>
      // grpc-js says "No address added out of total 1 resolved errors: [listen EADDRINUSE ...]".
      err ? reject(new ListenError(`cannot listen on ${address} (GRPC_PORT): ${/E[A-Z]+/.exec(err.message)?.[0] ?? err.message}`, { cause: err })) : resolve(bound),
    ),
  );
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
  });
  void feed.start();
  const shutdown = new AbortController();
  const lifecycle = new Lifecycle(sessionStore, { idleMs: config.sessionIdleTimeoutMs, maxDurationMs: config.sessionMaxDurationMs });
  const handlers = createSessionHandlers(new Sessions(sessionStore), lifecycle, feed, sessionStore);

  const grpcServer = new grpc.Server({
    "grpc.max_receive_message_length": config.maxMessageBytes,
    "grpc.max_send_message_length": config.maxMessageBytes,
  });
  const { definition, implementation } = grpcService(SessionService, handlers, log, shutdown.signal);
  grpcServer.addService(definition, implementation);
  const health = createHealth(sessionStore, log);
  health.addTo(grpcServer);
  addReflection(grpcServer, [SessionService.typeName, HEALTH_SERVICE]);

  const httpServer = createHttpServer({
    service: SessionService,
    handlers,
    log,
    readMaxBytes: config.maxMessageBytes,
    corsOrigins: config.corsOrigins,
    shutdown: shutdown.signal,
  });

  let grpcPort: number;
  let httpPort: number;
  try {
    grpcPort = await bindGrpc(grpcServer, config.host, config.grpcPort);
    httpPort = await listenHttp(httpServer, config.host, config.httpPort);
  } catch (err) {
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
