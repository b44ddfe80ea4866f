// Server-made session ids: UUIDv7 (RFC 9562, section 5.7), time-ordered so that new sessions
// append to the primary-key index instead of writing a random leaf page of it per create.
// Layout, most significant bit first:
//   48 bits  unix_ts_ms
//    4 bits  version 0b0111
//   12 bits  rand_a: a counter (RFC 9562 section 6.2, method 1, "fixed-length dedicated counter")
//    2 bits  variant 0b10
//   62 bits  rand_b: random, fresh for every id
// The counter starts at a random value below 2^11 in each new millisecond and counts up by one
// within it, so the ids of one generator strictly increase, also when the clock steps back (the
// last millisecond is kept). After at least 2048 ids in one millisecond it would overflow: the
// timestamp then moves on by one millisecond (allowed by the RFC; far above this service's rate).
// Every id has 62 fresh random bits, so knowing one id does not help to guess another.
// Not uuid's v7: its 32-bit counter spans rand_a and rand_b (42 fresh random bits), it is monotonic only on Date.now (no injected clock), and it is slower.

import { randomFillSync } from "node:crypto";

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** A UUIDv7 generator (one per process is enough; every instance is monotonic on its own). */
export function uuidV7Generator(now: () => number = Date.now): () => string {
  // Randomness is drawn 4 KB at a time (as crypto.randomUUID caches it).
  const pool = Buffer.alloc(4096);
  let poolAt = pool.length;
  const random32 = (): number => {
    if (poolAt + 4 > pool.length) {
      randomFillSync(pool);
      poolAt = 0;
    }
    const v = pool.readUInt32BE(poolAt);
    poolAt += 4;
    return v;
  };
  let lastMs = -1;
  let counter = 0;
  return () => {
    const ms = now();
    if (ms > lastMs) {
      lastMs = ms;
      counter = random32() >>> 21; // 11 random bits
    } else if (++counter > 0xfff) {
      lastMs++;
      counter = random32() >>> 21;
    }
    const hiT = Math.floor(lastMs / 0x10000); // top 32 bits of the 48-bit timestamp
    const loT = lastMs % 0x10000;
    const r1 = random32();
    const r2 = random32();
    // One line per group of the UUID's text form.
    // prettier-ignore
    return (
      HEX[hiT >>> 24] + HEX[(hiT >>> 16) & 0xff] + HEX[(hiT >>> 8) & 0xff] + HEX[hiT & 0xff] + "-" +
      HEX[loT >>> 8] + HEX[loT & 0xff] + "-" +
      HEX[0x70 | (counter >>> 8)] + HEX[counter & 0xff] + "-" +
      HEX[0x80 | (r1 >>> 26)] + HEX[(r1 >>> 18) & 0xff] + "-" +
      HEX[(r1 >>> 10) & 0xff] + HEX[(r1 >>> 2) & 0xff] +
      HEX[r2 >>> 24] + HEX[(r2 >>> 16) & 0xff] + HEX[(r2 >>> 8) & 0xff] + HEX[r2 & 0xff]
    );
  };
}

/** The process's UUIDv7 generator: the default id maker of Sessions. */
export const newSessionId: () => string = uuidV7Generator();
