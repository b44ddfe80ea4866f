// The figures: one WatchSessionStats stream carries online now, the total, the eight breakdowns and
// the sessions started per minute over the last hour. The server sends new figures at most every
// min_interval and only when they changed; the page draws each message as it comes.

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { StatsGroupBy, type GetSessionStatsResponse, type StatsGroup } from "../../gen/session/v1/session_service_pb";
import type { Api } from "./client";
import { byId, clip, el, time } from "./render";

/** The breakdowns shown, and the element id suffix of each. */
export const BREAKDOWNS: Array<[StatsGroupBy, string]> = [
  [StatsGroupBy.CHANNEL, "channel"],
  [StatsGroupBy.DEVICE_TYPE, "device_type"],
  [StatsGroupBy.OS_NAME, "os_name"],
  [StatsGroupBy.APP_NAME, "app_name"],
  [StatsGroupBy.COUNTRY_CODE, "country_code"],
  [StatsGroupBy.UTM_SOURCE, "utm_source"],
  [StatsGroupBy.CHANNEL_GROUP, "channel_group"],
  [StatsGroupBy.SOURCE, "source"],
];

/** Bars shown per breakdown; the rest are summed into one "others" bar. */
const TOP = 8;
const SVG = "http://www.w3.org/2000/svg";

/** Reads one stats stream until it ends or fails; draws every message. */
export async function watchStats(api: Api, signal: AbortSignal, live: () => void): Promise<void> {
  const stream = api.watchSessionStats(
    {
      breakdowns: BREAKDOWNS.map(([g]) => g),
      startedPerMinute: true,
      // Fresh figures within half a second of a change: the browser test asks for 1 s.
      minInterval: durationFromMs(500),
      heartbeatInterval: durationFromMs(5000),
    },
    { signal },
  );
  for await (const msg of stream) {
    live();
    if (msg.event.case === "stats") draw(msg.event.value);
  }
}

function draw(stats: GetSessionStatsResponse): void {
  byId("online-now").textContent = String(stats.onlineNow);
  byId("total").textContent = String(stats.total);
  for (const b of stats.breakdowns) {
    const entry = BREAKDOWNS.find(([g]) => g === b.groupBy);
    if (entry) drawBars(byId(`breakdown-${entry[1]}`), b.groups, Number(stats.total));
  }
  drawMinutes(stats);
}

function drawBars(box: HTMLElement, groups: StatsGroup[], total: number): void {
  const shown = groups.slice(0, TOP).map((g) => ({ key: g.key ?? "(none)", count: Number(g.count) }));
  const rest = groups.slice(TOP).reduce((n, g) => n + Number(g.count), 0);
  if (rest > 0) shown.push({ key: "(others)", count: rest });
  const rows = shown.map(({ key, count }) => {
    const row = el("div", { class: "bar", "data-key": key, "data-count": String(count), title: key });
    const name = el("span", { class: "name" }, clip(key, 40));
    const fill = el("span", { class: "fill" });
    fill.style.width = `${total > 0 ? (100 * count) / total : 0}%`;
    name.append(fill);
    row.append(name, el("span", { class: "count" }, String(count)));
    return row;
  });
  box.replaceChildren(...rows);
}

function drawMinutes(stats: GetSessionStatsResponse): void {
  const svg = byId<SVGSVGElement>("per-minute");
  const minutes = stats.startedPerMinute;
  const max = minutes.reduce((m, c) => Math.max(m, Number(c.count)), 0);
  const width = 600 / Math.max(minutes.length, 1);
  const bars = minutes.map((c, i) => {
    const count = Number(c.count);
    const h = max > 0 ? Math.max((76 * count) / max, count > 0 ? 1 : 0) : 0;
    const start = c.start ? timestampDate(c.start) : undefined;
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", String(i * width + 1));
    rect.setAttribute("y", String(80 - h));
    rect.setAttribute("width", String(Math.max(width - 2, 1)));
    rect.setAttribute("height", String(h));
    rect.setAttribute("data-minute", start?.toISOString() ?? "");
    rect.setAttribute("data-count", String(count));
    if (i === minutes.length - 1) rect.setAttribute("class", "current");
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${time(start)}: ${count}`;
    rect.append(title);
    return rect;
  });
  svg.replaceChildren(...bars);
  byId("per-minute-max").textContent = max > 0 ? `(peak ${max}/min)` : "";
}
