// Reading the dashboard in a real browser through its DOM contract (docs: the dashboard's
// elements and data attributes), for test/e2e/dashboard.test.ts: the figures shown, the log,
// the connection state and its history, and waits for what the page must show by a deadline.
// The code that runs in the page is kept as JavaScript text (the tests compile without the DOM
// library), each piece self-contained.

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
  perMinute: { bins: number; sum: number };
  /** `#breakdown-<field>`: bar key -> count. */
  bars: Record<string, Record<string, number>>;
  log: { revision: string | null; limit: number; entries: LogEntry[] };
  /** The page's clock (Date.now()) when read. */
  now: number;
}

/** Expected figures; only what is given is checked. */
export interface Expected {
  state?: string;
  total?: number;
  onlineNow?: number;
  perMinuteSum?: number;
  bars?: Record<string, Record<string, number>>;
  /** Session ids that must have a `created` entry in the log. */
  created?: string[];
}

// In the page: reads the figures (a function expression, self-contained).
const FIGURES_JS = `() => {
  const one = (s) => document.querySelector(s);
  const num = (s) => {
    const t = one(s)?.textContent?.trim();
    return t === undefined || t === "" ? null : Number(t);
  };
  const conn = one("#conn");
  const log = one("#log");
  const bars = {};
  for (const field of ${JSON.stringify(Object.keys(BREAKDOWNS))}) {
    const m = {};
    for (const b of document.querySelectorAll("#breakdown-" + field + " .bar")) m[b.dataset.key] = Number(b.dataset.count);
    bars[field] = m;
  }
  const rects = [...document.querySelectorAll("#per-minute rect")];
  return {
    state: conn?.dataset.state ?? null,
    reconnects: conn?.dataset.reconnects === undefined ? null : Number(conn.dataset.reconnects),
    total: num("#total"),
    onlineNow: num("#online-now"),
    perMinute: { bins: rects.length, sum: rects.reduce((a, r) => a + Number(r.dataset.count), 0) },
    bars,
    log: {
      revision: log?.dataset.revision ?? null,
      limit: Number(log?.dataset.limit),
      entries: [...document.querySelectorAll("#log > li.entry")].map((li) => ({
        kind: li.dataset.kind, session: li.dataset.session, profile: li.dataset.profile, revision: li.dataset.revision,
      })),
    },
    now: Date.now(),
  };
}`;

// In the page: what differs from the expected figures (a function expression of (figures, expected)).
const MISMATCHES_JS = `(f, e) => {
  const miss = [];
  const eq = (what, got, want) => { if (want !== undefined && got !== want) miss.push(what + ": " + JSON.stringify(got) + " != " + JSON.stringify(want)); };
  eq("#conn[data-state]", f.state, e.state);
  eq("#total", f.total, e.total);
  eq("#online-now", f.onlineNow, e.onlineNow);
  eq("#per-minute sum", f.perMinute.sum, e.perMinuteSum);
  for (const [field, want] of Object.entries(e.bars ?? {})) {
    for (const [key, count] of Object.entries(want)) eq("#breakdown-" + field + " [" + key + "]", f.bars[field]?.[key], count);
  }
  if (e.created) {
    const have = new Set(f.log.entries.filter((x) => x.kind === "created").map((x) => x.session));
    const missing = e.created.filter((id) => !have.has(id));
    if (missing.length) miss.push("#log created entries missing: " + missing.join(", "));
  }
  return miss;
}`;

/** Reads what the page shows. */
export function figures(page: Page): Promise<Figures> {
  return page.evaluate(`(${FIGURES_JS})()`) as Promise<Figures>;
}

/** What the expected figures and `f` disagree on (empty: they agree). */
async function mismatches(page: Page, expected: Expected): Promise<string[]> {
  return (await page.evaluate(`(${MISMATCHES_JS})((${FIGURES_JS})(), ${JSON.stringify(expected)})`)) as string[];
}

/**
 * Waits until the page shows `expected`, at the latest by `deadline` (Date.now() time), checking
 * at every animation frame (or every `pollingMs`). Resolves with the page's clock when it first
 * showed them; rejects with what still differs.
 */
export async function waitShown(page: Page, expected: Expected, deadline: number, what: string, pollingMs?: number): Promise<number> {
  const check = `(() => (${MISMATCHES_JS})((${FIGURES_JS})(), ${JSON.stringify(expected)}).length === 0 && Date.now())()`;
  try {
    const handle = await page.waitForFunction(check, undefined, {
      timeout: Math.max(1, deadline - Date.now()),
      polling: pollingMs ?? "raf",
    });
    return (await handle.jsonValue()) as number;
  } catch (err) {
    const late = await mismatches(page, expected).catch((e: Error) => [`(page unreadable: ${e.message})`]);
    throw new Error(
      `${what}: not shown by the deadline (${(err as Error).message.split("\n")[0]}); differing: ${late.join("; ") || "(none now: shown late)"}`,
      { cause: err },
    );
  }
}

/** The figures GetSessionStats returned, in the dashboard's terms (null key = `(none)`). */
export function expectedFromStats(stats: GetSessionStatsResponse): Required<Omit<Expected, "state" | "created">> {
  const bars: Record<string, Record<string, number>> = {};
  for (const [field, groupBy] of Object.entries(BREAKDOWNS)) {
    const breakdown = stats.breakdowns.find((b) => b.groupBy === groupBy);
    if (!breakdown) throw new Error(`GetSessionStats returned no breakdown for ${field}`);
    bars[field] = Object.fromEntries(breakdown.groups.map((g) => [g.key ?? "(none)", Number(g.count)]));
  }
  return {
    total: Number(stats.total),
    onlineNow: Number(stats.onlineNow),
    perMinuteSum: stats.startedPerMinute.reduce((a, m) => a + Number(m.count), 0),
    bars,
  };
}

/**
 * An init script that records every `#conn[data-state]` the page takes, with the time, in
 * `window.__connStates` (a MutationObserver: no state is missed, however brief).
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

/** Waits until `#conn[data-state]` is `state`. */
export async function waitState(page: Page, state: string, timeoutMs: number): Promise<void> {
  await page
    .waitForFunction(`document.querySelector("#conn")?.dataset.state === ${JSON.stringify(state)}`, undefined, { timeout: timeoutMs })
    .catch(async (err: Error) => {
      const now = await page.evaluate(`document.querySelector("#conn")?.dataset.state`).catch(() => "(unreadable)");
      throw new Error(`#conn[data-state] not ${state} within ${timeoutMs} ms (it is ${String(now)}): ${err.message.split("\n")[0]}`);
    });
}
