// Prometheus metrics of one server (METRICS_PORT): what startServer hooks in, and the /metrics
// endpoint. Off by default; when off nothing here runs and no call pays for it.
//
// The hooks, each one line in server.ts:
// - store(): the store every part of the service uses, timed per operation (store/metered.ts);
// - observeFeed(): open watchers and the feed's head revision, read at each scrape;
// - expiryObserver(): counts the expiry passes (told by src/domain/jobs.ts) and the sessions they end;
// - grpcImplementation() / interceptor: the calls of both ports (rpc.ts);
// - listen(): the plain-HTTP endpoint.
//
// Sessions active now: a count of the store's sessions with status "active" (its stats call,
// which reads the status index), refreshed at most every ACTIVE_CACHE_MS and only when scraped:
// a scrape never waits for a scan except the first one, however often Prometheus scrapes.

import * as http from "node:http";
import type * as grpc from "@grpc/grpc-js";
import type { DescService } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import type { SessionStore } from "../domain/store";
import type { ExpiryPass } from "../domain/lifecycle";
import type { Logger } from "../log";
import { meteredStore, STORE_OPERATIONS, type StoreOperation } from "../store/metered";
import type { HistogramSeries } from "./families";
import { ServiceMetrics } from "./registry";
import { LagClock, metricsInterceptor, observeGrpcService } from "./rpc";

export { ServiceMetrics } from "./registry";

/** How long a count of active sessions is served before it is read again. */
export const ACTIVE_CACHE_MS = 30_000;

/** A failed listen on METRICS_PORT (e.g. EADDRINUSE). */
export class MetricsListenError extends Error {}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

export class Metrics {
  readonly metrics: ServiceMetrics;
  private readonly lag: LagClock;
  readonly interceptor: Interceptor;

  constructor(service: DescService, storeKind: string) {
    this.metrics = new ServiceMetrics({ storeKind });
    this.metrics.addService(service);
    this.lag = new LagClock((s) => this.metrics.watchLag.observe(s));
    this.interceptor = metricsInterceptor(this.metrics, this.lag);
  }

  /** `store`, with every call timed (session_service_store_call_seconds). */
  store(store: SessionStore): SessionStore {
    // Series made once: [ok, error] per operation.
    const series = new Map<StoreOperation, [HistogramSeries, HistogramSeries]>();
    for (const operation of STORE_OPERATIONS) {
      series.set(operation, [
        this.metrics.storeCalls.add({ operation, outcome: "ok" }),
        this.metrics.storeCalls.add({ operation, outcome: "error" }),
      ]);
    }
    return meteredStore(store, {
      call: (op, startedMs, ok) => series.get(op)![ok ? 0 : 1].observe((performance.now() - startedMs) / 1000),
      changes: (batch) => this.lag.learned(batch.changes),
    });
  }

  /** Open watchers and the change feed's head revision, read at each scrape. */
  observeFeed(feed: { watchers: number; headRevision: number; buffered: { changes: number; bytes: number } }): void {
    this.metrics.gauge(
      "session_service_watchers_open",
      "Open watchers of the change feed in this process: WatchSessions streams and WatchSessionStats computations.",
      () => feed.watchers,
    );
    this.metrics.gauge(
      "session_service_feed_head_revision",
      "The change feed's head: every change up to this revision has been read by this process.",
      () => feed.headRevision,
    );
    this.metrics.gauge(
      "session_service_feed_buffer_bytes",
      "What the change feed's buffer of recent changes holds, by its measure (documents' JSON size; WATCH_BUFFER_BYTES bounds it).",
      () => feed.buffered.bytes,
    );
    this.metrics.gauge(
      "session_service_feed_buffer_changes",
      "Changes in the change feed's buffer of recent changes (WATCH_BUFFER_SIZE bounds it).",
      () => feed.buffered.changes,
    );
  }

  /** Open WatchSessionStats streams, read at each scrape. */
  observeStatsHub(hub: { subscribers: number }): void {
    this.metrics.gauge("session_service_stats_watchers_open", "Open WatchSessionStats streams in this process.", () => hub.subscribers);
  }

  /** The expiry passes' observer (src/domain/jobs.ts onExpiryPass): passes, and sessions they ended. */
  expiryObserver(): (pass: ExpiryPass | null) => void {
    const ok = this.metrics.expiryPasses.labels("ok");
    const failed = this.metrics.expiryPasses.labels("failed");
    ok.inc(0);
    failed.inc(0);
    return (pass) => {
      if (pass === null) return failed.inc();
      ok.inc();
      this.metrics.expiryEnded.inc(pass.ended);
    };
  }

  /** Sessions with status "active" in the store (all replicas'), cached ACTIVE_CACHE_MS. */
  observeActiveSessions(store: SessionStore, log: Logger): void {
    let value = 0;
    let readAt = -Infinity;
    let reading: Promise<void> | undefined;
    const refresh = (): Promise<void> =>
      (reading ??= store
        .stats({ status: "active", onlineSince: new Date() }, { deadline: new Date(Date.now() + 10_000) })
        .then(
          (stats) => {
            value = stats.total;
            readAt = performance.now();
          },
          (err: unknown) =>
            log.warn("metrics: cannot count the active sessions", { error: err instanceof Error ? err.message : String(err) }),
        )
        .finally(() => (reading = undefined)));
    this.metrics.gauge(
      "session_service_sessions_active",
      `Sessions with status "active" in the store, counted at most every ${ACTIVE_CACHE_MS / 1000} s.`,
      async () => {
        if (readAt === -Infinity) await refresh();
        else if (performance.now() - readAt >= ACTIVE_CACHE_MS) void refresh();
        return value;
      },
    );
  }

  /** `implementation` with every call counted and timed. */
  grpcImplementation(
    definition: grpc.ServiceDefinition,
    implementation: grpc.UntypedServiceImplementation,
  ): grpc.UntypedServiceImplementation {
    return observeGrpcService(this.metrics, this.lag, definition, implementation);
  }

  /** Serves GET /metrics in plain HTTP on host:port (0: a free port). */
  listen(host: string, port: number, log: Logger): Promise<MetricsServer> {
    const server = http.createServer((req, res) => {
      const path = req.url?.split("?", 1)[0];
      if (path !== "/metrics") {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found: metrics are at /metrics\n");
        return;
      }
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
        return;
      }
      this.metrics.expose().then(
        ({ contentType, body }) => res.writeHead(200, { "content-type": contentType }).end(req.method === "HEAD" ? undefined : body),
        (err: unknown) => {
          log.error("metrics: collecting failed", { error: err instanceof Error ? err.message : String(err) });
          res.writeHead(500).end();
        },
      );
    });
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    return new Promise((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) =>
        reject(new MetricsListenError(`cannot listen on ${host}:${port} (METRICS_PORT): ${err.code ?? err.message}`, { cause: err })),
      );
      server.listen(port, host, () => {
        server.removeAllListeners("error");
        server.on("error", (err) => log.warn("metrics port: accepting a connection failed", { error: err.message }));
        const addr = server.address();
        resolve({
          port: typeof addr === "object" && addr ? addr.port : port,
          close: () =>
            new Promise<void>((done) => {
              server.close(() => done());
              server.closeAllConnections();
            }),
        });
      });
    });
  }
}
