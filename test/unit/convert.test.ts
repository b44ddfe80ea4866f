import { create, equals, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { SessionSchema, type Session } from "../../gen/session/v1/session_pb";
import { emptySessionDoc, type SessionDoc } from "../../src/domain/session";
import { GetSessionStatsRequestSchema, StatsGroupBy } from "../../gen/session/v1/session_service_pb";
import { InvalidArgumentError } from "../../src/domain/errors";
import { docToSession, sessionToDoc, statsInput, statsResponse } from "../../src/rpc/convert";

const INSERT = new Date("2024-05-30T07:44:23.243Z");
const CREATE = new Date("2024-05-30T07:44:20.001Z");
const UPDATE = new Date("2024-05-30T08:44:23.999Z");

const STRUCT = {
  page: { url: "https://example.com/?a=1", title: "Zażółć 🙂" },
  tags: ["a", 1, true, null, { deep: { x: 1.5, y: [] } }],
  n: 0,
  neg: -12.25,
  flag: false,
  nothing: null,
  empty: {},
  emptyList: [],
  text: "",
};

/** A Session with every field set, nullable ones to `nullable` (a value, "" or unset). */
function fullSession(nullable: "value" | "empty" | "unset"): Session {
  const v = (value: string): string | undefined => (nullable === "value" ? value : nullable === "empty" ? "" : undefined);
  return create(SessionSchema, {
    id: "0b4f7c6e-3c1a-4f43-9e0e-6a4a8f6f2f11",
    metadata: {
      time: {
        insert: timestampFromDate(INSERT),
        create: nullable === "unset" ? undefined : timestampFromDate(CREATE),
        update: nullable === "unset" ? undefined : timestampFromDate(UPDATE),
        timestamp: INSERT.getTime() / 1000,
        duration: 3600,
        weekday: 4,
      },
      channel: "web",
      aux: { source: { kind: "sdk", version: [1, 2] } },
      status: "active",
    },
    profile: {
      id: "p-1",
      primaryId: v("p-0"),
      metadata: nullable === "unset" ? undefined : { tier: "gold", scores: { a: 1 } },
    },
    device: {
      name: "iPhone",
      brand: v("Apple"),
      model: v("iPhone"),
      type: v("mobile"),
      touch: true,
      ip: v("2001:db8::1"),
      resolution: v("390x844"),
      geo: {
        country: { name: v("Poland"), code: v("PL") },
        city: v("Warsaw"),
        county: v("Mazowieckie"),
        postal: v("00-001"),
        latitude: v("52.2297"),
        longitude: v("21.0122"),
        location: v("Old Town"),
      },
      colorDepth: v("24"),
      orientation: v("portrait-primary"),
    },
    os: { name: "iOS", version: "17.4" },
    app: { type: "browser", name: "Mobile Safari", version: "17.4", language: v("pl-PL"), bot: true, resolution: v("390x664") },
    utm: { source: v("newsletter"), medium: v("email"), campaign: v("spring"), term: v("shoes"), content: v("cta") },
    context: STRUCT,
    properties: { cart: { value: 12.5, items: [{ sku: "A-1", qty: 2 }] } },
    traits: { vip: true },
    aux: { nested: { a: { b: { c: "d" } } } },
    revision: 42n,
    sessionIndex: 3,
    previousSessionId: v("s-prev"),
    activity: { pageViews: 4, entryPage: v("https://example.com/"), exitPage: v("https://example.com/cart"), endReason: "idle" },
    mergedFromProfileIds: ["p-old", "p-older"],
  });
}

/** Every nullable field of a Session message, by name. */
const NULLABLE_MSG: Array<[string, (s: Session) => unknown]> = [
  ["metadata.time.create", (s) => s.metadata?.time?.create],
  ["metadata.time.update", (s) => s.metadata?.time?.update],
  ["profile.primaryId", (s) => s.profile?.primaryId],
  ["device.brand", (s) => s.device?.brand],
  ["device.model", (s) => s.device?.model],
  ["device.type", (s) => s.device?.type],
  ["device.ip", (s) => s.device?.ip],
  ["device.resolution", (s) => s.device?.resolution],
  ["device.colorDepth", (s) => s.device?.colorDepth],
  ["device.orientation", (s) => s.device?.orientation],
  ["device.geo.country.name", (s) => s.device?.geo?.country?.name],
  ["device.geo.country.code", (s) => s.device?.geo?.country?.code],
  ["device.geo.city", (s) => s.device?.geo?.city],
  ["device.geo.county", (s) => s.device?.geo?.county],
  ["device.geo.postal", (s) => s.device?.geo?.postal],
  ["device.geo.latitude", (s) => s.device?.geo?.latitude],
  ["device.geo.longitude", (s) => s.device?.geo?.longitude],
  ["device.geo.location", (s) => s.device?.geo?.location],
  ["app.language", (s) => s.app?.language],
  ["app.resolution", (s) => s.app?.resolution],
  ["utm.source", (s) => s.utm?.source],
  ["utm.medium", (s) => s.utm?.medium],
  ["utm.campaign", (s) => s.utm?.campaign],
  ["utm.term", (s) => s.utm?.term],
  ["utm.content", (s) => s.utm?.content],
  ["previousSessionId", (s) => s.previousSessionId],
  ["activity.entryPage", (s) => s.activity?.entryPage],
  ["activity.exitPage", (s) => s.activity?.exitPage],
];
const NULLABLE_STRINGS = NULLABLE_MSG.filter(([name]) => !name.startsWith("metadata.time."));

describe("sessionToDoc", () => {
  const neutral = {
    id: "",
    metadata: {
      time: { insert: new Date(0), create: null, update: null, timestamp: 0, duration: 0, weekday: 0 },
      channel: "",
      aux: {},
      status: "",
    },
    profile: null,
    device: {
      name: "",
      brand: null,
      model: null,
      type: null,
      touch: false,
      ip: null,
      resolution: null,
      geo: {
        country: { name: null, code: null },
        city: null,
        county: null,
        postal: null,
        latitude: null,
        longitude: null,
        location: null,
      },
      color_depth: null,
      orientation: null,
    },
    os: { name: "", version: "" },
    app: { type: "", name: "", version: "", language: null, bot: false, resolution: null },
    utm: { source: null, medium: null, campaign: null, term: null, content: null },
    context: {},
    properties: {},
    traits: {},
    aux: {},
    revision: 0,
    session_index: 0,
    previous_session_id: null,
    activity: { page_views: 0, entry_page: null, exit_page: null, end_reason: "" },
    merged_from_profile_ids: [],
    traffic: null,
  };

  it("gives neutral values for a missing session", () => {
    expect(sessionToDoc(undefined)).toStrictEqual(neutral);
  });

  it("gives the same neutral values for an empty message", () => {
    expect(sessionToDoc(create(SessionSchema))).toStrictEqual(neutral);
  });

  it("maps a populated message field by field to the snake_case document", () => {
    const doc = sessionToDoc(fullSession("value"));
    expect(doc.id).toBe("0b4f7c6e-3c1a-4f43-9e0e-6a4a8f6f2f11");
    expect(doc.metadata.time.insert.getTime()).toBe(INSERT.getTime());
    expect(doc.metadata.time.create?.getTime()).toBe(CREATE.getTime());
    expect(doc.metadata.time.update?.getTime()).toBe(UPDATE.getTime());
    expect(doc.metadata.time.timestamp).toBe(1717055063.243);
    expect(doc.metadata.time.duration).toBe(3600);
    expect(doc.metadata.time.weekday).toBe(4);
    expect(doc.profile).toEqual({ id: "p-1", primary_id: "p-0", metadata: { tier: "gold", scores: { a: 1 } } });
    expect(doc.device.color_depth).toBe("24");
    expect(doc.device.geo.country).toEqual({ name: "Poland", code: "PL" });
    expect(doc.app.language).toBe("pl-PL");
    expect(doc.context).toEqual(STRUCT);
    expect(doc.revision).toBe(42);
  });

  it('maps unset nullable fields to null and empty ones to ""', () => {
    const unset = sessionToDoc(fullSession("unset"));
    const empty = sessionToDoc(fullSession("empty"));
    expect(unset.profile).toEqual({ id: "p-1", primary_id: null, metadata: null });
    expect(empty.profile?.primary_id).toBe("");
    expect(unset.device.brand).toBeNull();
    expect(empty.device.brand).toBe("");
    expect(unset.device.geo.country.code).toBeNull();
    expect(empty.device.geo.country.code).toBe("");
    expect(unset.utm).toEqual({ source: null, medium: null, campaign: null, term: null, content: null });
    expect(empty.utm).toEqual({ source: "", medium: "", campaign: "", term: "", content: "" });
    expect(unset.metadata.time.create).toBeNull();
    expect(unset.metadata.time.update).toBeNull();
  });
});

describe("traffic (output only)", () => {
  it("ignores a traffic object sent by the client", () => {
    const sent = create(SessionSchema, { id: "t-1", traffic: { source: "forged", medium: "cpc", channelGroup: "Paid Search" } });
    expect(sessionToDoc(sent).traffic).toBeNull();
  });

  it("returns the stored traffic field by field, nullable ones unset when null", () => {
    const doc: SessionDoc = {
      ...emptySessionDoc("t-2", INSERT),
      traffic: {
        referrer: "https://www.google.de/",
        referrer_host: "google.de",
        source: "google",
        medium: "organic",
        channel_group: "Organic Search",
        click_id: null,
      },
    };
    const t = docToSession(doc).traffic!;
    expect([t.referrer, t.referrerHost, t.source, t.medium, t.channelGroup, t.clickId]).toEqual([
      "https://www.google.de/",
      "google.de",
      "google",
      "organic",
      "Organic Search",
      undefined,
    ]);
    expect(
      docToSession({ ...doc, traffic: { ...doc.traffic!, referrer: null, referrer_host: null, click_id: "gclid" } }).traffic,
    ).toMatchObject({
      referrer: undefined,
      referrerHost: undefined,
      clickId: "gclid",
    });
  });

  it("leaves traffic unset for a session stored without it", () => {
    expect(docToSession(emptySessionDoc("t-3", INSERT)).traffic).toBeUndefined();
  });
});

describe("docToSession ∘ sessionToDoc", () => {
  it.each(["value", "empty", "unset"] as const)("keeps every field of a populated session (nullable fields %s)", (nullable) => {
    const before = fullSession(nullable);
    const after = docToSession(sessionToDoc(before));
    expect(equals(SessionSchema, after, before)).toBe(true);
    expect(after).toEqual(before);
  });

  it("keeps timestamps to the millisecond", () => {
    const after = docToSession(sessionToDoc(fullSession("value")));
    expect(timestampDate(after.metadata!.time!.insert!).getTime()).toBe(INSERT.getTime());
    expect(timestampDate(after.metadata!.time!.create!).getTime()).toBe(CREATE.getTime());
    expect(timestampDate(after.metadata!.time!.update!).getTime()).toBe(UPDATE.getTime());
    expect(after.metadata!.time!.timestamp).toBe(1717055063.243);
  });

  it("keeps nested Struct values", () => {
    const after = docToSession(sessionToDoc(fullSession("value")));
    expect(after.context).toEqual(STRUCT);
    expect(after.metadata!.aux).toEqual({ source: { kind: "sdk", version: [1, 2] } });
    expect(after.profile!.metadata).toEqual({ tier: "gold", scores: { a: 1 } });
    expect(after.properties).toEqual({ cart: { value: 12.5, items: [{ sku: "A-1", qty: 2 }] } });
    expect(after.traits).toEqual({ vip: true });
    expect(after.aux).toEqual({ nested: { a: { b: { c: "d" } } } });
    expect(after.revision).toBe(42n);
  });

  it.each(NULLABLE_MSG)("keeps %s unset (undefined) when it was unset", (_name, get) => {
    expect(get(docToSession(sessionToDoc(fullSession("unset"))))).toBeUndefined();
  });

  it.each(NULLABLE_STRINGS)('keeps %s "" when it was "" (distinct from unset)', (_name, get) => {
    expect(get(docToSession(sessionToDoc(fullSession("empty"))))).toBe("");
  });

  it.each(NULLABLE_STRINGS)("keeps the value of %s", (_name, get) => {
    const before = fullSession("value");
    expect(get(docToSession(sessionToDoc(before)))).toBe(get(before));
  });

  it("keeps an unset profile metadata unset and an unset profile unset", () => {
    const after = docToSession(sessionToDoc(fullSession("unset")));
    expect(after.profile).toBeDefined();
    expect(after.profile!.metadata).toBeUndefined();
    const noProfile = fullSession("value");
    noProfile.profile = undefined;
    expect(docToSession(sessionToDoc(noProfile)).profile).toBeUndefined();
  });

  it("keeps an empty profile metadata {} distinct from unset", () => {
    const s = fullSession("value");
    s.profile!.metadata = {};
    expect(docToSession(sessionToDoc(s)).profile!.metadata).toEqual({});
  });

  it('keeps unset and "" apart on the wire too', () => {
    const unset = fromBinary(SessionSchema, toBinary(SessionSchema, docToSession(sessionToDoc(fullSession("unset")))));
    const empty = fromBinary(SessionSchema, toBinary(SessionSchema, docToSession(sessionToDoc(fullSession("empty")))));
    for (const [name, get] of NULLABLE_MSG) expect([name, get(unset)]).toEqual([name, undefined]);
    for (const [name, get] of NULLABLE_STRINGS) expect([name, get(empty)]).toEqual([name, ""]);
    expect(equals(SessionSchema, unset, fullSession("unset"))).toBe(true);
    expect(equals(SessionSchema, empty, fullSession("empty"))).toBe(true);
  });
});

describe("sessionToDoc ∘ docToSession", () => {
  function fullDoc(): SessionDoc {
    const doc = emptySessionDoc("s-1", INSERT);
    doc.metadata.time.create = CREATE;
    doc.metadata.time.update = UPDATE;
    doc.metadata.time.duration = 3600;
    doc.metadata.channel = "web";
    doc.metadata.aux = { a: { b: [1, "2", null] } };
    doc.profile = { id: "p-1", primary_id: null, metadata: { tier: "gold" } };
    doc.device.brand = "";
    doc.device.geo.city = "Warsaw";
    doc.device.geo.country = { name: null, code: "PL" };
    doc.app.language = "pl-PL";
    doc.utm.source = "newsletter";
    doc.utm.term = "";
    doc.context = STRUCT;
    doc.revision = 7;
    return doc;
  }

  it('keeps every field of a stored document, null and "" apart', () => {
    const doc = fullDoc();
    expect(sessionToDoc(docToSession(doc))).toStrictEqual(doc);
  });

  it("keeps a null profile null", () => {
    const doc = fullDoc();
    doc.profile = null;
    expect(sessionToDoc(docToSession(doc)).profile).toBeNull();
  });

  it("keeps a profile with null metadata and primary_id", () => {
    const doc = fullDoc();
    doc.profile = { id: "", primary_id: null, metadata: null };
    expect(sessionToDoc(docToSession(doc)).profile).toStrictEqual({ id: "", primary_id: null, metadata: null });
  });
});

describe("docToSession", () => {
  it("leaves operation unset without flags", () => {
    expect(docToSession(emptySessionDoc("s", INSERT)).operation).toBeUndefined();
  });

  it("sets the operation flags when given", () => {
    const s = docToSession(emptySessionDoc("s", INSERT), { new: true, update: false, segment: true, merge: ["a", "b"] });
    expect(s.operation).toBeDefined();
    expect(s.operation!.new).toBe(true);
    expect(s.operation!.update).toBe(false);
    expect(s.operation!.segment).toBe(true);
    expect(s.operation!.merge).toEqual(["a", "b"]);
  });

  it("leaves metadata.time.create and update unset when null", () => {
    const s = docToSession(emptySessionDoc("s", INSERT));
    expect(s.metadata!.time!.create).toBeUndefined();
    expect(s.metadata!.time!.update).toBeUndefined();
    expect(timestampDate(s.metadata!.time!.insert!).getTime()).toBe(INSERT.getTime());
    expect(s.metadata!.time!.weekday).toBe(4);
  });
});

describe("statsInput and statsResponse", () => {
  const request = (r: MessageInitShape<typeof GetSessionStatsRequestSchema> = {}) => create(GetSessionStatsRequestSchema, r);
  const fieldOf = (f: () => unknown): string | undefined => {
    try {
      f();
      return undefined;
    } catch (err) {
      return err instanceof InvalidArgumentError ? err.violations[0].field : "not InvalidArgumentError";
    }
  };

  it("maps breakdowns in order, UNSPECIFIED to undefined (the domain refuses it), and the minute flag", () => {
    const i = statsInput(
      request({ breakdowns: [StatsGroupBy.OS_NAME, StatsGroupBy.UNSPECIFIED, StatsGroupBy.CHANNEL], startedPerMinute: true }),
      0,
    );
    expect(i.breakdowns).toEqual(["os_name", undefined, "channel"]);
    expect(i.startedPerMinute).toBe(true);
    expect(statsInput(request(), 0)).toMatchObject({ breakdowns: [], startedPerMinute: false, groupBy: undefined });
  });

  it("names an unknown enum value by its index, and refuses more than 9 entries before mapping them", () => {
    expect(fieldOf(() => statsInput(request({ breakdowns: [StatsGroupBy.CHANNEL, 99 as StatsGroupBy] }), 0))).toBe("breakdowns[1]");
    expect(fieldOf(() => statsInput(request({ groupBy: 42 as StatsGroupBy }), 0))).toBe("group_by");
    expect(fieldOf(() => statsInput(request({ breakdowns: new Array<StatsGroupBy>(10).fill(99 as StatsGroupBy) }), 0))).toBe("breakdowns");
  });

  it("answers breakdowns with their StatsGroupBy and the minutes as timestamps", () => {
    const start = new Date("2024-05-30T07:44:00.000Z");
    const res = statsResponse({
      total: 3,
      groups: [],
      breakdowns: [{ field: "country_code", groups: [{ key: null, count: 3 }] }],
      startedPerMinute: [{ start, count: 2 }],
      online: 1,
      computedAt: INSERT,
    });
    expect(res.breakdowns.map((b) => [b.groupBy, b.groups.map((g) => [g.key, g.count])])).toEqual([
      [StatsGroupBy.COUNTRY_CODE, [[undefined, 3n]]],
    ]);
    expect(res.startedPerMinute.map((m) => [timestampDate(m.start!).getTime(), m.count])).toEqual([[start.getTime(), 2n]]);
  });
});
