// Stats after writes: whatever an adapter keeps to answer stats (the embedded store maintains
// counts per hour of insert time) must give the same figures as a count over the sessions the
// store holds, after updates that move a session between groups, deletes, expiry, several
// instances writing, and for `insertFrom` anywhere (inside an hour, on an hour's start); the
// breakdowns and the sessions started per minute too.

import { Lifecycle } from "../../../src/domain/lifecycle";
import type { SessionDoc } from "../../../src/domain/session";
import type { SessionPatch, SessionStore, StatsField, StatsQuery } from "../../../src/domain/store";
import { at, fullDoc, type CurrentStore } from "./support";

const FIELDS: Array<[StatsField, (d: SessionDoc) => string | null]> = [
  ["channel", (d) => d.metadata.channel],
  ["status", (d) => d.metadata.status],
  ["device_type", (d) => d.device?.type ?? null],
  ["os_name", (d) => d.os?.name ?? null],
  ["app_name", (d) => d.app?.name ?? null],
  ["country_code", (d) => d.device?.geo?.country?.code ?? null],
  ["utm_source", (d) => d.utm?.source ?? null],
  ["channel_group", (d) => d.traffic?.channel_group ?? null],
  ["source", (d) => d.traffic?.source ?? null],
];

const HOUR_MS = 3_600_000;
const ONLINE_SINCE = at(200);

/** Sessions over about 10 hours (one every 37 minutes), with varied values. */
function fixtures(prefix: string, n = 16): SessionDoc[] {
  return Array.from({ length: n }, (_, i) => {
    const doc = fullDoc(`${prefix}${String(i).padStart(2, "0")}`, at(i * 37), { profileId: `p-${i % 3}`, channel: ["web", "app"][i % 2] });
    doc.device.type = i % 3 === 0 ? null : "mobile";
    doc.os.name = ["iOS", "Android", "Linux"][i % 3];
    doc.utm.source = i % 4 === 0 ? null : "news";
    doc.metadata.time.update = at(i * 37 + 30);
    doc.traffic = i % 5 === 0 ? null : { ...doc.traffic!, channel_group: ["Email", "Referral"][i % 2], source: `s-${i % 3}` };
    return doc;
  });
}

/** The queries checked: every group_by and none, with the filters and several `insertFrom`. */
function queries(): StatsQuery[] {
  const boundary = new Date(Math.ceil(at(150).getTime() / HOUR_MS) * HOUR_MS);
  const froms = [undefined, at(37 * 4), at(37 * 4 + 1), boundary, new Date(boundary.getTime() - 1), at(5000)];
  const out: StatsQuery[] = [];
  for (const groupBy of [undefined, ...FIELDS.map(([f]) => f)])
    for (const insertFrom of froms) for (const f of FILTERS) out.push({ ...f, groupBy, insertFrom, onlineSince: ONLINE_SINCE });
  return out;
}

const FILTERS: Array<Partial<StatsQuery>> = [{}, { status: "ended" }, { channel: "app" }, { profileId: "p-1" }];

const matches = (d: SessionDoc, q: StatsQuery): boolean =>
  (q.status === undefined || d.metadata.status === q.status) &&
  (q.channel === undefined || d.metadata.channel === q.channel) &&
  (q.profileId === undefined || d.profile?.id === q.profileId) &&
  (q.insertFrom === undefined || d.metadata.time.insert >= q.insertFrom);

function expected(docs: SessionDoc[], q: StatsQuery) {
  const match = docs.filter((d) => matches(d, q));
  const get = FIELDS.find(([f]) => f === q.groupBy)?.[1];
  const counts = new Map<string | null, number>();
  if (get) for (const d of match) counts.set(get(d), (counts.get(get(d)) ?? 0) + 1);
  const online = match.filter((d) => d.metadata.status === "active" && (d.metadata.time.update ?? d.metadata.time.insert) >= q.onlineSince);
  return { total: match.length, online: online.length, groups: sorted([...counts].map(([key, count]) => ({ key, count }))) };
}

const sorted = (groups: Array<{ key: string | null; count: number }>) =>
  [...groups].sort((a, b) => String(a.key).localeCompare(String(b.key)));

/** Every `every`-th query of `queries()` on `store` against a count over the documents it lists. */
async function expectExact(store: SessionStore, every = 1): Promise<void> {
  const docs = await store.list({ limit: 1000 });
  const got = [];
  const want = [];
  for (const q of queries().filter((_, i) => i % every === 0)) {
    const r = await store.stats(q);
    got.push({ q, total: r.total, online: r.online, groups: sorted(r.groups) });
    want.push({ q, ...expected(docs, q) });
  }
  expect(got).toEqual(want);
  // Every breakdown and the minute series over the fixtures' whole span, in one call per filter
  // (with the full set of queries only: the MongoDB test budget).
  if (every !== 1) return;
  const range = { from: at(-5), minutes: 900 };
  const gotMore = [];
  const wantMore = [];
  for (const filter of FILTERS) {
    const q: StatsQuery = { ...filter, breakdowns: FIELDS.map(([f]) => f), startedPerMinute: range, onlineSince: ONLINE_SINCE };
    const r = await store.stats(q);
    gotMore.push({
      filter,
      breakdowns: r.breakdowns.map((b) => ({ field: b.field, groups: sorted(b.groups) })),
      perMinute: r.startedPerMinute,
    });
    const perMinute = new Array<number>(range.minutes).fill(0);
    for (const d of docs.filter((d) => matches(d, q))) {
      const i = Math.floor((d.metadata.time.insert.getTime() - range.from.getTime()) / 60_000);
      if (i < range.minutes) perMinute[i]++;
    }
    wantMore.push({
      filter,
      breakdowns: FIELDS.map(([field]) => ({ field, groups: expected(docs, { ...q, groupBy: field }).groups })),
      perMinute,
    });
  }
  expect(gotMore).toEqual(wantMore);
}

const set = (path: string[], value: unknown): SessionPatch => ({ set: [{ path, value }], unset: [] });

export function statsWritesTests(current: CurrentStore): void {
  let store: SessionStore;
  beforeEach(() => {
    store = current().store;
  });

  describe("stats after writes", () => {
    it("stays exact after updates of grouped fields, status and channel, to null or missing, and deletes", async () => {
      for (const d of fixtures("sw")) await store.create(d);
      await store.update("sw01", set(["os", "name"], "Windows"));
      await store.update("sw02", set(["device", "type"], null));
      await store.update("sw03", { set: [], unset: [["utm", "source"]] });
      await store.update("sw04", { set: [], unset: [["device", "geo"]] });
      await store.update("sw05", set(["metadata", "status"], "ended"));
      await store.update("sw06", set(["metadata", "channel"], "email"));
      await store.update("sw07", set(["app", "name"], "Firefox"));
      await store.update("sw07", set(["app", "name"], "Chrome"));
      await store.update("sw08", set(["properties", "unrelated"], 1));
      await store.update("sw09", set(["metadata", "status"], "ended"));
      await store.update("sw09", set(["metadata", "status"], "active"));
      await store.delete("sw10");
      await store.delete("sw05");
      await expectExact(store);
      // Deleted and re-created under the same id, with other values.
      const again = fixtures("sw")[10];
      again.os.name = "Other";
      await store.create(again);
      await expectExact(store, 3);
    });

    it("stays exact after an expiry pass ends sessions", async () => {
      const docs = fixtures("se");
      for (const d of docs) await store.create(d);
      const now = at(16 * 37);
      const pass = await new Lifecycle(store, { idleMs: 60 * 60_000, maxDurationMs: 48 * HOUR_MS }, { now: () => now }).expire();
      expect(pass.ended).toBeGreaterThan(0);
      await expectExact(store);
    });

    it("stays exact with several store instances writing to one database", async () => {
      const others = [await current().openAnother(), await current().openAnother()];
      try {
        const stores = [store, ...others];
        await Promise.all(fixtures("sm", 24).map((d, i) => stores[i % 3].create(d)));
        await Promise.all([
          ...Array.from({ length: 12 }, (_, i) =>
            stores[(i + 1) % 3].update(`sm${String(i).padStart(2, "0")}`, set(["os", "name"], `os-${i % 2}`)),
          ),
          ...Array.from({ length: 6 }, (_, i) => stores[(i + 2) % 3].update(`sm${12 + i}`, set(["metadata", "status"], "ended"))),
          ...Array.from({ length: 4 }, (_, i) => stores[i % 3].delete(`sm${20 + i}`)),
        ]);
        // All queries on one instance; a spread of them on the others (the same database).
        for (const s of stores) await expectExact(s, s === store ? 1 : 5);
      } finally {
        await Promise.all(others.map((s) => s.close()));
      }
    });
  });
}
