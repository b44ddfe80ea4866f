// Wires the service together: store -> domain -> handlers -> engines (grpc-js on the gRPC
// port, connect-node on the HTTP port). `startServer` is what main.ts and the tests call.

import * as grpc from "@grpc/grpc-js";
import { SessionService } from "../gen/session/v1/session_service_pb";
import { isLoopbackHost, type Config } from "./config";
import { startJobs } from "./domain/jobs";
import { Lifecycle } from "./domain/lifecycle";
import { listPageBytes } from "./domain/limits";
import { Erasure } from "./domain/erasure";
import { ownDomainMap } from "./domain/traffic";
import { Merges } from "./domain/merges";
import { Sessions } from "./domain/sessions";
import { SessionStats } from "./domain/stats";
import { ChangeFeed } from "./domain/watch/feed";
import { StatsHub } from "./domain/watch/stats";
import type { Logger } from "./log";
import { createLogger, type Logger as LoggerT } from "./log";
import { Metrics, type MetricsServer } from "./metrics";
import { createHttpServer, type HttpServer } from "./rpc/connect-server";
import { Admission } from "./rpc/admission";
import { BUILT_DASHBOARD_DIR, Dashboard } from "./rpc/dashboard";
import { grpcService, guardedServices } from "./rpc/grpc-server";
import { listenGrpc, type GrpcListener } from "./rpc/grpc-listen";
import { CallGuard } from "./rpc/guard";
import { KeyedCalls } from "./security/access";
import { KeysWatcher } from "./security/keys";
import { RateLimiter } from "./security/rate-limit";
import { TlsWatcher } from "./security/tls";
import { createHealth, HEALTH_SERVICE } from "./rpc/health";
import { addReflection } from "./rpc/reflection";
import { createSessionHandlers } from "./rpc/handlers";
import { openStore } from "./store/open";
import { MmdbGeoLocator } from "./geo/mmdb";
import type { SessionStore } from "./domain/store";

export interface RunningServer {
  grpcPort: number;
  httpPort: number;
  store: SessionStore;
  feed: ChangeFeed;
  /** The shared computations of WatchSessionStats (open streams, for leak checks). */
  statsHub: StatsHub;
  /** The port of GET /metrics; undefined when METRICS_PORT is not set. */
  metricsPort?: number;
  /** Stops accepting calls, lets in-flight calls finish (up to the grace period), closes the store. */
  close(): Promise<void>;
}

/** A port that cannot be bound: names the port and the reason (e.g. EADDRINUSE). */
export class ListenError extends Error {}

function listenHttp(server: HttpServer["server"], host: string, port: number): Promise<number> {
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

export interface StartOptions {
  /** Where audit lines go (tests read them); default: stdout at level info whatever LOG_LEVEL says, none when it is silent. */
  auditLog?: Logger;
  /** The dashboard's files; default: what `npm run build` wrote (dist/web). */
  dashboardDir?: string;
}

export async function startServer(config: Config, log: Logger, store?: SessionStore, options: StartOptions = {}): Promise<RunningServer> {
  // grpc-js's own messages (e.g. a failed bind) as JSON log lines like ours.
  grpc.setLogger({ error: (...args: unknown[]) => log.debug("grpc-js", { message: args.map(String).join(" ") }) });
  // The TLS files and the keys file are read before anything else starts: a bad file stops the
  // service at once (TlsConfigError / KeysFileError, naming the file and the problem).
  const tls = config.tls ? TlsWatcher.open(config.tls, { log }) : undefined;
  const keys = config.authKeysFile ? KeysWatcher.open(config.authKeysFile, { log }) : undefined;
  if (!isLoopbackHost(config.host) && (!tls || !keys)) {
    log.warn(
      "ALLOW_INSECURE=true: serving a non-loopback address without " +
        [tls ? "" : "TLS", keys ? "" : "API keys"].filter(Boolean).join(" and "),
      {
        host: config.host,
      },
    );
  }
  const limiter =
    config.rateLimitPerAddress !== undefined || keys ? new RateLimiter({ perAddressRate: config.rateLimitPerAddress }) : undefined;
  const keyedCalls = new KeyedCalls();
  keys?.onReload((event) => {
    limiter?.retainKeys(event.registry.keys.map((k) => k.id));
    const ended = keyedCalls.apply(event);
    if (ended > 0) log.info("ended the open watches the reloaded keys no longer allow", { streams: ended });
  });
  // Audit lines are written whatever LOG_LEVEL says, unless logging is off altogether.
  const auditLog: LoggerT = options.auditLog ?? (config.logLevel === "silent" ? log : createLogger("info"));
  const guard = new CallGuard(
    { keys: () => keys?.current, limiter, reflectionRequiresKey: config.reflectionRequiresKey },
    keyedCalls,
    auditLog,
    config.ipAnonymization,
  );
  // The geo databases are read before the store opens: a bad GEOIP_CITY_DB stops the service at
  // once (GeoDatabaseError, naming the file).
  const geo = await MmdbGeoLocator.open({ cityDatabase: config.geoipCityDb });
  const visitorIp = { anonymization: config.ipAnonymization, locator: geo };
  const openedStore = store ?? (await openStore(config, log));
  const metrics = config.metricsPort === undefined ? undefined : new Metrics(SessionService, openedStore.kind);
  const sessionStore = metrics ? metrics.store(openedStore) : openedStore;
  const feed = new ChangeFeed(sessionStore, log, {
    pollIntervalMs: config.watchPollMs,
    bufferSize: config.watchBufferSize,
    bufferBytes: config.watchBufferBytes,
    maxWatchers: config.maxWatchers,
    stallTimeoutMs: config.watchStallTimeoutMs,
  });
  void feed.start();
  metrics?.observeFeed(feed);
  metrics?.observeActiveSessions(openedStore, log);
  const shutdown = new AbortController();
  const lifecycle = new Lifecycle(sessionStore, {
    idleMs: config.sessionIdleTimeoutMs,
    maxDurationMs: config.sessionMaxDurationMs,
    maxSessionBytes: config.maxSessionBytes,
    maxStringLength: config.maxStringLength,
    visitorIp,
  });
  const sessions = new Sessions(
    sessionStore,
    undefined,
    undefined,
    {
      maxSessionBytes: config.maxSessionBytes,
      maxMaskPaths: config.maxMaskPaths,
      maxStringLength: config.maxStringLength,
      maxFreeFormKeys: config.maxFreeFormKeys,
      listPageBytes: listPageBytes(config.maxMessageBytes),
    },
    visitorIp,
    { ownDomains: ownDomainMap(config.ownDomains) },
  );
  const merges = new Merges(sessionStore, { maxSessionBytes: config.maxSessionBytes });
  const erasure = new Erasure(sessionStore, feed, { batchSize: config.eraseBatchSize });
  const stats = new SessionStats(sessionStore, { maxStringLength: config.maxStringLength });
  const statsHub = new StatsHub(feed, stats, { maxSubscribers: config.maxStatsWatchers });
  metrics?.observeStatsHub(statsHub);
  const handlers = createSessionHandlers({ sessions, lifecycle, merges, erasure, stats, statsHub }, feed, sessionStore);

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
  const { definition, implementation } = grpcService(SessionService, handlers, log, shutdown.signal, admission, guard);
  grpcServer.addService(definition, metrics ? metrics.grpcImplementation(definition, implementation) : implementation);
  const health = createHealth(sessionStore, log, { intervalMs: config.healthProbeIntervalMs, timeoutMs: config.healthProbeTimeoutMs });
  health.addTo(grpcServer);
  addReflection(guardedServices(grpcServer, guard, log), [SessionService.typeName, HEALTH_SERVICE]);

  const dashboard = config.dashboard ? Dashboard.load(options.dashboardDir ?? BUILT_DASHBOARD_DIR) : undefined;
  if (config.dashboard && !dashboard) log.warn("the dashboard is not built (npm run build): nothing is served at /");
  const http = createHttpServer({
    dashboard,
    service: SessionService,
    handlers,
    log,
    readMaxBytes: config.maxMessageBytes,
    corsOrigins: config.corsOrigins,
    shutdown: shutdown.signal,
    admission,
    guard,
    tls,
    interceptors: metrics ? [metrics.interceptor] : undefined,
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
  let metricsServer: MetricsServer | undefined;
  try {
    // The first health status is a measured one (bounded by the probe's timeout).
    await health.ready;
    grpcListener = await listenGrpc(grpcServer, config.host, config.grpcPort, log, {
      maxConnections: config.maxConnections,
      prefaceTimeoutMs: config.headersTimeoutMs,
      maxHeaderListBytes: config.maxHeaderBytes,
      tls,
    });
    grpcPort = grpcListener.port;
    httpPort = await listenHttp(http.server, config.host, config.httpPort);
    if (metrics) metricsServer = await metrics.listen(config.host, config.metricsPort!, log);
  } catch (err) {
    grpcListener?.close();
    grpcServer.forceShutdown();
    http.server.close();
    tls?.close();
    keys?.close();
    health.close();
    feed.close();
    await sessionStore.close();
    throw err;
  }
  // Rotation: new certificates and keys are picked up from here on, without a restart.
  tls?.start();
  keys?.start();
  log.info("listening", {
    host: config.host,
    grpc_port: grpcPort,
    http_port: httpPort,
    store: sessionStore.kind,
    tls: tls ? (tls.mutual ? "mtls" : "tls") : "off",
    api_keys: keys ? keys.current.keys.length : "off",
    metrics_port: metricsServer?.port ?? "off",
    dashboard: dashboard ? "/" : "off",
    ...geo.description,
    ip_anonymization: config.ipAnonymization,
  });
  // Expiry passes, the change-log trim and the store's retention sweep.
  const jobs = startJobs(sessionStore, lifecycle, log, {
    expiryIntervalMs: config.sessionExpiryIntervalMs,
    onExpiryPass: metrics?.expiryObserver(),
    changeRetentionMs: config.watchRetentionMs,
    sessionRetentionMs: config.sessionRetentionMs,
  });

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
        http.closeAllConnections();
      }, config.shutdownGraceMs);
      // A connection whose last call just ended (a watch ended by the shutdown) is idle only
      // from then on: closed as it becomes idle, so a client that retries at once (the
      // dashboard) cannot hold the shutdown for the whole grace period.
      const idle = setInterval(() => http.closeIdleConnections(), 50);
      await Promise.all([
        new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve())),
        new Promise<void>((resolve) => {
          http.server.close(() => resolve());
          http.closeIdleConnections();
        }),
      ]);
      clearInterval(idle);
      clearTimeout(grace);
      tls?.close();
      keys?.close();
      await jobs.stop();
      feed.close();
      await sessionStore.close();
      await metricsServer?.close();
      log.info("stopped");
    })());

  return { grpcPort, httpPort, metricsPort: metricsServer?.port, store: sessionStore, feed, statsHub, close };
}
