// Stats: counts grouped by one field and by more (breakdowns), filters, the online count, and
// the sessions inserted per minute.

import type { SessionDoc } from "../../../src/domain/session";
import type { SessionStore, StatsField, StatsQuery } from "../../../src/domain/store";
import { at, fullDoc, type CurrentStore } from "./support";

export function statsTests(current: CurrentStore): void {
  let store: SessionStore;
  beforeEach(() => {
    store = current().store;
  });

  describe("stats", () => {
    const ACTIVE_SINCE = at(20);
    function statsFixtures(): SessionDoc[] {
      const docs: SessionDoc[] = [];
      const countries = ["PL", "DE", null];
      for (let i = 0; i < 24; i++) {
        const doc = fullDoc(`st${String(i).padStart(2, "0")}`, at(i), {
          profileId: i % 4 === 0 ? "p-stats" : `p-${i}`,
          status: i % 5 === 0 ? "ended" : "active",
          channel: ["web", "app", "email"][i % 3],
        });
        doc.device.type = i % 2 === 0 ? "mobile" : null;
        doc.device.geo.country.code = countries[i % 3];
        doc.os.name = ["iOS", "Android", "Windows", "Other"][i % 4];
        doc.app.name = i % 3 === 0 ? "Chrome" : "Safari";
        doc.utm.source = i % 6 === 0 ? null : `src-${i % 2}`;
        doc.metadata.time.update = i % 7 === 0 ? null : at(i + 3);
        // Sessions without traffic (stored before it was classified) count under null.
        doc.traffic =
          i % 5 === 1
            ? null
            : {
                ...doc.traffic!,
                channel_group: ["Organic Search", "Paid Social", "Direct"][i % 3],
                source: ["google", "facebook", "(direct)", "news"][i % 4],
              };
        docs.push(doc);
      }
      return docs;
    }
    const activity = (d: SessionDoc) => d.metadata.time.update ?? d.metadata.time.insert;
    const online = (d: SessionDoc, since = ACTIVE_SINCE) => d.metadata.status === "active" && activity(d) >= since;
    const FIELDS: Array<[StatsField, (d: SessionDoc) => string | null]> = [
      ["channel", (d) => d.metadata.channel],
      ["status", (d) => d.metadata.status],
      ["device_type", (d) => d.device.type],
      ["os_name", (d) => d.os.name],
      ["app_name", (d) => d.app.name],
      ["country_code", (d) => d.device.geo.country.code],
      ["utm_source", (d) => d.utm.source],
      ["channel_group", (d) => d.traffic?.channel_group ?? null],
      ["source", (d) => d.traffic?.source ?? null],
    ];
    function expected(docs: SessionDoc[], field: (d: SessionDoc) => string | null) {
      const counts = new Map<string | null, number>();
      for (const d of docs) counts.set(field(d), (counts.get(field(d)) ?? 0) + 1);
      return [...counts].map(([key, count]) => ({ key, count }));
    }
    const sorted = (groups: Array<{ key: string | null; count: number }>) =>
      [...groups].sort((a, b) => String(a.key).localeCompare(String(b.key)));

    it.each(FIELDS)("counts by %s like a count over the raw documents", async (field, get) => {
      const docs = statsFixtures();
      for (const d of docs) await store.create(d);
      const result = await store.stats({ groupBy: field, onlineSince: ACTIVE_SINCE });
      expect(result.total).toBe(docs.length);
      expect(result.online).toBe(docs.filter((d) => online(d)).length);
      expect(sorted(result.groups)).toEqual(sorted(expected(docs, get)));
    });

    it("applies the filters and `insertFrom`, and gives no groups without groupBy", async () => {
      const docs = statsFixtures();
      for (const d of docs) await store.create(d);
      const cases: Array<[StatsQuery, (d: SessionDoc) => boolean]> = [
        [{ onlineSince: ACTIVE_SINCE, profileId: "p-stats" }, (d) => d.profile?.id === "p-stats"],
        [{ onlineSince: ACTIVE_SINCE, status: "ended" }, (d) => d.metadata.status === "ended"],
        [
          { onlineSince: ACTIVE_SINCE, status: "active", channel: "web" },
          (d) => d.metadata.status === "active" && d.metadata.channel === "web",
        ],
        [{ onlineSince: ACTIVE_SINCE, insertFrom: at(10) }, (d) => d.metadata.time.insert >= at(10)],
        [{ onlineSince: at(0), channel: "none" }, () => false],
        [{ onlineSince: at(0) }, () => true],
      ];
      for (const [query, match] of cases) {
        const subset = docs.filter(match);
        const got = await store.stats({ ...query, groupBy: "os_name" });
        expect({ query, total: got.total, online: got.online, groups: sorted(got.groups) }).toEqual({
          query,
          total: subset.length,
          online: subset.filter((d) => online(d, query.onlineSince)).length,
          groups: sorted(expected(subset, (d) => d.os.name)),
        });
        const plain = await store.stats(query);
        expect([plain.total, plain.online, plain.groups]).toEqual([got.total, got.online, []]);
      }
    });

    it("counts nothing in an empty store", async () => {
      const none = { total: 0, groups: [], breakdowns: [], startedPerMinute: [], online: 0 };
      expect(await store.stats({ onlineSince: at(0), groupBy: "channel" })).toEqual(none);
      expect(await store.stats({ onlineSince: at(0) })).toEqual(none);
      expect(
        await store.stats({ onlineSince: at(0), breakdowns: ["os_name", "status"], startedPerMinute: { from: at(0), minutes: 3 } }),
      ).toEqual({
        ...none,
        breakdowns: [
          { field: "os_name", groups: [] },
          { field: "status", groups: [] },
        ],
        startedPerMinute: [0, 0, 0],
      });
    });

    // The filter cases of the breakdowns and the minute series.
    const FILTERS: Array<[Partial<StatsQuery>, (d: SessionDoc) => boolean]> = [
      [{}, () => true],
      [{ profileId: "p-stats" }, (d) => d.profile?.id === "p-stats"],
      [{ status: "ended" }, (d) => d.metadata.status === "ended"],
      [{ status: "active", channel: "web" }, (d) => d.metadata.status === "active" && d.metadata.channel === "web"],
      [{ insertFrom: at(10) }, (d) => d.metadata.time.insert >= at(10)],
      [{ profileId: "p-stats", insertFrom: at(5) }, (d) => d.profile?.id === "p-stats" && d.metadata.time.insert >= at(5)],
      [{ channel: "none" }, () => false],
    ];

    it("counts each breakdown like a count over the raw documents, in the asked order, with the filters", async () => {
      const docs = statsFixtures();
      for (const d of docs) await store.create(d);
      const order: StatsField[] = [
        "utm_source",
        "channel_group",
        "channel",
        "country_code",
        "status",
        "source",
        "app_name",
        "device_type",
        "os_name",
      ];
      for (const [filter, match] of FILTERS) {
        const subset = docs.filter(match);
        const got = await store.stats({ ...filter, groupBy: "os_name", breakdowns: order, onlineSince: ACTIVE_SINCE });
        expect({
          filter,
          total: got.total,
          online: got.online,
          groups: sorted(got.groups),
          breakdowns: got.breakdowns.map((b) => ({ field: b.field, groups: sorted(b.groups) })),
          startedPerMinute: got.startedPerMinute,
        }).toEqual({
          filter,
          total: subset.length,
          online: subset.filter((d) => online(d)).length,
          groups: sorted(expected(subset, (d) => d.os.name)),
          breakdowns: order.map((field) => ({ field, groups: sorted(expected(subset, FIELDS.find(([f]) => f === field)![1])) })),
          startedPerMinute: [],
        });
        // Without groupBy: the same breakdowns and total.
        const plain = await store.stats({ ...filter, breakdowns: ["channel"], onlineSince: ACTIVE_SINCE });
        expect([plain.total, plain.groups, sorted(plain.breakdowns[0].groups)]).toEqual([
          subset.length,
          [],
          sorted(expected(subset, (d) => d.metadata.channel)),
        ]);
      }
    });

    it("counts the sessions inserted per minute of the range, with the filters and insertFrom", async () => {
      // Inserts one minute apart from at(0); the range starts at one of them (counted in the
      // first minute) and ends at another (not counted: the end is exclusive).
      const docs = statsFixtures();
      for (const d of docs) await store.create(d);
      const from = at(3);
      const minutes = 10;
      for (const [filter, match] of FILTERS) {
        const want = new Array<number>(minutes).fill(0);
        for (const d of docs.filter(match)) {
          const i = Math.floor((d.metadata.time.insert.getTime() - from.getTime()) / 60_000);
          if (i >= 0 && i < minutes) want[i]++;
        }
        const got = await store.stats({ ...filter, startedPerMinute: { from, minutes }, onlineSince: ACTIVE_SINCE });
        expect({ filter, perMinute: got.startedPerMinute }).toEqual({ filter, perMinute: want });
      }
      // A range starting between two inserts: still one insert in each of its minutes.
      const shifted = await store.stats({ startedPerMinute: { from: new Date(from.getTime() + 30_000), minutes: 3 }, onlineSince: at(0) });
      expect(shifted.startedPerMinute).toEqual([1, 1, 1]);
      // A range before every insert.
      const before = await store.stats({ startedPerMinute: { from: at(-100), minutes: 60 }, onlineSince: at(0) });
      expect(before.startedPerMinute).toEqual(new Array<number>(60).fill(0));
    });
  });
}
