import { newSessionId, uuidV7Generator } from "../../src/domain/ids";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The 128 bits of a UUID string. */
const bits = (id: string): bigint => BigInt("0x" + id.replace(/-/g, ""));
const timestampOf = (id: string): number => Number(bits(id) >> 80n);
const counterOf = (id: string): number => Number((bits(id) >> 64n) & 0xfffn);

describe("UUIDv7 session ids", () => {
  it("has the UUID form, version 7 and the RFC 9562 variant", () => {
    for (let i = 0; i < 1000; i++) {
      const id = newSessionId();
      expect(id).toMatch(UUID);
      const b = bits(id);
      expect(Number((b >> 76n) & 0xfn)).toBe(7); // version
      expect(Number((b >> 62n) & 0x3n)).toBe(0b10); // variant
    }
  });

  it("carries the creation time in its first 48 bits", () => {
    const make = uuidV7Generator(() => 1_764_220_000_123);
    const id = make();
    expect(timestampOf(id)).toBe(1_764_220_000_123);
    expect(id.startsWith("019ac3b4-d77b-7")).toBe(true);
    const before = Date.now();
    const t = timestampOf(newSessionId());
    expect(t).toBeGreaterThanOrEqual(before);
    expect(t).toBeLessThanOrEqual(Date.now());
  });

  it("is strictly increasing within a millisecond, across milliseconds and when the clock steps back", () => {
    const steps = [0, 0, 0, 1, 1, -5, -5, 2, 2, 2];
    let call = 0;
    const make = uuidV7Generator(() => 1_700_000_000_000 + steps[call % steps.length] + 10 * Math.floor(call++ / steps.length));
    let previous = make();
    for (let i = 0; i < 20_000; i++) {
      const id = make();
      // Lowercase hex of fixed length: string order is bit order.
      expect(id > previous).toBe(true);
      previous = id;
    }
  });

  it("counts up by one within a millisecond from a random start below 2^11", () => {
    const make = uuidV7Generator(() => 1_800_000_000_000);
    const first = make();
    expect(counterOf(first)).toBeLessThan(2048);
    expect(counterOf(make())).toBe(counterOf(first) + 1);
    expect(timestampOf(make())).toBe(1_800_000_000_000);
  });

  it("moves the timestamp on when the counter overflows, and stays in order", () => {
    const ms = 1_800_000_000_000;
    const frozen = uuidV7Generator(() => ms);
    const ids = Array.from({ length: 20_000 }, frozen);
    for (let i = 1; i < ids.length; i++) expect(ids[i] > ids[i - 1]).toBe(true);
    const stamps = ids.map(timestampOf);
    expect(stamps[0]).toBe(ms);
    // At least 2048 ids per millisecond, at most 4096.
    expect(stamps[2047]).toBe(ms);
    expect(stamps[ids.length - 1]).toBeGreaterThanOrEqual(ms + Math.floor(ids.length / 4096));
    expect(stamps[ids.length - 1]).toBeLessThanOrEqual(ms + Math.ceil(ids.length / 2048));
    // A real clock that catches up takes over again.
    let now = ms;
    const make = uuidV7Generator(() => now);
    for (let i = 0; i < 5000; i++) make();
    now = ms + 100;
    expect(timestampOf(make())).toBe(ms + 100);
  });

  it("is unique, with 62 fresh random bits in every id", () => {
    const seen = new Set<string>();
    const a = uuidV7Generator(() => 42);
    const b = uuidV7Generator(() => 42);
    for (let i = 0; i < 100_000; i++) {
      seen.add(a());
      seen.add(b());
    }
    expect(seen.size).toBe(200_000);
    // rand_b (without the variant bits) differs between ids, also within one millisecond.
    const randB = new Set([...seen].slice(0, 10_000).map((id) => bits(id) & ((1n << 62n) - 1n)));
    expect(randB.size).toBe(10_000);
  });
});
