// Protobuf-es messages on grpc-js: the method definitions of a generated service, with
// (de)serializers that never throw inside grpc-js (an undecodable request becomes INVALID_ARGUMENT).

import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary, type DescMessage, type DescService, type MessageShape } from "@bufbuild/protobuf";
import { InvalidArgumentError } from "../domain/errors";

export const toBuffer = (u8: Uint8Array): Buffer => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);

function codec<D extends DescMessage>(desc: D) {
  return {
    serialize: (msg: MessageShape<D>): Buffer => toBuffer(toBinary(desc, msg)),
    deserialize: (buf: Buffer): MessageShape<D> => fromBinary(desc, buf),
  };
}

/**
 * What a request deserializer returns for bytes that are not a valid message (bad wire format,
 * invalid UTF-8, nesting past the decoder's limit). grpc-js answers INTERNAL for a deserializer
 * that throws; the handler wrappers answer this with INVALID_ARGUMENT instead.
 */
export class UndecodableRequest {
  constructor(readonly reason: string) {}
}

function requestCodec<D extends DescMessage>(desc: D) {
  return {
    serialize: (msg: MessageShape<D>): Buffer => toBuffer(toBinary(desc, msg)),
    deserialize: (buf: Buffer): MessageShape<D> | UndecodableRequest => {
      try {
        return fromBinary(desc, buf);
      } catch (err) {
        return new UndecodableRequest(err instanceof Error ? err.message : String(err));
      }
    },
  };
}

/** The INVALID_ARGUMENT answer for an undecodable request. */
export function undecodable(request: UndecodableRequest): InvalidArgumentError {
  return InvalidArgumentError.field("request", `cannot be decoded as the method's request message: ${request.reason}`);
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

/**
 * grpc-js method definitions (path and codecs) for the unary and server-streaming methods of
 * `service`; used by the
 * server below and by grpc-js clients (tests, benchmarks).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- grpc-js's MethodDefinition is generic in the message type and these definitions cover every method
export function grpcDefinitions(service: DescService): Record<string, grpc.MethodDefinition<any, any>> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- grpc-js's MethodDefinition is generic in the message type and these definitions cover every method
  const definition: Record<string, grpc.MethodDefinition<any, any>> = {};
  for (const method of service.methods) {
    if (method.methodKind !== "unary" && method.methodKind !== "server_streaming") continue;
    const input = requestCodec(method.input);
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
