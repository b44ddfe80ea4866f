// The gRPC engine: @grpc/grpc-js serving the contract's unary methods, with protobuf-es doing
// the (de)serialization. Measured ~3.8x connect-node's unary throughput (docs/performance.md).
// Unary calls get a real cancellation signal and run under the global admission limit
// (admission.ts); connections are accepted by listenGrpc (grpc-listen.ts); message codecs are in
// grpc-codec.ts.

import * as grpc from "@grpc/grpc-js";
import type { DescService } from "@bufbuild/protobuf";
import type { Logger } from "../log";
import type { CallContext } from "./handlers";
import { ShuttingDownError } from "../domain/errors";
import { boundedStatus, statusDetailsBin, toRpcStatus } from "./status";
import { grpcDefinitions, toBuffer, undecodable, UndecodableRequest } from "./grpc-codec";
import { Admission } from "./admission";
import { CallGuard, refusedKey } from "./guard";
import { grpcPeerAddress } from "../security/rate-limit";

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- one handler type serves every method: each message type is checked by the generated service type of SessionHandlers
export type UnaryHandler = (req: any, ctx: CallContext) => Promise<any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- one handler type serves every method: each message type is checked by the generated service type of SessionHandlers
export type StreamHandler = (req: any, ctx: CallContext) => AsyncIterable<any>;
export type Handler = UnaryHandler | StreamHandler;

/**
 * Throws unless `handlers` has exactly one handler per method of `service`, each a unary or
 * server-streaming method (what both engines serve): a wiring mistake stops the start instead
 * of leaving a method unserved. Both engines call it before registering anything.
 */
export function checkHandlers(service: DescService, handlers: Record<string, Handler>): void {
  const problems: string[] = [];
  for (const method of service.methods) {
    if (method.methodKind !== "unary" && method.methodKind !== "server_streaming") {
      problems.push(`${method.name} is ${method.methodKind}, which is not served`);
    } else if (typeof handlers[method.localName] !== "function") {
      problems.push(`${method.name} has no handler "${method.localName}"`);
    }
  }
  const names = new Set(service.methods.map((m) => m.localName));
  for (const name of Object.keys(handlers)) if (!names.has(name)) problems.push(`handler "${name}" is no method of the service`);
  if (problems.length > 0) throw new Error(`${service.typeName}: ${problems.join("; ")}`);
}

/** The `authorization` metadata values as strings (binary values cannot be a bearer secret). */
function authorizationOf(metadata: grpc.Metadata): string[] | undefined {
  const values = metadata.get("authorization");
  return values.length === 0 ? undefined : values.map((v) => (typeof v === "string" ? v : ""));
}

/** The client address of a grpc-js server call, as the rate limiter and the audit log key it. */
function peerOf(call: { getPeer(): string }): string {
  return grpcPeerAddress(call.getPeer());
}

function errorStatus(err: unknown, log: Logger, rpcName: string): Partial<grpc.StatusObject> {
  const status = boundedStatus(toRpcStatus(err, log, rpcName));
  const metadata = new grpc.Metadata();
  metadata.set("grpc-status-details-bin", toBuffer(statusDetailsBin(status)));
  return { code: status.code as number, details: status.message, metadata };
}

function deadlineOf(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>): Date | undefined {
  const d = call.getDeadline();
  if (d instanceof Date) return d;
  return Number.isFinite(d) ? new Date(d) : undefined;
}

/**
 * A grpc-js service definition and implementation for `service`. Unary calls run under
 * `admission` (the global limit of calls in flight, shared with the HTTP port). Server streams end with
 * UNAVAILABLE (ShuttingDownError) when `shutdown` aborts, and stop at once when the client
 * cancels or the deadline passes; writes wait for the socket to drain (no unbounded buffering).
 */
export function grpcService(
  service: DescService,
  handlers: Record<string, Handler>,
  log: Logger,
  shutdown: AbortSignal = new AbortController().signal,
  admission: Admission = new Admission(Number.MAX_SAFE_INTEGER),
  guard: CallGuard = CallGuard.open(),
): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  checkHandlers(service, handlers);
  const all = grpcDefinitions(service);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- grpc-js's MethodDefinition is generic in the message type and these definitions cover every method
  const definition: Record<string, grpc.MethodDefinition<any, any>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    definition[method.localName] = all[method.localName];
    const rpcName = `${service.typeName}/${method.name}`;
    if (method.methodKind === "server_streaming") {
      implementation[method.localName] = streamingImpl(handler as StreamHandler, log, rpcName, shutdown, guard);
      continue;
    }
    const impl: grpc.handleUnaryCall<unknown, unknown> = (call, callback) => {
      // A real signal per call: grpc-js emits "cancelled" when the client resets the stream, the
      // deadline passes or the server is forced down; the call's slot is freed at once and the
      // store drops the call's queued work. grpc-js also emits "cancelled" after every call it
      // has answered (a tick after the status is sent), so the listener goes before answering:
      // a completed call costs an AbortController, its signal and one EventEmitter listener
      // (about 2 us, measured), never an abort. The slot is released from the "cancelled"
      // listener rather than from an abort listener on the signal (EventTarget listeners cost
      // about 1.3 us more per call).
      // Access first: a caller without a valid key learns nothing, not even that its request
      // does not decode, and takes no admission slot.
      const address = peerOf(call);
      let key;
      let release: () => void;
      try {
        key = guard.admit(rpcName, authorizationOf(call.metadata), address);
        if (call.request instanceof UndecodableRequest) throw undecodable(call.request);
        release = admission.enter();
      } catch (err) {
        const status = errorStatus(err, log, rpcName);
        guard.audit(rpcName, key ?? refusedKey(err), address, status.code!, call.request);
        callback(status);
        return;
      }
      const cancelled = new AbortController();
      const onCancel = (): void => {
        release();
        cancelled.abort();
      };
      call.once("cancelled", onCancel);
      const finish = (err: unknown, res?: unknown): void => {
        call.off("cancelled", onCancel);
        release();
        if (err === undefined) {
          guard.audit(rpcName, key, address, grpc.status.OK, call.request, res);
          callback(null, res);
        } else if (!cancelled.signal.aborted) {
          const status = errorStatus(err, log, rpcName);
          guard.audit(rpcName, key, address, status.code!, call.request);
          callback(status);
        } else {
          // A cancelled call's answer reaches nobody: no status to build, nothing to log but the audit.
          guard.audit(rpcName, key, address, grpc.status.CANCELLED, call.request);
        }
      };
      if (call.cancelled) onCancel();
      (handler as UnaryHandler)(call.request, { signal: cancelled.signal, deadline: deadlineOf(call) }).then(
        (res) => finish(undefined, res),
        (err: unknown) => finish(err ?? new Error("handler failed")),
      );
    };
    implementation[method.localName] = impl;
  }
  return { definition, implementation };
}

function streamingImpl(
  handler: StreamHandler,
  log: Logger,
  rpcName: string,
  shutdown: AbortSignal,
  guard: CallGuard,
): grpc.handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    let key;
    try {
      key = guard.admit(rpcName, authorizationOf(call.metadata), peerOf(call));
      if (call.request instanceof UndecodableRequest) throw undecodable(call.request);
    } catch (err) {
      call.emit("error", errorStatus(err, log, rpcName));
      return;
    }
    const cancelled = new AbortController();
    call.once("cancelled", () => cancelled.abort());
    // A stream outlives the check above: a keys file reload that revokes its key ends it.
    const revocation = guard.trackStream(key, rpcName);
    const signal = AbortSignal.any(revocation.signal ? [cancelled.signal, shutdown, revocation.signal] : [cancelled.signal, shutdown]);
    const ctx: CallContext = { signal, deadline: deadlineOf(call) };
    const messages = handler(call.request, ctx)[Symbol.asyncIterator]();
    void (async () => {
      // Backpressure by write callbacks, not by write()'s return value: grpc-js calls a write's
      // callback once HTTP/2 has taken the message within the client's flow-control window,
      // while write() only says false after 16 queued messages (its object-mode high-water
      // mark). So at most one message waits behind the one HTTP/2 holds, and a client that
      // does not read costs its window plus about two messages, not a queue. A write blocked
      // longer than the handler's stall timeout ends the stream (ctx.stall).
      const writes = { unfinished: 0, wake: undefined as (() => void) | undefined };
      const onWritten = (): void => {
        writes.unfinished--;
        writes.wake?.();
      };
      try {
        for (;;) {
          const next = await messages.next();
          if (next.done || signal.aborted) break;
          writes.unfinished++;
          call.write(next.value, onWritten);
          if (writes.unfinished > 1 && !(await previousWritten(writes, signal, ctx.stall?.timeoutMs))) {
            // Stalled: the status follows the messages already written (the client gets them
            // first), and the handler stops now, whatever the client does later.
            call.emit("error", errorStatus(ctx.stall!.error(), log, rpcName));
            return;
          }
          if (signal.aborted) break;
        }
        if (cancelled.signal.aborted) return;
        if (revocation.signal?.aborted) call.emit("error", errorStatus(revocation.signal.reason, log, rpcName));
        else if (shutdown.aborted) call.emit("error", errorStatus(new ShuttingDownError(), log, rpcName));
        else call.end();
      } catch (err) {
        // A write to a stream the client has just reset throws before grpc-js reports the
        // cancellation: the client is gone, nobody gets a status, nothing is wrong here.
        if ((err as NodeJS.ErrnoException).code === "ERR_STREAM_DESTROYED" || call.destroyed) {
          log.debug("client went away while the stream was written", { method: rpcName });
        } else if (!cancelled.signal.aborted) {
          call.emit("error", errorStatus(revocation.signal?.aborted ? revocation.signal.reason : err, log, rpcName));
        }
      } finally {
        revocation.release();
        void messages.return?.(undefined).catch(() => undefined);
      }
    })();
  };
}

/**
 * Resolves true once at most one write is unfinished (or the call is aborted), false when
 * `timeoutMs` passes first.
 */
function previousWritten(
  writes: { unfinished: number; wake: (() => void) | undefined },
  signal: AbortSignal,
  timeoutMs = Infinity,
): Promise<boolean> {
  return new Promise((resolve) => {
    const finish = (ok: boolean): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      writes.wake = undefined;
      resolve(ok);
    };
    const onAbort = (): void => finish(true);
    const timer = Number.isFinite(timeoutMs) ? setTimeout(() => finish(false), timeoutMs) : undefined;
    writes.wake = () => {
      if (writes.unfinished <= 1) finish(true);
    };
    if (signal.aborted) finish(true);
    else signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * An addService that puts `guard` in front of every method of the services added through it:
 * the reflection services, which need a key only with REFLECTION_REQUIRES_KEY (checkAccess
 * decides) but share the per-address limit with every other call.
 */
export function guardedServices(server: Pick<grpc.Server, "addService">, guard: CallGuard, log: Logger): Pick<grpc.Server, "addService"> {
  return {
    addService(definition, implementation) {
      const wrapped: grpc.UntypedServiceImplementation = {};
      for (const [name, impl] of Object.entries(implementation)) {
        const path = definition[name]?.path ?? name;
        // eslint-disable-next-line @typescript-eslint/no-explicit-any -- grpc-js implementations differ by method kind (unary: call and callback; stream: call only)
        const original = impl as (call: any, callback?: any) => void;
        // eslint-disable-next-line @typescript-eslint/no-explicit-any -- grpc-js implementations differ by method kind (unary: call and callback; stream: call only)
        wrapped[name] = ((call: any, callback?: any) => {
          try {
            guard.admit(path, authorizationOf(call.metadata as grpc.Metadata), peerOf(call));
          } catch (err) {
            const status = errorStatus(err, log, path);
            if (typeof callback === "function") callback(status);
            else call.emit("error", status);
            return;
          }
          original(call, callback);
        }) as grpc.UntypedHandleCall;
      }
      server.addService(definition, wrapped);
    },
  };
}
