// Hostile clients for the resource tests: rapid-reset bursts over raw HTTP/2 (node:http2, not a
// gRPC library, so nothing smooths the pattern), HTTP/1.1 requests whose sockets are destroyed
// right after sending, idle TCP connections, and probes of the server process (RSS, health).

import * as http2 from "node:http2";
import * as net from "node:net";
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";

/** A gRPC message frame: uncompressed flag, 4-byte length, the protobuf bytes. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

export interface ResetBurstResult {
  /** Streams opened and reset. */
  sent: number;
  /** HTTP/2 connections used (the server may end a connection that resets too fast). */
  connections: number;
  /** When the last reset had been written (performance.now()). */
  endedAt: number;
}

/**
 * Sends `total` gRPC calls, each HEADERS + DATA (a whole valid request) followed at once by
 * RST_STREAM(CANCEL), over `connections` HTTP/2 connections in parallel. A connection the
 * server closes (e.g. nghttp2's reset-flood GOAWAY) is replaced. Resolves once every stream is
 * closed on the client side, i.e. every reset has been handed to the socket.
 */
export async function resetBurst(
  port: number,
  total: number,
  connections: number,
  request: (i: number) => { path: string; body: Buffer },
): Promise<ResetBurstResult> {
  let next = 0;
  let opened = 0;
  const open = (): http2.ClientHttp2Session => {
    opened++;
    const s = http2.connect(`http://127.0.0.1:${port}`);
    s.on("error", () => undefined);
    return s;
  };
  const lane = async (): Promise<void> => {
    let session = open();
    const closes: Promise<void>[] = [];
    while (next < total) {
      const i = next++;
      const { path, body } = request(i);
      if (session.closed || session.destroyed) session = open();
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
      } catch {
        session = open();
        stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
      }
      stream.on("error", () => undefined);
      closes.push(new Promise((resolve) => stream.once("close", () => resolve())));
      stream.end(body);
      stream.close(http2.constants.NGHTTP2_CANCEL);
      // Let the frames go out in batches, as a fast client's would.
      if (i % 50 === 49) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(closes);
    session.destroy();
  };
  await Promise.all(Array.from({ length: connections }, lane));
  return { sent: total, connections: opened, endedAt: performance.now() };
}

/**
 * Sends `total` HTTP/1.1 requests (Connect protocol, JSON), each on its own connection that is
 * destroyed as soon as the request is written; `parallel` at a time.
 */
export async function destroyedRequestBurst(
  port: number,
  total: number,
  parallel: number,
  request: (i: number) => { path: string; json: string },
): Promise<{ endedAt: number }> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < total) {
      const { path, json } = request(next++);
      await new Promise<void>((resolve) => {
        const socket = net.connect(port, "127.0.0.1");
        socket.on("error", () => resolve());
        socket.on("close", () => resolve());
        socket.on("connect", () => {
          const body = Buffer.from(json);
          socket.write(
            `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
          );
          socket.write(body, () => socket.destroy());
        });
      });
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
  return { endedAt: performance.now() };
}

/** Resident set size of a process, in MB (Linux /proc). */
export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
  return kb / 1024;
}

/** A grpc.health.v1 client on its own connection (not shared with other grpc-js clients). */
export function healthClient(port: number): { check(service?: string): Promise<number>; close(): void } {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
  return {
    // HealthCheckRequest { string service = 1 }; HealthCheckResponse { ServingStatus status = 1 }.
    check: (service = "") =>
      new Promise((resolve, reject) => {
        const name = Buffer.from(service);
        const req = name.length ? Buffer.concat([Buffer.from([0x0a, name.length]), name]) : Buffer.alloc(0);
        client.makeUnaryRequest(
          "/grpc.health.v1.Health/Check",
          (b: Buffer) => b,
          (b: Buffer) => b,
          req,
          { deadline: Date.now() + 10_000 },
          (err, res) => (err ? reject(err) : resolve(res && res.length >= 2 && res[0] === 0x08 ? res[1]! : 0)),
        );
      }),
    close: () => client.close(),
  };
}

/** Opens `count` TCP connections that send nothing; resolves once all are connected or refused. */
export async function idleConnections(port: number, count: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  const batch = 200;
  for (let i = 0; i < count; i += batch) {
    await Promise.all(
      Array.from(
        { length: Math.min(batch, count - i) },
        () =>
          new Promise<void>((resolve) => {
            const socket = net.connect(port, "127.0.0.1");
            sockets.push(socket);
            socket.resume(); // read, so that a close by the server is seen at once
            socket.on("error", () => resolve());
            socket.once("connect", () => resolve());
            socket.once("close", () => resolve());
          }),
      ),
    );
  }
  return sockets;
}

/** How many of `sockets` the server has not closed yet. */
export function stillOpen(sockets: net.Socket[]): number {
  return sockets.filter((s) => !s.destroyed).length;
}
