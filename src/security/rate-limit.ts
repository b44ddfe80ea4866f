// Rate limits: a token bucket per API key (the key's rate_per_second) and an optional
// token bucket per client address (protects an open, keyless deployment). Over a limit the
// caller answers RESOURCE_EXHAUSTED with google.rpc.RetryInfo carrying `retryAfterMs`.
// Order of a call's checks: checkAddress before authentication (failed guesses count), then
// authenticate and authorize (keys.ts), then checkKey (refused calls spend none of the key's tokens).
//
// Memory is bounded: key buckets are at most one per key of the keys file (and dropped when a
// key is revoked); address buckets are kept in least-recently-used order and the oldest is
// evicted beyond `maxAddresses`. An evicted address starts again with a full bucket, which only
// happens to addresses idle for longer than all the others, i.e. ones whose bucket had refilled
// anyway unless the table is flooded (then the limit is loose for the flooders, never stricter
// for anyone).

import { performance } from "node:perf_hooks";

/**
 * A token bucket: `rate` tokens a second, at most `burst` stored; a call takes one token. Starts
 * full, so a key's first `burst` calls are not delayed.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly rate: number,
    readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
    }
  }

  /** Milliseconds until a token is available (0: one is available now). Takes nothing. */
  waitMs(now: number): number {
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.rate) * 1000);
  }

  take(): void {
    this.tokens -= 1;
  }
}

/** Burst of a key or address limit: one second's worth of calls, at least one call. */
export function burstFor(ratePerSecond: number): number {
  return Math.max(1, ratePerSecond);
}

/**
 * A refused call: `reason`, `message`, `retryAfterMs` and `metadata` are the arguments of
 * ResourceExhaustedError (RESOURCE_EXHAUSTED with google.rpc.ErrorInfo and RetryInfo).
 */
export interface RateLimited {
  ok: false;
  code: "RESOURCE_EXHAUSTED";
  limit: "key" | "address";
  reason: "KEY_RATE_LIMITED" | "ADDRESS_RATE_LIMITED";
  message: string;
  retryAfterMs: number;
  metadata: Record<string, string>;
}

export type RateLimitResult = { ok: true } | RateLimited;

export interface RateLimiterOptions {
  /** Calls a second per client address, for every call (with or without a key); undefined: off. */
  perAddressRate?: number;
  /** Most address buckets kept; the least recently used is evicted beyond it. */
  maxAddresses?: number;
  /** Milliseconds from a monotonic clock (tests pass their own). */
  now?: () => number;
}

export class RateLimiter {
  private readonly keyBuckets = new Map<string, TokenBucket>();
  // A Map iterates in insertion order; re-inserting on use keeps it in LRU order.
  private readonly addressBuckets = new Map<string, TokenBucket>();
  private readonly perAddressRate: number | undefined;
  private readonly maxAddresses: number;
  private readonly now: () => number;

  constructor(options: RateLimiterOptions = {}) {
    if (options.perAddressRate !== undefined && !(options.perAddressRate > 0)) throw new RangeError("perAddressRate must be above 0");
    this.perAddressRate = options.perAddressRate;
    this.maxAddresses = Math.max(1, options.maxAddresses ?? 10_000);
    this.now = options.now ?? (() => performance.now());
  }

  /**
   * The per-address limit; call it first, before authentication, so that calls with a wrong key
   * (guessing) are limited too. Always ok when the address limit is off. Takes a token when ok.
   */
  checkAddress(address: string): RateLimitResult {
    if (this.perAddressRate === undefined) return { ok: true };
    const now = this.now();
    const bucket = this.addressBucket(address, this.perAddressRate, now);
    const wait = bucket.waitMs(now);
    if (wait > 0) {
      return {
        ok: false,
        code: "RESOURCE_EXHAUSTED",
        limit: "address",
        reason: "ADDRESS_RATE_LIMITED",
        message: `this client address is over its limit of ${this.perAddressRate} calls a second`,
        retryAfterMs: wait,
        metadata: { rate_per_second: String(this.perAddressRate) },
      };
    }
    bucket.take();
    return { ok: true };
  }

  /**
   * The per-key limit; call it once the key is authenticated and authorized, so that calls the
   * key may not make do not spend its tokens. Always ok for a key without rate_per_second.
   */
  checkKey(key: { id: string; ratePerSecond: number | undefined }): RateLimitResult {
    if (key.ratePerSecond === undefined) return { ok: true };
    const now = this.now();
    const bucket = this.keyBucket(key.id, key.ratePerSecond, now);
    const wait = bucket.waitMs(now);
    if (wait > 0) {
      return {
        ok: false,
        code: "RESOURCE_EXHAUSTED",
        limit: "key",
        reason: "KEY_RATE_LIMITED",
        message: `API key "${key.id}" is over its limit of ${key.ratePerSecond} calls a second`,
        retryAfterMs: wait,
        metadata: { key_id: key.id, rate_per_second: String(key.ratePerSecond) },
      };
    }
    bucket.take();
    return { ok: true };
  }

  /** Drops the buckets of keys no longer in the keys file (call on every reload). */
  retainKeys(ids: Iterable<string>): void {
    const keep = new Set(ids);
    for (const id of this.keyBuckets.keys()) if (!keep.has(id)) this.keyBuckets.delete(id);
  }

  /** Number of address buckets held (for tests and metrics). */
  get addressCount(): number {
    return this.addressBuckets.size;
  }

  private keyBucket(id: string, rate: number, now: number): TokenBucket {
    let bucket = this.keyBuckets.get(id);
    // A reload that changed the key's rate takes effect at once (with a full bucket).
    if (!bucket || bucket.rate !== rate) {
      bucket = new TokenBucket(rate, burstFor(rate), now);
      this.keyBuckets.set(id, bucket);
    }
    return bucket;
  }

  private addressBucket(address: string, rate: number, now: number): TokenBucket {
    let bucket = this.addressBuckets.get(address);
    if (bucket) {
      this.addressBuckets.delete(address);
    } else {
      bucket = new TokenBucket(rate, burstFor(rate), now);
      if (this.addressBuckets.size >= this.maxAddresses) {
        const oldest = this.addressBuckets.keys().next().value as string;
        this.addressBuckets.delete(oldest);
      }
    }
    this.addressBuckets.set(address, bucket);
    return bucket;
  }
}

/**
 * A client address normalized as the limiter's key: node's socket.remoteAddress (on the gRPC port
 * grpc-js's `call.getConnectionInfo().remoteAddress` in a server interceptor), an IPv4
 * "host:port" or a bracketed "[v6]:port". IPv4-mapped IPv6 addresses become IPv4 and zone ids
 * are dropped, so one client is one bucket. Not for grpc-js's getPeer() (grpcPeerAddress).
 */
export function clientAddress(peer: string): string {
  let p = peer.replace(/^(ipv4|ipv6):/, "");
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(p);
  if (bracketed) p = bracketed[1];
  else if (/^[^:]+:\d+$/.test(p)) p = p.slice(0, p.lastIndexOf(":"));
  p = p.replace(/%.*$/, ""); // IPv6 zone id
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(p);
  return (mapped ? mapped[1] : p).toLowerCase();
}

/**
 * The client address of grpc-js's server-side call.getPeer(), which is `${remoteAddress}:${port}`
 * without brackets for IPv6 ("::1:5000" could be read as an address). The port is always there for
 * a TCP peer, so the last ":digits" is dropped; keeping it would make every new connection a
 * new bucket.
 */
export function grpcPeerAddress(peer: string): string {
  return clientAddress(peer.replace(/:\d+$/, ""));
}
