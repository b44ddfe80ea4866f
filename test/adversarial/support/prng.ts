// A small seeded PRNG for the adversarial tests: every run prints its seed, and the same seed
// replays the same inputs. sfc32 (Chris Doty-Humphrey's "small fast counting" generator, public
// domain), seeded through splitmix32 so that neighbouring seeds give unrelated streams.

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export interface Rng {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [lo, hi] (both inclusive). */
  int(lo: number, hi: number): number;
  /** true with probability p. */
  chance(p: number): boolean;
  pick<T>(xs: readonly T[]): T;
  bytes(n: number): Buffer;
  /** A new generator derived from this one's seed and `salt` (for one case, one worker). */
  fork(salt: number): Rng;
  readonly seed: number;
}

export function rng(seed: number): Rng {
  const init = splitmix32(seed);
  let a = init(),
    b = init(),
    c = init(),
    d = init();
  const u32 = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  for (let i = 0; i < 12; i++) u32();
  const next = (): number => u32() / 4294967296;
  const r: Rng = {
    seed,
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p) => next() < p,
    pick: (xs) => xs[Math.floor(next() * xs.length)],
    bytes: (n) => {
      const out = Buffer.alloc(n);
      for (let i = 0; i < n; i++) out[i] = u32() & 0xff;
      return out;
    },
    fork: (salt) => rng((Math.imul(seed ^ 0x5bd1e995, 31) + Math.imul(salt + 1, 0x27d4eb2f)) >>> 0),
  };
  return r;
}

/** The seed from the environment variable `name`, or a fresh one (printed by the caller). */
export function seedFrom(name: string): number {
  const raw = process.env[name];
  if (raw !== undefined && raw !== "") {
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}=${raw}: expected a whole number`);
    return n >>> 0;
  }
  return (Date.now() ^ (process.pid << 12)) >>> 0;
}

/** A whole number from the environment, or `def`. */
export function intFrom(name: string, def: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return def;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}=${raw}: expected a whole number`);
  return n;
}
