// grpc.health.v1.Health on the grpc-js server (Check, Watch and List), for load balancers,
// orchestrators and `grpcurl ... grpc.health.v1.Health/Check`.
//
// The service answers for "" (the whole server) and "session.v1.SessionService"; both are
// SERVING exactly while the last probe of the store succeeded and the server is not shutting
// down. Health never waits on the store: Check, Watch and List answer at once from the status a
// background probe keeps. The probe calls store.ping() every `intervalMs` with its own timeout
// (`timeoutMs`); a ping that fails or does not answer in time makes the status NOT_SERVING at
// once (also while that ping is still pending: a frozen disk never answers), the next one that
// succeeds makes it SERVING again. What ping checks is the store's business: the SQLite store
// checks that it can write (it takes and releases the write lock, and after a failed write batch
// commits a no-op write: another process holding the lock, a frozen or a full disk all fail
// it); the MongoDB store that the database answers. startServer awaits `ready` (the first
// probe's outcome) before it listens, so no caller sees a status that was never measured; that
// first probe may take up to FIRST_PROBE_TIMEOUT_MS (a store's threads are still starting, and
// nobody is calling yet).
// Watch sends the current status at once and then every change; other names get NOT_FOUND from
// Check and SERVICE_UNKNOWN from Watch. On shutdown every watcher gets NOT_SERVING and its stream
// ends (a watch would otherwise hold the graceful shutdown up for the whole grace period).
// Messages are (de)serialized with the descriptors of gen/descriptors.binpb.

import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { Logger } from "../log";
import type { SessionStore } from "../domain/store";
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
  /** How often the store is probed (ms); default 1 s (HEALTH_PROBE_INTERVAL). */
  intervalMs?: number;
  /** How long a probe may take before the store counts as down (ms); default 1 s (HEALTH_PROBE_TIMEOUT). */
  timeoutMs?: number;
  /** Service names answered besides ""; default ["session.v1.SessionService"]. */
  services?: string[];
}

export interface Health {
  readonly definition: grpc.ServiceDefinition;
  readonly implementation: grpc.UntypedServiceImplementation;
  /** Adds the Health service to a grpc-js server. */
  addTo(server: Pick<grpc.Server, "addService">): void;
  /** The current status, as the last probe left it (never waits on the store). */
  status(): ServingStatus;
  /** Resolves once the first probe has an outcome (at most FIRST_PROBE_TIMEOUT_MS, or `timeoutMs` if longer). */
  readonly ready: Promise<void>;
  /** NOT_SERVING from now on: stops polling, tells every watcher and ends its stream. */
  setShuttingDown(): void;
  /** Releases everything (timer, watch streams); implies setShuttingDown. Idempotent. */
  close(): void;
}

type Store = Pick<SessionStore, "ping">;

/** The least time the first probe gets (see the header). */
const FIRST_PROBE_TIMEOUT_MS = 5000;

function message(typeName: string): DescMessage {
  const desc = descriptorRegistry().getMessage(typeName);
  if (!desc) throw new Error(`${typeName} is not in the descriptor set`);
  return desc;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- grpc-js's MethodDefinition is generic in the message type; health has several
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

  /** Undefined until the first probe has an outcome. */
  let storeUp: boolean | undefined;
  let shuttingDown = false;
  /** A probe is under way (the next tick does not start another). */
  let probing = false;
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

  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (markReady = resolve));

  const record = (up: boolean, error?: unknown): void => {
    if (up && storeUp === false) log.info("health: store can serve again, SERVING");
    if (!up && storeUp !== false)
      log.warn("health: store cannot serve, NOT_SERVING", { error: error instanceof Error ? error.message : String(error) });
    storeUp = up;
    markReady();
    if (!shuttingDown) notify();
  };

  /** One probe: its outcome, or "down" once its timeout has passed without one. */
  const probe = (): void => {
    if (probing || shuttingDown) return;
    probing = true;
    let timedOut = false;
    const limitMs = storeUp === undefined ? Math.max(timeoutMs, FIRST_PROBE_TIMEOUT_MS) : timeoutMs;
    const timer = setTimeout(() => {
      timedOut = true;
      record(false, new Error(`the store did not answer within ${limitMs} ms`));
    }, limitMs);
    timer.unref();
    store.ping({ deadline: new Date(Date.now() + limitMs) }).then(
      () => {
        clearTimeout(timer);
        probing = false;
        // A late success still proves the store can serve now.
        record(true);
      },
      (err: unknown) => {
        clearTimeout(timer);
        probing = false;
        if (!timedOut) record(false, err);
      },
    );
  };

  const timer = setInterval(probe, intervalMs);
  timer.unref();
  probe();

  const endWatches = (): void => {
    for (const w of watchers) w.call.end();
    watchers.clear();
  };

  const setShuttingDown = (): void => {
    if (shuttingDown) return;
    shuttingDown = true;
    clearInterval(timer);
    markReady();
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
    callback(null, response(current()));
  };

  const watch: grpc.handleServerStreamingCall<{ service: string }, unknown> = (call) => {
    const w = {
      call: call as grpc.ServerWritableStream<unknown, unknown>,
      known: names.has(call.request.service),
      last: undefined as ServingStatus | undefined,
    };
    if (shuttingDown) {
      call.write(response(w.known ? ServingStatus.NOT_SERVING : ServingStatus.SERVICE_UNKNOWN));
      call.end();
      return;
    }
    call.on("cancelled", () => watchers.delete(w));
    call.on("error", () => watchers.delete(w));
    w.last = w.known ? current() : ServingStatus.SERVICE_UNKNOWN;
    call.write(response(w.last));
    watchers.add(w);
  };

  const list: grpc.handleUnaryCall<unknown, unknown> = (_call, callback) => {
    const statuses: Record<string, MessageShape<DescMessage>> = {};
    for (const name of names) statuses[name] = response(current());
    callback(null, create(ListResponse, { statuses }));
  };

  const implementation: grpc.UntypedServiceImplementation = { Check: check, Watch: watch, List: list } as grpc.UntypedServiceImplementation;

  return {
    definition,
    implementation,
    addTo: (server) => server.addService(definition, implementation),
    status: current,
    ready,
    setShuttingDown,
    close: setShuttingDown,
  };
}
