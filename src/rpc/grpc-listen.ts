// The gRPC port's listener: our own net.Server in front of grpc-js, for the connection limit and
// the preface (or TLS handshake) timeout that grpc-js's bindAsync does not offer.

import * as net from "node:net";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../log";
import { grpcServerCredentials, type TlsWatcher } from "../security/tls";

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
export function listenGrpc(
  server: grpc.Server,
  host: string,
  port: number,
  log: Logger,
  limits: GrpcConnectionLimits,
): Promise<GrpcListener> {
  const internals = server as unknown as { commonServerOptions?: { settings?: Record<string, unknown> } };
  if (typeof internals.commonServerOptions !== "object")
    throw new Error("grpc-js internals changed: cannot set SETTINGS_MAX_HEADER_LIST_SIZE");
  internals.commonServerOptions.settings = { ...internals.commonServerOptions.settings, maxHeaderListSize: limits.maxHeaderListBytes };
  if (limits.tls) {
    // grpc-js hands these options to node's tls server too: a connection that has not finished
    // its handshake within the limit is destroyed (node's default is 120 s). After the
    // handshake, a session that opens no stream is closed by grpc-js's idle timeout.
    (internals.commonServerOptions as Record<string, unknown>).handshakeTimeout = limits.prefaceTimeoutMs;
  }
  const injector = server.createConnectionInjector(
    limits.tls ? grpcServerCredentials(limits.tls) : grpc.ServerCredentials.createInsecure(),
  );

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
      tcp.on("error", (err: NodeJS.ErrnoException) =>
        log.warn("gRPC port: accepting a connection failed", { error: err.code ?? err.message }),
      );
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
