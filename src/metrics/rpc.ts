// Call metrics of both ports (registry.ts names them), and the watch delivery lag.
//
// gRPC port: every SessionService call starts in its grpc-js implementation function and ends in
// exactly one of: the unary callback (with the status it answers), the stream's end (grpc-js
// sends the status held after an "error" event, OK otherwise), or the client's cancellation
// (grpc-js emits "cancelled"; it also does so after a call it has answered, hence the flag).
// observeGrpcService wraps those functions, so the handlers and grpc-server.ts are unchanged.
// HTTP port: a Connect interceptor; a stream ends when connect-node stops reading its messages.

import type * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { ChangeKind, type WatchSessionsResponse } from "../../gen/session/v1/session_service_pb";
import type { ChangeRecord } from "../domain/store";
import type { MethodMetrics, ServiceMetrics } from "./registry";

/**
 * When this process first read each recent change from the store (the change feed's read, or a
 * watcher's own catch-up read), by revision: the change record carries no commit time, so the
 * delivery lag is measured from there to the watcher's send. Bounded: the oldest entries go.
 */
export class LagClock {
  private readonly learnedAt = new Map<number, number>();
  constructor(
    private readonly observe: (seconds: number) => void,
    private readonly capacity = 65_536,
  ) {}

  learned(changes: readonly ChangeRecord[]): void {
    if (changes.length === 0) return;
    const now = performance.now();
    for (const c of changes) {
      if (this.learnedAt.has(c.revision)) continue;
      this.learnedAt.set(c.revision, now);
      if (this.learnedAt.size > this.capacity) this.learnedAt.delete(this.learnedAt.keys().next().value!);
    }
  }

  /** A response handed to the transport: a change (not part of an initial state) is measured. */
  sent(message: unknown): void {
    const event = (message as Partial<WatchSessionsResponse> | undefined)?.event;
    if (event?.case !== "change" || event.value.kind === ChangeKind.INITIAL) return;
    const at = this.learnedAt.get(Number(event.value.revision));
    if (at !== undefined) this.observe((performance.now() - at) / 1000);
  }
}

const CANCELLED = 1;
const UNKNOWN = 2;

/** `implementation` (grpcService's) with each call counted and timed; the definition is unchanged. */
export function observeGrpcService(
  metrics: ServiceMetrics,
  lag: LagClock,
  definition: grpc.ServiceDefinition,
  implementation: grpc.UntypedServiceImplementation,
): grpc.UntypedServiceImplementation {
  const observed: grpc.UntypedServiceImplementation = {};
  for (const [name, impl] of Object.entries(implementation)) {
    const def = definition[name];
    if (def === undefined || def.requestStream) {
      observed[name] = impl;
      continue;
    }
    const m = metrics.method(def.path, def.responseStream ? "server_stream" : "unary");
    observed[name] = def.responseStream
      ? observeStream(m, lag, impl as grpc.handleServerStreamingCall<unknown, unknown>)
      : observeUnary(m, impl as grpc.handleUnaryCall<unknown, unknown>);
  }
  return observed;
}

function observeUnary(m: MethodMetrics, impl: grpc.handleUnaryCall<unknown, unknown>): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    m.started.inc();
    const started = performance.now();
    let done = false;
    call.on("cancelled", () => {
      if (done) return;
      done = true;
      m.handled(CANCELLED, started);
    });
    impl(call, (err, value, trailer, flags) => {
      if (!done) {
        done = true;
        m.handled(err ? (err.code ?? UNKNOWN) : 0, started);
      }
      callback(err, value, trailer, flags);
    });
  };
}

function observeStream(
  m: MethodMetrics,
  lag: LagClock,
  impl: grpc.handleServerStreamingCall<unknown, unknown>,
): grpc.handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    m.started.inc();
    const started = performance.now();
    let done = false;
    let code = 0;
    const finish = (c: number): void => {
      if (done) return;
      done = true;
      m.handled(c, started);
    };
    // grpc-js's own "error" listener turns the error into the status it sends, then ends the stream.
    call.on("error", (err: Partial<grpc.StatusObject>) => (code = err?.code ?? UNKNOWN));
    call.on("finish", () => finish(code));
    call.on("cancelled", () => finish(CANCELLED));
    const write = call.write;
    call.write = function (this: typeof call, message: unknown, ...rest: unknown[]) {
      lag.sent(message);
      return (write as (...args: unknown[]) => boolean).call(this, message, ...rest);
    } as typeof call.write;
    impl(call);
  };
}

/** The HTTP port's calls, counted and timed under the same names as the gRPC port's. */
export function metricsInterceptor(metrics: ServiceMetrics, lag: LagClock): Interceptor {
  return (next) => async (req) => {
    const m = metrics.method(`${req.service.typeName}/${req.method.name}`, req.method.methodKind === "unary" ? "unary" : "server_stream");
    m.started.inc();
    const started = performance.now();
    let res;
    try {
      res = await next(req);
    } catch (err) {
      m.handled(codeOf(err, req.signal), started);
      throw err;
    }
    if (!res.stream) {
      m.handled(0, started);
      return res;
    }
    return { ...res, message: observeMessages(res.message, m, started, lag, req.signal) };
  };
}

async function* observeMessages<T>(
  messages: AsyncIterable<T>,
  m: MethodMetrics,
  started: number,
  lag: LagClock,
  signal: AbortSignal,
): AsyncGenerator<T> {
  // A client that goes away aborts the signal; connect-node may then never resume this generator
  // (see connect-server.ts), so the cancellation is recorded from the signal.
  let done = false;
  const finish = (code: number): void => {
    if (done) return;
    done = true;
    m.handled(code, started);
  };
  const onAbort = (): void => finish(Code.Canceled);
  signal.addEventListener("abort", onAbort, { once: true });
  let code: number = Code.Canceled; // stopped reading (return): the client has gone away
  try {
    for await (const message of messages) {
      lag.sent(message);
      yield message;
    }
    code = 0;
  } catch (err) {
    code = codeOf(err, signal);
    throw err;
  } finally {
    signal.removeEventListener("abort", onAbort);
    finish(code);
  }
}

function codeOf(err: unknown, signal: AbortSignal): number {
  if (err instanceof ConnectError) return err.code;
  return signal.aborted ? Code.Canceled : Code.Unknown;
}
