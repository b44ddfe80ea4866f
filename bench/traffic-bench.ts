// Micro-benchmark of the traffic classification CreateSession runs (src/domain/traffic.ts): the
// cost per create in microseconds, over a mix of visits (search, social, email referrers, click
// ids, UTM, internal, direct, unknown sites, unreadable referrers), beside the page URL's UTM
// parse that CreateSession already did before (parseUtm), for scale. One process, no I/O.
//
//   npm run build --silent && node dist/bench/traffic-bench.js [--rounds 7] [--calls 200000]
//
// Prints the median over rounds of the mean per call, and the spread of the rounds.

import { parseUtm } from "../src/domain/enrich";
import type { UtmDoc } from "../src/domain/session";
import { classifyTraffic, ownDomainMap, parseOwnDomains, type TrafficInput } from "../src/domain/traffic";
import { median } from "./lib/stats";

function option(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i === -1 ? def : Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a whole number of at least 1`);
  return v;
}

const ROUNDS = option("rounds", 7);
const CALLS = option("calls", 200_000);
const NO_UTM: UtmDoc = { source: null, medium: null, campaign: null, term: null, content: null };
const PAGE = "https://shop.example/products/shoes?size=42&color=blue";
const OPTIONS = { ownDomains: ownDomainMap(parseOwnDomains("shop.example,shop-cdn.example")) };

const VISITS: TrafficInput[] = [
  { pageUrl: PAGE, referrer: "https://www.google.com/", utm: NO_UTM },
  { pageUrl: PAGE, referrer: "https://www.google.co.uk/", utm: NO_UTM },
  { pageUrl: `${PAGE}&gclid=Cj0KCQiA`, referrer: "https://www.google.com/", utm: NO_UTM },
  { pageUrl: `${PAGE}&fbclid=IwAR2x`, referrer: "https://l.facebook.com/", utm: NO_UTM },
  { pageUrl: PAGE, referrer: "https://mail.google.com/mail/u/0/", utm: NO_UTM },
  {
    pageUrl: `${PAGE}&utm_source=news&utm_medium=email&utm_campaign=spring`,
    referrer: "",
    utm: { source: "news", medium: "email", campaign: "spring", term: null, content: null },
  },
  { pageUrl: PAGE, referrer: "https://blog.shop.example/post/1", utm: NO_UTM },
  { pageUrl: PAGE, referrer: "", utm: NO_UTM },
  { pageUrl: PAGE, referrer: "https://news.example.org/2026/12/01/story?id=123", utm: NO_UTM },
  { pageUrl: PAGE, referrer: "not a url", utm: NO_UTM },
];

/** Mean microseconds per call of `fn` over CALLS calls cycling through VISITS. */
function round(fn: (v: TrafficInput) => unknown): number {
  let sink = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) if (fn(VISITS[i % VISITS.length]!) !== null) sink++;
  const us = Number(process.hrtime.bigint() - start) / 1000 / CALLS;
  if (sink < 0) console.log(sink); // keeps the results alive
  return us;
}

function measure(name: string, fn: (v: TrafficInput) => unknown): void {
  round(fn); // warm-up: JIT and caches
  const rounds = Array.from({ length: ROUNDS }, () => round(fn));
  const [lo, hi] = [Math.min(...rounds), Math.max(...rounds)];
  console.log(`${name.padEnd(44)} ${median(rounds).toFixed(2).padStart(6)} µs/call  (rounds ${lo.toFixed(2)}-${hi.toFixed(2)})`);
}

console.log(`node ${process.version}, ${ROUNDS} rounds of ${CALLS} calls over ${VISITS.length} kinds of visit`);
measure("classifyTraffic (per create)", (v) => classifyTraffic(v, OPTIONS));
measure("parseUtm of the page URL (existing, for scale)", (v) => parseUtm(v.pageUrl));
