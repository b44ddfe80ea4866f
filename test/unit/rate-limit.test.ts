// Rate limits (src/security/rate-limit.ts): a token bucket per API key and per client address,
// with bounded memory. A fake clock drives the buckets, so nothing here depends on timing.

import { clientAddress, grpcPeerAddress, RateLimiter, TokenBucket } from "../../src/security/rate-limit";

function clock(): { now: () => number; advance(ms: number): void } {
  let t = 1_000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

describe("TokenBucket", () => {
  it("allows a burst, then one call per 1/rate seconds, and says how long to wait", () => {
    const bucket = new TokenBucket(10, 10, 0);
    for (let i = 0; i < 10; i++) {
      expect(bucket.waitMs(0)).toBe(0);
      bucket.take();
    }
    expect(bucket.waitMs(0)).toBe(100);
    expect(bucket.waitMs(40)).toBe(60);
    expect(bucket.waitMs(100)).toBe(0);
  });

  it("never stores more than its burst", () => {
    const bucket = new TokenBucket(2, 2, 0);
    expect(bucket.waitMs(3_600_000)).toBe(0);
    bucket.take();
    bucket.take();
    expect(bucket.waitMs(3_600_000)).toBe(500);
  });
});

describe("RateLimiter", () => {
  const key = (id: string, ratePerSecond: number | undefined) => ({ id, ratePerSecond });

  it("limits a key to its rate with a burst of one second's calls and returns the wait", () => {
    const c = clock();
    const limiter = new RateLimiter({ now: c.now });
    const k = key("dashboard", 5);
    for (let i = 0; i < 5; i++) expect(limiter.checkKey(k)).toEqual({ ok: true });
    expect(limiter.checkKey(k)).toEqual({
      ok: false,
      code: "RESOURCE_EXHAUSTED",
      limit: "key",
      reason: "KEY_RATE_LIMITED",
      message: 'API key "dashboard" is over its limit of 5 calls a second',
      retryAfterMs: 200,
      metadata: { key_id: "dashboard", rate_per_second: "5" },
    });
    c.advance(200);
    expect(limiter.checkKey(k)).toEqual({ ok: true });
    // Another key has its own bucket.
    expect(limiter.checkKey(key("backend", 5))).toEqual({ ok: true });
  });

  it("gives a rate below one call a second a burst of one", () => {
    const c = clock();
    const limiter = new RateLimiter({ now: c.now });
    const k = key("slow", 0.5);
    expect(limiter.checkKey(k).ok).toBe(true);
    expect(limiter.checkKey(k)).toMatchObject({ ok: false, retryAfterMs: 2000 });
  });

  it("does not limit a key without rate_per_second, nor addresses when the address limit is off", () => {
    const limiter = new RateLimiter({ now: clock().now });
    for (let i = 0; i < 1000; i++) {
      expect(limiter.checkKey(key("unlimited", undefined)).ok).toBe(true);
      expect(limiter.checkAddress("10.0.0.1").ok).toBe(true);
    }
    expect(limiter.addressCount).toBe(0);
  });

  it("limits each client address when asked", () => {
    const c = clock();
    const limiter = new RateLimiter({ perAddressRate: 2, now: c.now });
    expect(limiter.checkAddress("10.0.0.1").ok).toBe(true);
    expect(limiter.checkAddress("10.0.0.1").ok).toBe(true);
    expect(limiter.checkAddress("10.0.0.1")).toEqual({
      ok: false,
      code: "RESOURCE_EXHAUSTED",
      limit: "address",
      reason: "ADDRESS_RATE_LIMITED",
      message: "this client address is over its limit of 2 calls a second",
      retryAfterMs: 500,
      metadata: { rate_per_second: "2" },
    });
    expect(limiter.checkAddress("10.0.0.2").ok).toBe(true);
    c.advance(500);
    expect(limiter.checkAddress("10.0.0.1").ok).toBe(true);
  });

  it("keeps the key and address limits apart", () => {
    const c = clock();
    const limiter = new RateLimiter({ perAddressRate: 1, now: c.now });
    expect(limiter.checkAddress("10.0.0.1").ok).toBe(true);
    expect(limiter.checkAddress("10.0.0.1").ok).toBe(false);
    // The address being out of tokens leaves the key's bucket untouched, and the other way round.
    const k = key("dashboard", 3);
    for (let i = 0; i < 3; i++) expect(limiter.checkKey(k).ok).toBe(true);
    expect(limiter.checkKey(k).ok).toBe(false);
    expect(limiter.checkAddress("10.0.0.2").ok).toBe(true);
  });

  it("keeps at most maxAddresses address buckets, evicting the least recently used", () => {
    const c = clock();
    const limiter = new RateLimiter({ perAddressRate: 1, maxAddresses: 3, now: c.now });
    for (const a of ["a", "b", "c"]) expect(limiter.checkAddress(a).ok).toBe(true);
    // "a" is used again (refused: still limited), so "b" is now the least recently used.
    expect(limiter.checkAddress("a").ok).toBe(false);
    expect(limiter.checkAddress("d").ok).toBe(true);
    expect(limiter.addressCount).toBe(3);
    // "a" and "c" kept their (empty) buckets; "b" was evicted and starts full.
    expect(limiter.checkAddress("a").ok).toBe(false);
    expect(limiter.checkAddress("c").ok).toBe(false);
    expect(limiter.checkAddress("b").ok).toBe(true);
    expect(limiter.addressCount).toBe(3);

    for (let i = 0; i < 10_000; i++) limiter.checkAddress(`flood-${i}`);
    expect(limiter.addressCount).toBe(3);
  });

  it("applies a changed rate at once and forgets revoked keys", () => {
    const c = clock();
    const limiter = new RateLimiter({ now: c.now });
    expect(limiter.checkKey(key("k", 1)).ok).toBe(true);
    expect(limiter.checkKey(key("k", 1)).ok).toBe(false);
    expect(limiter.checkKey(key("k", 3)).ok).toBe(true); // reloaded with a higher rate
    expect(limiter.checkKey(key("gone", 1)).ok).toBe(true);
    expect(limiter.checkKey(key("gone", 1)).ok).toBe(false);
    limiter.retainKeys(["k"]);
    // A key re-added later starts with a full bucket.
    expect(limiter.checkKey(key("gone", 1)).ok).toBe(true);
  });

  it("rejects a non-positive address rate", () => {
    expect(() => new RateLimiter({ perAddressRate: 0 })).toThrow("perAddressRate must be above 0");
  });
});

describe("clientAddress", () => {
  it.each([
    ["127.0.0.1", "127.0.0.1"],
    ["127.0.0.1:50051", "127.0.0.1"],
    ["ipv4:10.1.2.3:443", "10.1.2.3"],
    ["::ffff:192.168.1.5", "192.168.1.5"],
    ["[::1]:8080", "::1"],
    ["::1", "::1"],
    ["FE80::1%eth0", "fe80::1"],
    ["[2001:DB8::7]:9", "2001:db8::7"],
  ])("%s → %s", (peer, address) => {
    expect(clientAddress(peer)).toBe(address);
  });
});

describe("grpcPeerAddress", () => {
  it.each([
    ["127.0.0.1:50051", "127.0.0.1"],
    ["::1:50051", "::1"],
    ["::ffff:10.0.0.7:443", "10.0.0.7"],
    ["2001:db8::7:9", "2001:db8::7"],
  ])("%s → %s", (peer, address) => {
    expect(grpcPeerAddress(peer)).toBe(address);
  });
});
