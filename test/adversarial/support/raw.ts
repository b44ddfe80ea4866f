// Raw-bytes callers for the adversarial tests: what a careless or hostile client sends, not
// what a generated client would. gRPC through grpc-js with identity serializers (the request
// is the bytes given, unchecked), Connect through fetch with the body given.

import * as grpc from "@grpc/grpc-js";

/** gRPC status codes (numbers) and their Connect names. */
export const CODE_NAMES: Record<number, string> = {
  0: "ok",
  1: "canceled",
  2: "unknown",
  3: "invalid_argument",
  4: "deadline_exceeded",
  5: "not_found",
  6: "already_exists",
  7: "permission_denied",
  8: "resource_exhausted",
  9: "failed_precondition",
  10: "aborted",
  11: "out_of_range",
  12: "unimplemented",
  13: "internal",
  14: "unavailable",
  15: "data_loss",
  16: "unauthenticated",
};

/** The codes the contract allows a call to end with (issue 10, "What it must show"). */
export const DOCUMENTED_CODES = new Set([
  "ok",
  "invalid_argument",
  "not_found",
  "already_exists",
  "aborted",
  "failed_precondition",
  "out_of_range",
  "resource_exhausted",
  "unavailable",
  "deadline_exceeded",
  "canceled",
]);

/** How one call ended, whatever the protocol. */
export interface Outcome {
  /** Connect name of the code ("ok", "invalid_argument", ...), or "http_<status>" when an HTTP error had no Connect error body. */
  code: string;
  message: string;
  /** HTTP status (Connect only). */
  http?: number;
  /** The response message(s), when OK. */
  body?: Buffer;
  ms: number;
}

const identity = (b: Buffer): Buffer => b;

export class RawGrpc {
  private readonly client: grpc.Client;
  /** `ownConnection`: a connection of its own, not shared with other clients of the same port (grpc-js shares by default). */
  constructor(port: number, ownConnection = false) {
    this.client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
      ...(ownConnection ? { "grpc.use_local_subchannel_pool": 1 } : {}),
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.max_send_message_length": 64 * 1024 * 1024,
    });
  }

  unary(path: string, req: Buffer, timeoutMs: number): Promise<Outcome> {
    const t0 = performance.now();
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(path, identity, identity, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        const ms = performance.now() - t0;
        if (err) resolve({ code: CODE_NAMES[err.code] ?? `code_${err.code}`, message: err.details, ms });
        else resolve({ code: "ok", message: "", body: res, ms });
      });
    });
  }

  /**
   * A server stream: waits for its first message (then cancels: the call counts as OK) or its
   * status, whichever comes first; the deadline bounds a quiet stream.
   */
  streamFirst(path: string, req: Buffer, timeoutMs: number): Promise<Outcome> {
    const t0 = performance.now();
    return new Promise((resolve) => {
      let done = false;
      const call = this.client.makeServerStreamRequest(path, identity, identity, req, new grpc.Metadata(), {
        deadline: Date.now() + timeoutMs,
      });
      call.on("data", (msg: Buffer) => {
        if (done) return;
        done = true;
        resolve({ code: "ok", message: "", body: msg, ms: performance.now() - t0 });
        call.cancel();
      });
      call.on("error", () => undefined); // the status below says it all
      call.on("status", (s: grpc.StatusObject) => {
        if (done) return;
        done = true;
        resolve({ code: CODE_NAMES[s.code] ?? `code_${s.code}`, message: s.details, ms: performance.now() - t0 });
      });
    });
  }

  /** grpc.health.v1.Health/Check for `service`; resolves with the serving status (1 = SERVING) or the error code. */
  async health(service = "", timeoutMs = 5000): Promise<{ status?: number; code: string; message?: string; ms: number }> {
    const name = Buffer.from(service, "utf8");
    const req = name.length ? Buffer.concat([Buffer.from([0x0a, name.length]), name]) : Buffer.alloc(0);
    const out = await this.unary("/grpc.health.v1.Health/Check", req, timeoutMs);
    if (out.code !== "ok") return { code: out.code, message: out.message, ms: out.ms };
    // HealthCheckResponse { ServingStatus status = 1; } — absent means UNKNOWN (0).
    const b = out.body!;
    return { code: "ok", status: b.length >= 2 && b[0] === 0x08 ? b[1] : 0, ms: out.ms };
  }

  close(): void {
    this.client.close();
  }
}

/** Reads a Connect error body; undefined when the body is not one. */
function connectError(text: string): { code: string; message: string } | undefined {
  try {
    const j = JSON.parse(text) as { code?: unknown; message?: unknown };
    if (typeof j?.code === "string") return { code: j.code, message: typeof j.message === "string" ? j.message : "" };
  } catch {
    /* not JSON */
  }
  return undefined;
}

export type ConnectFormat = "proto" | "json";

/** A Connect unary call: POST with the body as given. */
export async function connectUnary(port: number, method: string, body: Buffer, format: ConnectFormat, timeoutMs: number): Promise<Outcome> {
  const t0 = performance.now();
  const abort = AbortSignal.timeout(timeoutMs + 2000);
  try {
    const res = await fetch(`http://127.0.0.1:${port}/session.v1.SessionService/${method}`, {
      method: "POST",
      headers: { "content-type": `application/${format}`, "connect-protocol-version": "1", "connect-timeout-ms": String(timeoutMs) },
      body,
      signal: abort,
    });
    const bytes = Buffer.from(await res.arrayBuffer());
    const ms = performance.now() - t0;
    if (res.status === 200) return { code: "ok", message: "", http: 200, body: bytes, ms };
    const err = connectError(bytes.toString("utf8"));
    if (err) return { ...err, http: res.status, ms };
    return { code: `http_${res.status}`, message: bytes.subarray(0, 200).toString("utf8"), http: res.status, ms };
  } catch (err) {
    return { code: "client_error", message: describeFetchError(err), ms: performance.now() - t0 };
  }
}

/** fetch's "fetch failed" with its cause (a reset, the server closing the socket, ...). */
function describeFetchError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause ? `${String(err)} (${cause.code ?? ""} ${cause.message ?? ""})` : String(err);
}

/** One enveloped Connect stream message (flags 0). */
export function envelope(payload: Buffer, flags = 0): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/**
 * A Connect server-streaming call: waits for the first message (then aborts: OK) or the
 * end-of-stream message, whichever comes first.
 */
export async function connectStreamFirst(
  port: number,
  method: string,
  payload: Buffer,
  format: ConnectFormat,
  timeoutMs: number,
): Promise<Outcome> {
  const t0 = performance.now();
  const ac = new AbortController();
  // A server that ignores the timeout header: "client_error" after 10 s more (a violation).
  const guard = setTimeout(() => ac.abort(), timeoutMs + 10_000);
  try {
    const res = await fetch(`http://127.0.0.1:${port}/session.v1.SessionService/${method}`, {
      method: "POST",
      headers: {
        "content-type": `application/connect+${format}`,
        "connect-protocol-version": "1",
        "connect-timeout-ms": String(timeoutMs),
      },
      body: envelope(payload),
      signal: ac.signal,
    });
    if (res.status !== 200) {
      const text = await res.text();
      const err = connectError(text);
      const ms = performance.now() - t0;
      return err ? { ...err, http: res.status, ms } : { code: `http_${res.status}`, message: text.slice(0, 200), http: res.status, ms };
    }
    const reader = res.body!.getReader();
    let buf = Buffer.alloc(0);
    for (;;) {
      const { value, done } = await reader.read();
      if (value) buf = Buffer.concat([buf, Buffer.from(value)]);
      while (buf.length >= 5) {
        const len = buf.readUInt32BE(1);
        if (buf.length < 5 + len) break;
        const flags = buf[0];
        const msg = buf.subarray(5, 5 + len);
        buf = buf.subarray(5 + len);
        const ms = performance.now() - t0;
        if ((flags & 0x02) === 0) {
          ac.abort();
          return { code: "ok", message: "", http: 200, body: Buffer.from(msg), ms };
        }
        const end = JSON.parse(msg.toString("utf8")) as { error?: { code?: string; message?: string } };
        ac.abort();
        if (end.error) return { code: end.error.code ?? "missing_code", message: end.error.message ?? "", http: 200, ms };
        return { code: "ok", message: "(empty stream)", http: 200, ms };
      }
      if (done)
        return {
          code: "truncated_stream",
          message: "the stream ended without an end-of-stream message",
          http: 200,
          ms: performance.now() - t0,
        };
    }
  } catch (err) {
    return { code: "client_error", message: describeFetchError(err), ms: performance.now() - t0 };
  } finally {
    clearTimeout(guard);
  }
}
