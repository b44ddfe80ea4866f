// `npm run bench:geo`: the cost of one geo lookup (src/geo/mmdb.ts) and of the whole visitor-IP
// step of a create (parse, lookup, fill, anonymize; src/domain/geo.ts), in microseconds, on the
// bundled country database and optionally a city database. In process, no server: the figure
// the per-create CPU of `npm run bench` (create-geo) should agree with, without its noise.
//
// Addresses: random public IPv4 and IPv6 (2000::/4) addresses from a fixed seed, so that lookups
// spread over the database as real traffic does ("spread"), and one address over and over
// ("repeated": the LRU cache of decoded records always hits).
//
// Options: --lookups N (default 200000), --geoip-city-db FILE, --json FILE

import * as path from "node:path";
import { applyVisitorIpOnCreate } from "../src/domain/geo";
import { formatIp, parseIp, type IpAddress } from "../src/domain/ip";
import { emptySessionDoc } from "../src/domain/session";
import { MmdbGeoLocator } from "../src/geo/mmdb";
import { int, parseArgs } from "./lib/options";
import { runMain } from "./lib/processes";
import { median } from "./lib/stats";
import { table, writeJson } from "./lib/table";

/** A small deterministic generator (xorshift32), so every run looks up the same addresses. */
function random(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function addresses(n: number, version: 4 | 6): IpAddress[] {
  const next = random(version === 4 ? 0x9e3779b9 : 0x85ebca6b);
  return Array.from({ length: n }, () => {
    if (version === 4) return { version, bytes: new Uint8Array([1 + (next() % 223), next() & 255, next() & 255, next() & 255]) };
    const bytes = new Uint8Array(16);
    for (let i = 0; i < 16; i++) bytes[i] = next() & 255;
    bytes[0] = 0x20 | (bytes[0]! & 0x0f); // 2000::/4, the global unicast space
    return { version, bytes };
  });
}

/** µs per call of `f` over `items`, median of 5 passes (after one warm-up pass). */
function time<T>(items: T[], f: (item: T) => unknown): number {
  const passes: number[] = [];
  for (let pass = 0; pass < 6; pass++) {
    const t0 = process.hrtime.bigint();
    for (const item of items) f(item);
    if (pass > 0) passes.push(Number(process.hrtime.bigint() - t0) / 1000 / items.length);
  }
  return median(passes);
}

async function main(): Promise<number> {
  const o = { lookups: 200_000, city: undefined as string | undefined, json: undefined as string | undefined };
  parseArgs(process.argv.slice(2), {
    "--lookups": (v, n) => (o.lookups = int(v(), n)),
    "--geoip-city-db": (v) => (o.city = path.resolve(v())),
    "--json": (v) => (o.json = v()),
  });
  const locators: [string, MmdbGeoLocator][] = [["bundled country database", await MmdbGeoLocator.open()]];
  if (o.city) locators.push([`+ city database ${path.basename(o.city)}`, await MmdbGeoLocator.open({ cityDatabase: o.city })]);
  const v4 = addresses(o.lookups, 4);
  const v6 = addresses(o.lookups, 6);
  const repeated = Array.from({ length: o.lookups }, () => parseIp("8.8.8.8")!);
  const texts = v4.map(formatIp);

  const rows: string[][] = [];
  const results: Record<string, number>[] = [];
  for (const [name, geo] of locators) {
    const found = v4.filter((ip) => geo.lookup(ip) !== undefined).length / v4.length;
    const r = {
      spreadV4: time(v4, (ip) => geo.lookup(ip)),
      spreadV6: time(v6, (ip) => geo.lookup(ip)),
      repeated: time(repeated, (ip) => geo.lookup(ip)),
      // What a create adds: parse client_ip, look up, fill device.geo, anonymize (truncate).
      createStep: time(texts, (text) =>
        applyVisitorIpOnCreate(emptySessionDoc("s", new Date(0)).device, text, { anonymization: "truncate", locator: geo }),
      ),
      emptyDevice: time(texts, () => emptySessionDoc("s", new Date(0)).device),
    };
    results.push(r);
    rows.push([
      name,
      r.spreadV4.toFixed(2),
      r.spreadV6.toFixed(2),
      r.repeated.toFixed(2),
      (r.createStep - r.emptyDevice).toFixed(2),
      `${(found * 100).toFixed(0)} %`,
    ]);
  }
  process.stdout.write(
    `geo lookups: µs per call, median of 5 passes over ${o.lookups} addresses; node ${process.version}\n\n` +
      table(["database", "IPv4 spread", "IPv6 spread", "one address", "create step (IPv4)", "IPv4 found"], rows) +
      "\n",
  );
  if (o.json) writeJson(o.json, { date: new Date().toISOString(), lookups: o.lookups, city: o.city, results });
  return 0;
}

runMain("geo-bench", main);
