// grpc.health.v1.Health on the grpc-js server (Check, Watch and List), for load balancers,
// orchestrators and `grpcurl ... grpc.health.v1.Health/Check`.
//
// The service answers for "" (the whole server) and "session.v1.SessionService"; both are
// SERVING exactly while the store answers ping() and the server is not shutting down. The store
// is pinged every `intervalMs` and on demand: a Check waits for a fresh ping (shared by
// concurrent checks), bounded by `timeoutMs`, so it reports the present, not the last poll.
// Watch sends the current status at once and then every change; other names get NOT_FOUND from
// Check and SERVICE_UNKNOWN from Watch. On shutdown every watcher gets NOT_SERVING and its stream
// ends (a watch would otherwise hold the graceful shutdown up for the whole grace period).
// Messages are (de)serialized with the descriptors of gen/descriptors.binpb.

import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { Logger } from "../log";
import type { SessionStore } from "../store/port";
import { descriptorRegistry } from "./reflection";

export const HEALTH_SERVICE = "grpc.health.v1.Health";

/** grpc.health.v1.HealthCheckResponse.ServingStatus */
export enum ServingStatus {
  UNKNOWN = 0,
  SERVING = 1,
  NOT_SERVING = 2,
  SERVICE_UNKNOWN = 3,
}

export interface HealthOptions {
  /** How often the store is pinged (ms); default 1000. */
  intervalMs?: number;
  /** How long a ping may take before the store counts as unreachable (ms); default 1000. */
  timeoutMs?: number;
  /** Service names answered besides ""; default ["session.v1.SessionService"]. */
  services?: string[];
}

export interface Health {
  readonly definition: grpc.ServiceDefinition;
  readonly implementation: grpc.UntypedServiceImplementation;
  /** Adds the Health service to a grpc-js server. */
  addTo(server: Pick<grpc.Server, "addService">): void;
  /** Pings the store now (joining a ping in flight) and returns the resulting status. */
  check(): Promise<ServingStatus>;
  /** NOT_SERVING from now on: stops polling, tells every watcher and ends its stream. */
  setShuttingDown(): void;
  /** Releases everything (timer, watch streams); implies setShuttingDown. Idempotent. */
  close(): void;
}

type Store = Pick<SessionStore, "ping">;

function message(typeName: string): DescMessage {
  const desc = descriptorRegistry().getMessage(typeName);
  if (!desc) throw new Error(`${typeName} is not in the descriptor set`);
  return desc;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function method(name: string, input: DescMessage, output: DescMessage, responseStream: boolean): grpc.MethodDefinition<any, any> {
  return {
    path: `/${HEALTH_SERVICE}/${name}`,
    requestStream: false,
    responseStream,
    requestSerialize: (m: MessageShape<DescMessage>) => Buffer.from(toBinary(input, m)),
    requestDeserialize: (b: Buffer) => fromBinary(input, b),
    responseSerialize: (m: MessageShape<DescMessage>) => Buffer.from(toBinary(output, m)),
    responseDeserialize: (b: Buffer) => fromBinary(output, b),
  };
}

export function createHealth(store: Store, log: Logger, options: HealthOptions = {}): Health {
  const intervalMs = options.intervalMs ?? 1000;
  const timeoutMs = options.timeoutMs ?? 1000;
  const names = new Set(["", ...(options.services ?? ["session.v1.SessionService"])]);

  const CheckRequest = message("grpc.health.v1.HealthCheckRequest");
  const CheckResponse = message("grpc.health.v1.HealthCheckResponse");
  const ListRequest = message("grpc.health.v1.HealthListRequest");
  const ListResponse = message("grpc.health.v1.HealthListResponse");
  const response = (status: ServingStatus) => create(CheckResponse, { status });

  /** Undefined until the first ping has answered or failed. */
  let storeUp: boolean | undefined;
  let shuttingDown = false;
  let inflight: Promise<boolean> | undefined;
  const watchers = new Set<{ call: grpc.ServerWritableStream<unknown, unknown>; known: boolean; last?: ServingStatus }>();

  const current = (): ServingStatus => (!shuttingDown && storeUp === true ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);

  const notify = (): void => {
    const status = current();
    for (const w of watchers) {
      if (!w.known || w.last === status) continue;
      w.last = status;
      w.call.write(response(status));
    }
  };

  const pingOnce = async (): Promise<boolean> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        store.ping({ deadline: new Date(Date.now() + timeoutMs) }),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
          timer.unref();
        }),
      ]);
      return true;
    } catch (err) {
      if (storeUp !== false) log.warn("health: store unreachable, NOT_SERVING", { error: err instanceof Error ? err.message : String(err) });
      return false;
    } finally {
      clearTimeout(timer);
    }
  };

  /** A fresh ping; concurrent callers share one. */
  const probe = (): Promise<boolean> =>
    (inflight ??= pingOnce().then((up) => {
      inflight = undefined;
      if (up && storeUp === false) log.info("health: store reachable again, SERVING");
      storeUp = up;
      if (!shuttingDown) notify();
      return up;
    }));

  const timer = setInterval(() => void probe(), intervalMs);
  timer.unref();
  void probe();

  const endWatches = (): void => {
    for (const w of watchers) w.call.end();
    watchers.clear();
  };

  const setShuttingDown = (): void => {
    if (shuttingDown) return;
    shuttingDown = true;
    clearInterval(timer);
    notify();
    endWatches();
  };

  const definition: grpc.ServiceDefinition = {
    Check: method("Check", CheckRequest, CheckResponse, false),
    Watch: method("Watch", CheckRequest, CheckResponse, true),
    List: method("List", ListRequest, ListResponse, false),
  };

  const check: grpc.handleUnaryCall<{ service: string }, unknown> = (call, callback) => {
    const service = call.request.service;
    if (!names.has(service)) {
      callback({ code: grpc.status.NOT_FOUND, details: `unknown service "${service}"` });
      return;
    }
    if (shuttingDown) {
      callback(null, response(ServingStatus.NOT_SERVING));
      return;
    }
    void probe().then(() => callback(null, response(current())));
  };

  const watch: grpc.handleServerStreamingCall<{ service: string }, unknown> = (call) => {
    const w = { call: call as grpc.ServerWritableStream<unknown, unknown>, known: names.has(call.request.service), last: undefined as ServingStatus | undefined };
    if (shuttingDown) {
      call.write(response(w.known ? ServingStatus.NOT_SERVING : ServingStatus.SERVICE_UNKNOWN));
      call.end();
      return;
    }
    const start = (): void => {
      if (call.cancelled || shuttingDown) return;
      w.last = w.known ? current() : ServingStatus.SERVICE_UNKNOWN;
      call.write(response(w.last));
      watchers.add(w);
    };
    call.on("cancelled", () => watchers.delete(w));
    call.on("error", () => watchers.delete(w));
    // The first status a watcher sees is a measured one, not "not yet pinged".
    if (storeUp === undefined && w.known) void probe().then(start);
    else start();
  };

  const list: grpc.handleUnaryCall<unknown, unknown> = (_call, callback) => {
    const finish = (): void => {
      const statuses: Record<string, MessageShape<DescMessage>> = {};
      for (const name of names) statuses[name] = response(current());
      callback(null, create(ListResponse, { statuses }));
    };
    if (shuttingDown) finish();
    else void probe().then(finish);
  };

  const implementation: grpc.UntypedServiceImplementation = { Check: check, Watch: watch, List: list } as grpc.UntypedServiceImplementation;

  return {
    definition,
    implementation,
    addTo: (server) => server.addService(definition, implementation),
    check: async () => (shuttingDown ? ServingStatus.NOT_SERVING : (await probe(), current())),
    setShuttingDown,
    close: setShuttingDown,
  };
}
