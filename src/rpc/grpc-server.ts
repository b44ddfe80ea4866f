// The gRPC engine: @grpc/grpc-js serving the contract's unary methods, with protobuf-es doing
// the (de)serialization. Measured ~3.8x connect-node's unary throughput (docs/performance.md).

import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary, type DescMessage, type DescService, type MessageShape } from "@bufbuild/protobuf";
import type { Logger } from "../log";
import type { CallContext } from "./handlers";
import { ShuttingDownError } from "../domain/errors";
import { statusDetailsBin, toRpcStatus } from "./status";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type UnaryHandler = (req: any, ctx: CallContext) => Promise<any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type StreamHandler = (req: any, ctx: CallContext) => AsyncIterable<any>;
export type Handler = UnaryHandler | StreamHandler;

const NEVER = new AbortController().signal;

const toBuffer = (u8: Uint8Array): Buffer => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);

function codec<D extends DescMessage>(desc: D) {
  return {
    serialize: (msg: MessageShape<D>): Buffer => toBuffer(toBinary(desc, msg)),
    deserialize: (buf: Buffer): MessageShape<D> => fromBinary(desc, buf),
  };
}

/**
 * For streamed responses: one message object sent on many streams (a change every watcher of
 * it receives, see changeResponse in handlers.ts) is encoded once. grpc-js copies the bytes into
 * each stream's frame, and messages are never modified after they are built.
 */
function sharedCodec<D extends DescMessage>(desc: D) {
  const encoded = new WeakMap<object, Buffer>();
  return {
    serialize: (msg: MessageShape<D>): Buffer => {
      let bytes = encoded.get(msg);
      if (bytes === undefined) {
        bytes = toBuffer(toBinary(desc, msg));
        encoded.set(msg, bytes);
      }
      return bytes;
    },
    deserialize: (buf: Buffer): MessageShape<D> => fromBinary(desc, buf),
  };
}

function deadlineOf(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>): Date | undefined {
  const d = call.getDeadline();
  if (d instanceof Date) return d;
  return Number.isFinite(d) ? new Date(d) : undefined;
}

/**
 * grpc-js method definitions (path and codecs) for the unary and server-streaming methods of
 * `service`; used by the
 * server below and by grpc-js clients (tests, benchmarks).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function grpcDefinitions(service: DescService): Record<string, grpc.MethodDefinition<any, any>> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const definition: Record<string, grpc.MethodDefinition<any, any>> = {};
  for (const method of service.methods) {
    if (method.methodKind !== "unary" && method.methodKind !== "server_streaming") continue;
    const input = codec(method.input);
    const output = method.methodKind === "server_streaming" ? sharedCodec(method.output) : codec(method.output);
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: false,
      responseStream: method.methodKind === "server_streaming",
      requestSerialize: input.serialize,
      requestDeserialize: input.deserialize,
      responseSerialize: output.serialize,
      responseDeserialize: output.deserialize,
    };
  }
  return definition;
}

function errorStatus(err: unknown, log: Logger, rpcName: string): Partial<grpc.StatusObject> {
  const status = toRpcStatus(err, log, rpcName);
  const metadata = new grpc.Metadata();
  metadata.set("grpc-status-details-bin", toBuffer(statusDetailsBin(status)));
  return { code: status.code as number, details: status.message, metadata };
}

/**
 * A grpc-js service definition and implementation for `service`. Server streams end with
 * UNAVAILABLE (ShuttingDownError) when `shutdown` aborts, and stop at once when the client
 * cancels or the deadline passes; writes wait for the socket to drain (no unbounded buffering).
 */
export function grpcService(
  service: DescService,
  handlers: Record<string, Handler>,
  log: Logger,
  shutdown: AbortSignal = new AbortController().signal,
): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  const all = grpcDefinitions(service);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const definition: Record<string, grpc.MethodDefinition<any, any>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const method of service.methods) {
    const handler = handlers[method.localName];
    if (!all[method.localName] || !handler) continue;
    definition[method.localName] = all[method.localName];
    const rpcName = `${service.typeName}/${method.name}`;
    if (method.methodKind === "server_streaming") {
      implementation[method.localName] = streamingImpl(handler as StreamHandler, log, rpcName, shutdown);
      continue;
    }
    const impl: grpc.handleUnaryCall<unknown, unknown> = (call, callback) => {
      // Unary handlers are bounded by their deadline; no per-call AbortController (grpc-js emits
      // "cancelled" after every call, which would cost an abort per call for nothing).
      (handler as UnaryHandler)(call.request, { signal: NEVER, deadline: deadlineOf(call) }).then(
        (res) => callback(null, res),
        (err: unknown) => callback(errorStatus(err, log, rpcName)),
      );
    };
    implementation[method.localName] = impl;
  }
  return { definition, implementation };
}

function streamingImpl(handler: StreamHandler, log: Logger, rpcName: string, shutdown: AbortSignal): grpc.handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    const cancelled = new AbortController();
    call.once("cancelled", () => cancelled.abort());
    const signal = AbortSignal.any([cancelled.signal, shutdown]);
    void (async () => {
      try {
        for await (const msg of handler(call.request, { signal, deadline: deadlineOf(call) })) {
          if (signal.aborted) break;
          // write() returning false means the socket buffer is full: wait for it to drain.
          if (!call.write(msg)) await drained(call, signal);
        }
        if (cancelled.signal.aborted) return;
        if (shutdown.aborted) call.emit("error", errorStatus(new ShuttingDownError(), log, rpcName));
        else call.end();
      } catch (err) {
        if (!cancelled.signal.aborted) call.emit("error", errorStatus(err, log, rpcName));
      }
    })();
  };
}

function drained(call: grpc.ServerWritableStream<unknown, unknown>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      call.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    call.once("drain", done);
    signal.addEventListener("abort", done, { once: true });
  });
}
