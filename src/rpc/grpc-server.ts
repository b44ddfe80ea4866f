// The gRPC engine: @grpc/grpc-js serving the contract's unary methods, with protobuf-es doing
// the (de)serialization. Measured ~3x connect-node's unary throughput (docs/performance.md).

import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary, type DescMessage, type DescService, type MessageShape } from "@bufbuild/protobuf";
import type { Logger } from "../log";
import type { CallContext } from "./handlers";
import { statusDetailsBin, toRpcStatus } from "./status";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type UnaryHandler = (req: any, ctx: CallContext) => Promise<any>;

const toBuffer = (u8: Uint8Array): Buffer => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);

function codec<D extends DescMessage>(desc: D) {
  return {
    serialize: (msg: MessageShape<D>): Buffer => toBuffer(toBinary(desc, msg)),
    deserialize: (buf: Buffer): MessageShape<D> => fromBinary(desc, buf),
  };
}

function deadlineOf(call: grpc.ServerUnaryCall<unknown, unknown>): Date | undefined {
  const d = call.getDeadline();
  if (d instanceof Date) return d;
  return Number.isFinite(d) ? new Date(d) : undefined;
}

/**
 * grpc-js method definitions (path and codecs) for the unary methods of `service`; used by the
 * server below and by grpc-js clients (tests, benchmarks).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function grpcDefinitions(service: DescService): Record<string, grpc.MethodDefinition<any, any>> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const definition: Record<string, grpc.MethodDefinition<any, any>> = {};
  for (const method of service.methods) {
    if (method.methodKind !== "unary") continue;
    const input = codec(method.input);
    const output = codec(method.output);
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: input.serialize,
      requestDeserialize: input.deserialize,
      responseSerialize: output.serialize,
      responseDeserialize: output.deserialize,
    };
  }
  return definition;
}

/** A grpc-js service definition and implementation for the unary methods of `service`. */
export function grpcService(
  service: DescService,
  handlers: Record<string, UnaryHandler>,
  log: Logger,
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
    const impl: grpc.handleUnaryCall<unknown, unknown> = (call, callback) => {
      const abort = new AbortController();
      call.once("cancelled", () => abort.abort());
      handler(call.request, { signal: abort.signal, deadline: deadlineOf(call) }).then(
        (res) => callback(null, res),
        (err: unknown) => {
          const status = toRpcStatus(err, log, rpcName);
          const metadata = new grpc.Metadata();
          metadata.set("grpc-status-details-bin", toBuffer(statusDetailsBin(status)));
          callback({ code: status.code as number, details: status.message, metadata });
        },
      );
    };
    implementation[method.localName] = impl;
  }
  return { definition, implementation };
}
