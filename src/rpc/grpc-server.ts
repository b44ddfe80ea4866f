// The gRPC engine: @grpc/grpc-js serving the contract's unary methods, with protobuf-es doing
// the (de)serialization. Measured ~3.8x connect-node's unary throughput (docs/performance.md).
// Unary calls get a real cancellation signal and run under the global admission limit
// (admission.ts); connections are accepted by listenGrpc (connection limit, preface timeout).

import * as net from "node:net";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescService, type MessageShape } from "@bufbuild/protobuf";
import type { Logger } from "../log";
import type { CallContext } from "./handlers";
import { InvalidArgumentError, ShuttingDownError } from "../domain/errors";
import { BadRequestSchema, type BadRequest } from "../../gen/google/rpc/error_details_pb";
import { statusDetailsBin, toRpcStatus, type RpcStatus } from "./status";
import { Admission } from "./admission";
import { CallGuard, refusedKey } from "./guard";
import { grpcPeerAddress } from "../security/rate-limit";
import { grpcServerCredentials, type TlsWatcher } from "../security/tls";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type UnaryHandler = (req: any, ctx: CallContext) => Promise<any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type StreamHandler = (req: any, ctx: CallContext) => AsyncIterable<any>;
export type Handler = UnaryHandler | StreamHandler;

const toBuffer = (u8: Uint8Array): Buffer => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);

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

/**
 * Size budgets of a status sent as HTTP/2 trailers. The trailers are one HPACK header block, and
 * nghttp2 (node:http2, hence grpc-js clients; also curl and others) refuses any single header
 * field over 64 KB with a *connection* error: the client sends GOAWAY(COMPRESSION_ERROR) and
 * every call on that connection fails ("Connection dropped", "Stream refused by server") or
 * hangs until its deadline. A validation error listing a violation per element of a 20000-item
 * field made grpc-message and grpc-status-details-bin that large (the fuzz's dropped
 * connections). Other clients cap the whole header list lower (gRPC C-core: 8 KB soft limit), so
 * the status stays well under that: grpc-message (percent-encoded) at most 1 KB, the details
 * (base64) at most about 5.5 KB. The Connect port sends errors in the body and is not affected.
 */
const MAX_STATUS_MESSAGE_ENCODED = 1024;
const MAX_STATUS_DETAILS_BYTES = 4096;
const MAX_VIOLATION_TEXT = 200;

const clip = (text: string, max: number): string => (text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`);

/** `message` cut so that its percent-encoded form (what grpc-js sends) fits the budget. */
function boundedMessage(message: string): string {
  if (encodeURIComponent(message).length <= MAX_STATUS_MESSAGE_ENCODED) return message;
  let keep = Math.min(message.length, MAX_STATUS_MESSAGE_ENCODED);
  for (;;) {
    const cut = clip(message, keep);
    if (encodeURIComponent(cut).length <= MAX_STATUS_MESSAGE_ENCODED || keep === 0) return cut;
    keep = Math.floor(keep / 2);
  }
}

/** The status with its message and details cut to the trailer budgets (see above). */
export function boundedStatus(status: RpcStatus): RpcStatus {
  const message = boundedMessage(status.message);
  let bounded: RpcStatus = { ...status, message };
  if (statusDetailsBin(bounded).length <= MAX_STATUS_DETAILS_BYTES) return bounded;
  // Field violations: each one's texts clipped, then as many as fit (the first ones, in order).
  const all = status.details.map((d) => {
    if (d.desc.typeName !== BadRequestSchema.typeName) return d;
    const v = (d.value as BadRequest).fieldViolations;
    return { desc: d.desc, value: create(BadRequestSchema, { fieldViolations: v.map((f) => ({ ...f, field: clip(f.field, MAX_VIOLATION_TEXT), description: clip(f.description, MAX_VIOLATION_TEXT) })) }) };
  });
  const withViolations = (n: number): RpcStatus => ({
    ...status,
    message,
    details: all.map((d) => (d.desc.typeName === BadRequestSchema.typeName ? { desc: d.desc, value: create(BadRequestSchema, { fieldViolations: (d.value as BadRequest).fieldViolations.slice(0, n) }) } : d)),
  });
  let lo = 0;
  let hi = Math.max(0, ...all.map((d) => (d.desc.typeName === BadRequestSchema.typeName ? (d.value as BadRequest).fieldViolations.length : 0)));
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (statusDetailsBin(withViolations(mid)).length <= MAX_STATUS_DETAILS_BYTES) lo = mid;
    else hi = mid - 1;
  }
  bounded = withViolations(lo);
  if (statusDetailsBin(bounded).length <= MAX_STATUS_DETAILS_BYTES) return bounded;
  // Still too large (e.g. a huge ErrorInfo metadata value): the code and message only.
  return { ...status, message, details: [] };
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

function streamingImpl(handler: StreamHandler, log: Logger, rpcName: string, shutdown: AbortSignal, guard: CallGuard): grpc.handleServerStreamingCall<unknown, unknown> {
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
function previousWritten(writes: { unfinished: number; wake: (() => void) | undefined }, signal: AbortSignal, timeoutMs = Infinity): Promise<boolean> {
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

/** Connection limits of the gRPC port (config.ts). */
export interface GrpcConnectionLimits {
  maxConnections: number;
  /** A new connection must send the 24-byte HTTP/2 client preface within this. */
  prefaceTimeoutMs: number;
  /** Advertised as SETTINGS_MAX_HEADER_LIST_SIZE. */
  maxHeaderListBytes: number;
  /**
   * TLS (and mTLS) from these files, following their rotation; undefined: plaintext. The preface
   * is then encrypted, so `prefaceTimeoutMs` bounds the TLS handshake instead.
   */
  tls?: TlsWatcher;
}

/** A port that cannot be bound: names the port and the reason (e.g. EADDRINUSE). */
export class GrpcListenError extends Error {}

const HTTP2_PREFACE_BYTES = 24; // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

export interface GrpcListener {
  port: number;
  /** Stops accepting connections and drops those still owing their preface. */
  close(): void;
}

/**
 * Serves `server` on host:port through a net.Server of ours, handing grpc-js each connection once
 * its HTTP/2 preface has arrived (grpc-js's public connection injector).
 *
 * Why not bindAsync: grpc-js creates its node:http2 servers internally and offers no connection
 * limit and no handshake timeout. node:http2 makes a session the moment a TCP connection is
 * accepted, so a client that never sends a byte costs a whole HTTP/2 session (about 18 KB) until
 * the idle timeout. Here such a connection is a bare socket, destroyed after `prefaceTimeoutMs`;
 * `maxConnections` (node's own accept-time check) closes connections beyond the limit at once.
 * Once injected, grpc-js's own options apply: idle timeout, keepalive, concurrent streams.
 *
 * grpc-js 1.14 does not pass a max header list size to node:http2 (it has no server option for
 * it), so the setting is added to the options grpc-js gives node:http2 (a private field; the
 * connections test reads the advertised SETTINGS, so a grpc-js change that drops it fails there).
 * node:http2 then both advertises and enforces it.
 */
export function listenGrpc(server: grpc.Server, host: string, port: number, log: Logger, limits: GrpcConnectionLimits): Promise<GrpcListener> {
  const internals = server as unknown as { commonServerOptions?: { settings?: Record<string, unknown> } };
  if (typeof internals.commonServerOptions !== "object") throw new Error("grpc-js internals changed: cannot set SETTINGS_MAX_HEADER_LIST_SIZE");
  internals.commonServerOptions.settings = { ...internals.commonServerOptions.settings, maxHeaderListSize: limits.maxHeaderListBytes };
  if (limits.tls) {
    // grpc-js hands these options to node's tls server too: a connection that has not finished
    // its handshake within the limit is destroyed (node's default is 120 s). After the
    // handshake, a session that opens no stream is closed by grpc-js's idle timeout.
    (internals.commonServerOptions as Record<string, unknown>).handshakeTimeout = limits.prefaceTimeoutMs;
  }
  const injector = server.createConnectionInjector(limits.tls ? grpcServerCredentials(limits.tls) : grpc.ServerCredentials.createInsecure());

  const pending = new Set<net.Socket>();
  const tcp = net.createServer((socket) => {
    socket.on("error", () => undefined); // a reset before the preface is routine
    if (limits.tls) {
      // The TLS server reads the ClientHello itself; its handshake timeout is set above.
      injector.injectConnection(socket);
      return;
    }
    pending.add(socket);
    const chunks: Buffer[] = [];
    let received = 0;
    const timer = setTimeout(() => socket.destroy(), limits.prefaceTimeoutMs);
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      received += chunk.length;
      if (received < HTTP2_PREFACE_BYTES) return;
      cleanup();
      // Give node:http2 the bytes read so far (it reads a socket's buffered data first).
      socket.pause();
      socket.unshift(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
      injector.injectConnection(socket);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      pending.delete(socket);
      socket.off("data", onData);
      socket.off("close", cleanup);
    };
    socket.on("data", onData);
    socket.once("close", cleanup);
  });
  tcp.maxConnections = limits.maxConnections;
  const address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return new Promise((resolve, reject) => {
    tcp.once("error", (err: NodeJS.ErrnoException) =>
      reject(new GrpcListenError(`cannot listen on ${address} (GRPC_PORT): ${err.code ?? err.message}`, { cause: err })),
    );
    tcp.listen(port, host, () => {
      tcp.removeAllListeners("error");
      // e.g. EMFILE while accepting: node keeps listening; say so once per error.
      tcp.on("error", (err: NodeJS.ErrnoException) => log.warn("gRPC port: accepting a connection failed", { error: err.code ?? err.message }));
      const bound = tcp.address();
      resolve({
        port: typeof bound === "object" && bound ? bound.port : port,
        close: () => {
          tcp.close();
          for (const socket of pending) socket.destroy();
          pending.clear();
        },
      });
    });
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
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        const original = impl as (call: any, callback?: any) => void;
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
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
