// Reading the dashboard in a real browser through its DOM contract (the ids and data attributes
// of web/index.html and web/src/), for test/e2e/dashboard.test.ts: the figures shown, the log,
// the details, the connection state and its history, and waits for what the page must show by a
// deadline. The function that runs in the page (probe) is self-contained: playwright sends its
// source, and it runs as a function call, which the page's Content-Security-Policy allows (a
// string to evaluate would not be).

import type { Page } from "playwright-core";
import { StatsGroupBy, type GetSessionStatsResponse } from "../../gen/session/v1/session_service_pb";

/** The breakdowns the dashboard shows: `#breakdown-<field>`, with the group_by behind each. */
export const BREAKDOWNS: Record<string, StatsGroupBy> = {
  channel: StatsGroupBy.CHANNEL,
  device_type: StatsGroupBy.DEVICE_TYPE,
  os_name: StatsGroupBy.OS_NAME,
  app_name: StatsGroupBy.APP_NAME,
  country_code: StatsGroupBy.COUNTRY_CODE,
  utm_source: StatsGroupBy.UTM_SOURCE,
};

/** Bars a breakdown shows at most (the largest; the page may sum the rest into another bar). */
const BARS_SHOWN = 8;

export interface LogEntry {
  kind: string;
  session: string;
  profile: string;
  revision: string;
}

/** What the page shows, read in one go. */
export interface Figures {
  state: string | null;
  reconnects: number | null;
  total: number | null;
  onlineNow: number | null;
  /** `#per-minute rect`s: how many, the sum of their counts, and their `data-minute`s. */
  perMinute: { bins: number; sum: number; minutes: string[] };
  /** `#breakdown-<field>`: bar key -> count. */
  bars: Record<string, Record<string, number>>;
  log: { revision: string | null; limit: number; entries: LogEntry[] };
  /** The page's clock (Date.now()) when read. */
  now: number;
}

/** What the page must show; only what is given is checked. */
export interface Expected {
  state?: string;
  total?: number;
  onlineNow?: number;
  perMinuteSum?: number;
  /** `#breakdown-<field>`: bar key -> count, for the keys given. */
  bars?: Record<string, Record<string, number>>;
  /** Session ids that must have a `created` entry in the log. */
  created?: string[];
  /** Log entries that must be there: for each session, an entry of one of `kinds`. */
  entries?: Array<{ session: string; kinds: string[] }>;
  /** `#log[data-revision]` at least this. */
  logRevisionAtLeast?: number;
  /** `#details[data-session]`. */
  details?: string;
  /** `#visits li[data-session]` with their `data-visit`, in order. */
  visits?: Array<{ session: string; visit: string }>;
}

// The little of the DOM that probe uses (the tests compile without the DOM library).
interface PageElement {
  dataset: Record<string, string | undefined>;
  textContent: string | null;
}
declare const document: {
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): Iterable<PageElement>;
};

interface ProbeResult {
  figures: Figures;
  mismatches: string[];
}

/**
 * Runs in the page: reads what the page shows and compares it with `expected`. With `until` it
 * answers as a waitForFunction predicate: the page's clock once everything matches, else false.
 */
function probe({ expected, until }: { expected: Expected; until: boolean }): ProbeResult | number | false {
  const one = (s: string) => document.querySelector(s);
  const num = (s: string) => {
    const t = one(s)?.textContent?.trim();
    return t === undefined || t === "" ? null : Number(t);
  };
  const conn = one("#conn");
  const log = one("#log");
  const bars: Record<string, Record<string, number>> = {};
  for (const field of ["channel", "device_type", "os_name", "app_name", "country_code", "utm_source"]) {
    const m: Record<string, number> = {};
    for (const b of document.querySelectorAll(`#breakdown-${field} .bar`)) m[b.dataset.key ?? ""] = Number(b.dataset.count);
    bars[field] = m;
  }
  const rects = [...document.querySelectorAll("#per-minute rect")];
  const figures: Figures = {
    state: conn?.dataset.state ?? null,
    reconnects: conn?.dataset.reconnects === undefined ? null : Number(conn.dataset.reconnects),
    total: num("#total"),
    onlineNow: num("#online-now"),
    perMinute: {
      bins: rects.length,
      sum: rects.reduce((a, r) => a + Number(r.dataset.count), 0),
      minutes: rects.map((r) => r.dataset.minute ?? ""),
    },
    bars,
    log: {
      revision: log?.dataset.revision ?? null,
      limit: Number(log?.dataset.limit),
      entries: [...document.querySelectorAll("#log > li.entry")].map((li) => ({
        kind: li.dataset.kind ?? "",
        session: li.dataset.session ?? "",
        profile: li.dataset.profile ?? "",
        revision: li.dataset.revision ?? "",
      })),
    },
    now: Date.now(),
  };

  const e = expected;
  const miss: string[] = [];
  const eq = (what: string, got: unknown, want: unknown) => {
    if (want !== undefined && JSON.stringify(got) !== JSON.stringify(want))
      miss.push(`${what}: ${JSON.stringify(got)} != ${JSON.stringify(want)}`);
  };
  eq("#conn[data-state]", figures.state, e.state);
  eq("#total", figures.total, e.total);
  eq("#online-now", figures.onlineNow, e.onlineNow);
  eq("#per-minute sum", figures.perMinute.sum, e.perMinuteSum);
  for (const [field, want] of Object.entries(e.bars ?? {})) {
    for (const [key, count] of Object.entries(want)) eq(`#breakdown-${field} [${key}]`, bars[field]?.[key], count);
  }
  const wanted = [...(e.entries ?? []), ...(e.created ?? []).map((session) => ({ session, kinds: ["created"] }))];
  const missing = wanted.filter((w) => !figures.log.entries.some((x) => x.session === w.session && w.kinds.includes(x.kind)));
  if (missing.length) miss.push(`#log entries missing: ${missing.map((w) => `${w.kinds.join("|")} ${w.session}`).join(", ")}`);
  if (e.logRevisionAtLeast !== undefined && !(Number(figures.log.revision) >= e.logRevisionAtLeast)) {
    miss.push(`#log[data-revision]: ${figures.log.revision} < ${e.logRevisionAtLeast}`);
  }
  if (e.details !== undefined) eq("#details[data-session]", one("#details")?.dataset.session ?? null, e.details);
  if (e.visits !== undefined) {
    const visits = [...document.querySelectorAll("#visits li[data-session]")].map((li) => ({
      session: li.dataset.session ?? "",
      visit: li.dataset.visit ?? "",
    }));
    eq("#visits", visits, e.visits);
  }
  if (until) return miss.length === 0 && Date.now();
  return { figures, mismatches: miss };
}

/** Reads what the page shows. */
export async function figures(page: Page): Promise<Figures> {
  return ((await page.evaluate(probe, { expected: {}, until: false })) as ProbeResult).figures;
}

/**
 * Waits until the page shows `expected`, at the latest by `deadline` (Date.now() time), checking
 * at every animation frame (or every `pollingMs`). Resolves with the page's clock when it first
 * showed it all; rejects with what still differs.
 */
export async function waitShown(page: Page, expected: Expected, deadline: number, what: string, pollingMs?: number): Promise<number> {
  try {
    const handle = await page.waitForFunction(
      probe,
      { expected, until: true },
      { timeout: Math.max(1, deadline - Date.now()), polling: pollingMs ?? "raf" },
    );
    return (await handle.jsonValue()) as number;
  } catch (err) {
    const late = await page
      .evaluate(probe, { expected, until: false })
      .then((r) => (r as ProbeResult).mismatches)
      .catch((e: Error) => [`(page unreadable: ${e.message})`]);
    throw new Error(
      `${what}: not shown by the deadline (${(err as Error).message.split("\n")[0]}); differing: ${late.join("; ") || "(none now: shown late)"}`,
      { cause: err },
    );
  }
}

/** Waits until `#conn[data-state]` is `state`. */
export function waitState(page: Page, state: string, timeoutMs: number): Promise<number> {
  return waitShown(page, { state }, Date.now() + timeoutMs, `#conn[data-state=${state}]`);
}

/** The totals GetSessionStats returned, as the page shows them. */
export function expectedCounts(stats: GetSessionStatsResponse): Required<Pick<Expected, "total" | "onlineNow">> {
  return { total: Number(stats.total), onlineNow: Number(stats.onlineNow) };
}

/**
 * The breakdowns and the per-minute series GetSessionStats returned, in the page's terms (a null
 * key is `(none)`): the largest groups of each breakdown (the bars shown) and the sum of the
 * minutes.
 */
export function expectedBreakdowns(stats: GetSessionStatsResponse): Required<Pick<Expected, "perMinuteSum" | "bars">> {
  const bars: Record<string, Record<string, number>> = {};
  for (const [field, groupBy] of Object.entries(BREAKDOWNS)) {
    const breakdown = stats.breakdowns.find((b) => b.groupBy === groupBy);
    if (!breakdown) throw new Error(`GetSessionStats returned no breakdown for ${field}`);
    bars[field] = Object.fromEntries(breakdown.groups.slice(0, BARS_SHOWN).map((g) => [g.key ?? "(none)", Number(g.count)]));
  }
  if (stats.startedPerMinute.length !== 60) throw new Error(`GetSessionStats returned ${stats.startedPerMinute.length} minutes, not 60`);
  return { perMinuteSum: stats.startedPerMinute.reduce((a, m) => a + Number(m.count), 0), bars };
}

/**
 * An init script that records every `#conn[data-state]` the page takes, with the time, in
 * `window.__connStates` (a MutationObserver: no state is missed, however brief). Init scripts
 * are not subject to the page's Content-Security-Policy.
 */
export const RECORD_STATES_JS = `(() => {
  const states = (window.__connStates = []);
  const note = () => {
    const s = document.querySelector("#conn")?.dataset.state;
    if (s !== undefined && states[states.length - 1]?.state !== s) states.push({ state: s, at: Date.now() });
  };
  new MutationObserver(note).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"] });
})();`;

/** The `#conn` states the page went through, in order (needs RECORD_STATES_JS as init script). */
export async function stateHistory(page: Page): Promise<Array<{ state: string; at: number }>> {
  return (await page.evaluate("window.__connStates ?? []")) as Array<{ state: string; at: number }>;
}
