// Clients for end-to-end tests: the canonical grpc-js client (on the gRPC port) and a Connect
// client (on the HTTP port), both typed from the generated code, with error details decoded.

import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { BadRequestSchema, ErrorInfoSchema, type BadRequest, type ErrorInfo } from "../../gen/google/rpc/error_details_pb";
import { StatusSchema } from "../../gen/google/rpc/status_pb";
import { SessionService } from "../../gen/session/v1/session_service_pb";
import { grpcDefinitions } from "../../src/rpc/grpc-codec";

// grpc-js generic client methods: each takes (request, [metadata], [options], callback).
type AnyFunction = (...args: unknown[]) => unknown;

type Methods = (typeof SessionService)["method"];
type In<K extends keyof Methods> = Methods[K]["input"];
type Out<K extends keyof Methods> = Methods[K]["output"];

/** A failed call, whatever the protocol: code and decoded error details. */
export class CallError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly errorInfo: ErrorInfo | undefined,
    readonly badRequest: BadRequest | undefined,
  ) {
    super(message);
  }
  /** The fields named by BadRequest field violations. */
  get fields(): string[] {
    return this.badRequest?.fieldViolations.map((v) => v.field) ?? [];
  }
}

export type SessionClient = {
  [K in keyof Methods]: (
    req: MessageInitShape<In<K> & DescMessage>,
    options?: { timeoutMs?: number },
  ) => Promise<MessageShape<Out<K> & DescMessage>>;
} & { close(): void };

function decodeGrpcError(err: grpc.ServiceError): CallError {
  const bin = err.metadata?.get("grpc-status-details-bin")[0];
  let info: ErrorInfo | undefined;
  let bad: BadRequest | undefined;
  if (bin instanceof Buffer) {
    const status = fromBinary(StatusSchema, bin);
    for (const any of status.details) {
      info ??= anyUnpack(any, ErrorInfoSchema);
      bad ??= anyUnpack(any, BadRequestSchema);
    }
  }
  return new CallError(err.code, err.details, info, bad);
}

/** TLS and an API key for a client (issue 11); without them: plaintext, no key. */
export interface SecureOptions {
  /** Trust this CA (PEM); with cert and key: present that client certificate (mTLS). */
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
  /** Sent as `authorization: Bearer <secret>`. */
  secret?: string;
}

function grpcCredentials(options: SecureOptions): grpc.ChannelCredentials {
  return options.tls
    ? grpc.credentials.createSsl(options.tls.ca, options.tls.key ?? null, options.tls.cert ?? null)
    : grpc.credentials.createInsecure();
}

function grpcMetadata(options: SecureOptions): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (options.secret !== undefined) metadata.set("authorization", `Bearer ${options.secret}`);
  return metadata;
}

/** The host name clients dial: the test certificates are for localhost and 127.0.0.1. */
const host = (options: SecureOptions): string => (options.tls ? "localhost" : "127.0.0.1");

export function grpcClient(port: number, options: SecureOptions = {}): SessionClient {
  const defs = grpcDefinitions(SessionService);
  const Ctor = grpc.makeGenericClientConstructor(defs, "SessionService");
  const client = new Ctor(`${host(options)}:${port}`, grpcCredentials(options)) as unknown as Record<string, AnyFunction> & grpc.Client;
  const out: Record<string, unknown> = { close: () => client.close() };
  for (const name of Object.keys(defs)) {
    const method = SessionService.methods.find((m) => m.localName === name)!;
    out[name] = (req: unknown, call?: { timeoutMs?: number }) =>
      new Promise((resolve, reject) => {
        const callOptions: grpc.CallOptions = call?.timeoutMs ? { deadline: Date.now() + call.timeoutMs } : {};
        client[name].call(
          client,
          create(method.input, req as never),
          grpcMetadata(options),
          callOptions,
          (err: grpc.ServiceError | null, res: unknown) => (err ? reject(decodeGrpcError(err)) : resolve(res)),
        );
      });
  }
  return out as SessionClient;
}

function wrapConnect(client: Client<typeof SessionService>): SessionClient {
  const out: Record<string, unknown> = { close: () => undefined };
  for (const method of SessionService.methods) {
    const fn = (client as unknown as Record<string, AnyFunction>)[method.localName];
    out[method.localName] = async (req: unknown, options?: { timeoutMs?: number }) => {
      try {
        return await fn(req, options);
      } catch (err) {
        const e = ConnectError.from(err);
        throw new CallError(e.code, e.rawMessage, e.findDetails(ErrorInfoSchema)[0], e.findDetails(BadRequestSchema)[0]);
      }
    };
  }
  return out as SessionClient;
}

function connectTransportOptions(port: number, options: SecureOptions) {
  return {
    baseUrl: `${options.tls ? "https" : "http"}://${host(options)}:${port}`,
    nodeOptions: options.tls ? { ca: options.tls.ca, cert: options.tls.cert, key: options.tls.key } : undefined,
    interceptors:
      options.secret === undefined
        ? []
        : [
            // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a Connect interceptor sees requests of every method
            (next: any) => async (req: any) => {
              req.header.set("authorization", `Bearer ${options.secret}`);
              return next(req);
            },
          ],
  };
}

/** A Connect-protocol client (JSON over HTTP/1.1, like curl or a browser; over HTTPS with `tls`). */
export function connectClient(port: number, options: SecureOptions = {}): SessionClient {
  return wrapConnect(
    createClient(
      SessionService,
      createConnectTransport({ ...connectTransportOptions(port, options), httpVersion: "1.1", useBinaryFormat: false }),
    ),
  );
}

/** A Connect-protocol client over HTTP/2 (TLS only: ALPN h2), binary. */
export function connectH2Client(port: number, options: SecureOptions): SessionClient {
  return wrapConnect(createClient(SessionService, createConnectTransport({ ...connectTransportOptions(port, options), httpVersion: "2" })));
}

/** A gRPC-Web client (binary over HTTP/1.1, like a browser; over HTTPS with `tls`). */
export function grpcWebClient(port: number, options: SecureOptions = {}): SessionClient {
  return wrapConnect(
    createClient(SessionService, createGrpcWebTransport({ ...connectTransportOptions(port, options), httpVersion: "1.1" })),
  );
}

/** A gRPC-protocol client of connect-node (HTTP/2), e.g. for the gRPC protocol on the HTTP port over TLS. */
export function connectGrpcClient(port: number, options: SecureOptions): SessionClient {
  return wrapConnect(createClient(SessionService, createGrpcTransport({ ...connectTransportOptions(port, options) })));
}

/** The server-streaming methods of the service. */
type StreamMethod = "watchSessions" | "watchSessionStats";
type Method = (typeof SessionService)["method"];
type StreamInit<M extends StreamMethod> = MessageInitShape<Method[M]["input"]>;

/** A server stream: its responses in order; ends when the server ends it; throws CallError on an error status. */
export interface ServerStream<T> {
  messages: AsyncIterable<T>;
  cancel(): void;
}

export type WatchStream = ServerStream<MessageShape<Method["watchSessions"]["output"]>>;
export type StatsStream = ServerStream<MessageShape<Method["watchSessionStats"]["output"]>>;
type WatchInit = StreamInit<"watchSessions">;
type StatsInit = StreamInit<"watchSessionStats">;
type StreamOptions = { timeoutMs?: number } & SecureOptions;

/** A server stream of `method` over grpc-js. */
function grpcStream<M extends StreamMethod>(method: M, port: number, req: StreamInit<M>, options: StreamOptions) {
  const defs = grpcDefinitions(SessionService);
  const Ctor = grpc.makeGenericClientConstructor(defs, "SessionService");
  const client = new Ctor(`${host(options)}:${port}`, grpcCredentials(options)) as unknown as Record<string, AnyFunction> & grpc.Client;
  const callOptions: grpc.CallOptions = options.timeoutMs ? { deadline: Date.now() + options.timeoutMs } : {};
  const input = SessionService.method[method].input as DescMessage;
  const call = client[method].call(
    client,
    create(input, req as MessageInitShape<DescMessage>),
    grpcMetadata(options),
    callOptions,
  ) as grpc.ClientReadableStream<MessageShape<Method[M]["output"]>>;
  async function* iterate() {
    try {
      for await (const msg of call) yield msg as MessageShape<Method[M]["output"]>;
    } catch (err) {
      throw decodeGrpcError(err as grpc.ServiceError);
    } finally {
      client.close();
    }
  }
  return { messages: iterate(), cancel: () => call.cancel() };
}

/** A server stream of `method` over the Connect protocol (HTTP/1.1, as a browser would). */
function connectStream<M extends StreamMethod>(method: M, port: number, req: StreamInit<M>, options: StreamOptions) {
  const client = createClient(SessionService, createConnectTransport({ ...connectTransportOptions(port, options), httpVersion: "1.1" }));
  const open = client[method] as (
    req: StreamInit<M>,
    opts: { signal: AbortSignal; timeoutMs?: number },
  ) => AsyncIterable<MessageShape<Method[M]["output"]>>;
  const abort = new AbortController();
  async function* iterate() {
    try {
      yield* open(req, { signal: abort.signal, timeoutMs: options.timeoutMs });
    } catch (err) {
      const e = ConnectError.from(err);
      throw new CallError(e.code, e.rawMessage, e.findDetails(ErrorInfoSchema)[0], e.findDetails(BadRequestSchema)[0]);
    }
  }
  return { messages: iterate(), cancel: () => abort.abort() };
}

/** A WatchSessions stream over grpc-js. */
export const grpcWatch = (port: number, req: WatchInit, options: StreamOptions = {}): WatchStream =>
  grpcStream("watchSessions", port, req, options);

/** A WatchSessions stream over the Connect protocol (HTTP/1.1). */
export const connectWatch = (port: number, req: WatchInit, options: StreamOptions = {}): WatchStream =>
  connectStream("watchSessions", port, req, options);

/** A WatchSessionStats stream over grpc-js. */
export const grpcStatsWatch = (port: number, req: StatsInit, options: StreamOptions = {}): StatsStream =>
  grpcStream("watchSessionStats", port, req, options);

/** A WatchSessionStats stream over the Connect protocol (HTTP/1.1). */
export const connectStatsWatch = (port: number, req: StatsInit, options: StreamOptions = {}): StatsStream =>
  connectStream("watchSessionStats", port, req, options);
