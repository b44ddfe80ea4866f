// The service's Prometheus metrics: one prom-client Registry per server (not the library's
// global one, so several servers in one process, as in the tests, keep their own figures). The
// metrics updated on every call are series of families.ts; the others are prom-client's own.
//
// gRPC calls use the names of go-grpc-prometheus, the convention dashboards and alerts expect:
//   grpc_server_started_total{grpc_type,grpc_service,grpc_method}
//   grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}
//   grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method} (histogram)
// A call on the HTTP port (Connect, gRPC-Web) counts under the same names as one on the gRPC port,
// with grpc_code the gRPC code name ("OK", "INVALID_ARGUMENT"). Label values come only from the
// service's descriptor, so their number is bounded; a method it does not name counts as "unknown".
// The rest are the service's own, prefixed session_service_.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import type { DescService } from "@bufbuild/protobuf";
import { codeName } from "../rpc/guard";
import { CounterFamily, HistogramFamily, type CounterSeries, type HistogramSeries } from "./families";

/** Seconds; finer than Prometheus's defaults at the low end, where most calls of this service are. */
const CALL_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const LAG_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** A code's label value, by number (gRPC and Connect number their codes alike). */
const CODE_LABELS = Array.from({ length: 17 }, (_, code) => codeName(code));

/**
 * The series of one method, made once: a call finds them by method and code and does no label
 * work (families.ts).
 */
export class MethodMetrics {
  private readonly handledByCode: CounterSeries[] = [];
  constructor(
    private readonly handledFamily: CounterFamily,
    private readonly labels: Readonly<Record<string, string>>,
    readonly started: CounterSeries,
    readonly handling: HistogramSeries,
  ) {}

  /** Records a finished call: its code (a gRPC/Connect code number) and when it started (performance.now()). */
  handled(code: number, startedMs: number): void {
    const known = code >= 0 && code < CODE_LABELS.length;
    const index = known ? code : CODE_LABELS.length;
    let series = this.handledByCode[index];
    if (series === undefined) {
      series = this.handledByCode[index] = this.handledFamily.add({ ...this.labels, grpc_code: known ? CODE_LABELS[code] : "UNKNOWN" });
    }
    series.inc();
    this.handling.observe((performance.now() - startedMs) / 1000);
  }
}

export type GrpcType = "unary" | "server_stream";

export interface ServiceMetricsOptions {
  /** The store's kind ("sqlite", "mongodb"), a label of the build info. */
  storeKind: string;
}

export class ServiceMetrics {
  readonly registry = new Registry();
  private readonly started: CounterFamily;
  private readonly handled: CounterFamily;
  private readonly handling: HistogramFamily;
  private readonly methods = new Map<string, MethodMetrics>();
  private readonly unknown = new Map<GrpcType, MethodMetrics>();
  readonly watchLag: HistogramSeries;
  readonly storeCalls: HistogramFamily;
  readonly expiryPasses: Counter<string>;
  readonly expiryEnded: Counter<string>;

  constructor(options: ServiceMetricsOptions) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    // prom-client's sums of its per-type gauges are gauges named *_total, which Prometheus's
    // conventions (and `promtool check metrics`) keep for counters; sum(nodejs_active_handles)
    // and the others give the same figures.
    for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"])
      this.registry.removeSingleMetric(name);
    this.started = new CounterFamily("grpc_server_started_total", "Total number of RPCs started on the server.", this.registry);
    this.handled = new CounterFamily(
      "grpc_server_handled_total",
      "Total number of RPCs completed on the server, regardless of success or failure.",
      this.registry,
    );
    this.handling = new HistogramFamily(
      "grpc_server_handling_seconds",
      "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
      CALL_BUCKETS,
      this.registry,
    );
    this.watchLag = new HistogramFamily(
      "session_service_watch_delivery_lag_seconds",
      "Seconds from this process first reading a change from the store's change log to a watcher handing it to the transport.",
      LAG_BUCKETS,
      this.registry,
    ).add({});
    this.storeCalls = new HistogramFamily(
      "session_service_store_call_seconds",
      "Latency of store calls, by operation and outcome (ok or error).",
      CALL_BUCKETS,
      this.registry,
    );
    this.expiryPasses = new Counter({
      name: "session_service_expiry_passes_total",
      help: "Expiry passes run by this process, by result (ok or failed).",
      labelNames: ["result"],
      registers,
    });
    this.expiryEnded = new Counter({
      name: "session_service_expiry_sessions_ended_total",
      help: "Sessions ended by this process's expiry passes.",
      registers,
    });
    new Gauge({
      name: "session_service_build_info",
      help: "Always 1; the labels name the running build.",
      labelNames: ["version", "node_version", "store"],
      registers,
    }).set({ version: packageVersion(), node_version: process.version, store: options.storeKind }, 1);
  }

  /** Makes the metric children of every method of `service` (call once per service, before serving). */
  addService(service: DescService): void {
    for (const method of service.methods) {
      const type = grpcType(method.methodKind);
      if (type === undefined) continue;
      this.methods.set(`${service.typeName}/${method.name}`, this.methodMetrics(type, service.typeName, method.name));
    }
  }

  /** The metrics of `path` ("pkg.Service/Method", with or without a leading "/"); a method not added is "unknown". */
  method(path: string, type: GrpcType): MethodMetrics {
    const found = this.methods.get(path.charCodeAt(0) === 47 /* "/" */ ? path.slice(1) : path);
    if (found !== undefined) return found;
    let unknown = this.unknown.get(type);
    if (unknown === undefined) this.unknown.set(type, (unknown = this.methodMetrics(type, "unknown", "unknown")));
    return unknown;
  }

  private methodMetrics(type: GrpcType, service: string, method: string): MethodMetrics {
    // Every method has its series from the start: rate() and absent() work before the first call.
    const labels = { grpc_type: type, grpc_service: service, grpc_method: method };
    return new MethodMetrics(this.handled, labels, this.started.add(labels), this.handling.add(labels));
  }

  /** A gauge read at each scrape. */
  gauge(name: string, help: string, read: () => number | Promise<number>): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      async collect() {
        this.set(await read());
      },
    });
  }

  /** The exposition (text format) and its content type. */
  async expose(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

export function grpcType(kind: string): GrpcType | undefined {
  if (kind === "unary") return "unary";
  if (kind === "server_streaming") return "server_stream";
  return undefined;
}

/** The version in the project's package.json (src/metrics under ts-jest, dist/src/metrics when built). */
function packageVersion(): string {
  for (const up of ["../..", "../../.."]) {
    try {
      const pkg = JSON.parse(readFileSync(join(__dirname, up, "package.json"), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "session-service" && typeof pkg.version === "string") return pkg.version;
    } catch {
      // not there: try the next level
    }
  }
  return "unknown";
}
