// Undecodable binary requests on the HTTP port get INVALID_ARGUMENT, as on the gRPC port.
//
// connect-es parses a request's protobuf binary before any interceptor or handler runs, and
// answers bytes that do not parse with INTERNAL ("parse binary: ..."), which says "the server
// is broken" for what is the client's mistake. So the HTTP adapter decodes binary request
// messages once itself first. A message that does not decode is replaced by an empty message
// (always valid), and the reason travels to the handler in the call's context values; the
// handler wrapper then throws InvalidArgumentError, which connect-es encodes in whatever
// protocol the client speaks (Connect unary, Connect streaming, gRPC-Web). JSON bodies need
// none of this: connect-es already answers a bad JSON body with INVALID_ARGUMENT.
//
// Cost: one extra fromBinary of each binary request on the HTTP port (the request messages
// are small; the gRPC port, the fast path, decodes once). Bodies larger than the read limit,
// compressed bodies and base64 gRPC-Web text are passed on untouched: connect-es answers those
// itself (RESOURCE_EXHAUSTED for the size).

import { fromBinary, type DescMessage } from "@bufbuild/protobuf";
import { createContextKey } from "@connectrpc/connect";

/** Why the request message could not be decoded; undefined when it could. */
export const DECODE_ERROR = createContextKey<string | undefined>(undefined, { description: "request decode error" });

type Framing = "raw" | "enveloped";

/** How a content type carries the request message in binary, or null for JSON and the rest. */
function framingOf(contentType: string): Framing | null {
  const type = contentType.split(";", 1)[0].trim().toLowerCase();
  if (type === "application/proto") return "raw"; // Connect unary
  if (type === "application/connect+proto" || type === "application/grpc-web" || type === "application/grpc-web+proto") return "enveloped";
  return null;
}

async function* prepend(head: Uint8Array, rest: AsyncIterator<Uint8Array> | undefined): AsyncGenerator<Uint8Array> {
  if (head.byteLength > 0) yield head;
  if (rest === undefined) return;
  for (;;) {
    const next = await rest.next();
    if (next.done) return;
    yield next.value;
  }
}

export interface CheckedBody {
  body: AsyncIterable<Uint8Array>;
  /** Set when the request message does not decode; `body` then carries an empty message. */
  error?: string;
}

/**
 * Reads a binary request body (up to `readMaxBytes` plus framing) and decodes its message as
 * `input`. Returns the body to hand to connect-es (the same bytes, or an empty message in their
 * place) and the decode error, if any.
 */
export async function checkBinaryBody(
  body: AsyncIterable<Uint8Array>,
  headers: { contentType: string; encoded: boolean },
  input: DescMessage,
  readMaxBytes: number,
): Promise<CheckedBody> {
  const framing = framingOf(headers.contentType);
  if (framing === null || headers.encoded) return { body };
  const iterator = body[Symbol.asyncIterator]();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const limit = readMaxBytes + 5;
  let ended = false;
  while (size <= limit) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    chunks.push(next.value);
    size += next.value.byteLength;
  }
  const bytes = Buffer.concat(chunks, size);
  // Over the limit: connect-es reads the rest and answers with its own limit error.
  if (!ended) return { body: prepend(bytes, iterator) };
  let payload: Uint8Array;
  let after: Uint8Array = new Uint8Array(0);
  if (framing === "raw") {
    payload = bytes;
  } else {
    // One envelope: a flags byte, a 4-byte big-endian length, the message. Compressed (flag 1)
    // or malformed envelopes are connect-es's to answer.
    if (bytes.byteLength < 5 || (bytes[0] & 0x01) !== 0) return { body: prepend(bytes, undefined) };
    const length = bytes.readUInt32BE(1);
    if (5 + length > bytes.byteLength || (bytes[0] & 0x80) !== 0) return { body: prepend(bytes, undefined) };
    payload = bytes.subarray(5, 5 + length);
    after = bytes.subarray(5 + length);
  }
  try {
    fromBinary(input, payload);
    return { body: prepend(bytes, undefined) };
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    const empty = framing === "raw" ? new Uint8Array(0) : Buffer.concat([Buffer.from([bytes[0], 0, 0, 0, 0]), after]);
    return { body: prepend(empty, undefined), error };
  }
}
