import { InvalidArgumentError } from "../../src/domain/errors";
import { buildPatch, copyPaths, deleteIn, getIn, isCovered, resolveMask, setIn } from "../../src/domain/mask";
import { emptySessionDoc, type SessionDoc } from "../../src/domain/session";

const INSERT = new Date("2024-05-30T07:44:23.243Z");
const p = (s: string): string[] => s.split(".");
const names = (paths: string[][]): string[] => paths.map((x) => x.join(".")).sort();

/** Every client-writable leaf of the document. */
const WRITABLE_LEAVES = [
  "metadata.time.create",
  "metadata.channel",
  "metadata.aux",
  "metadata.status",
  "profile.id",
  "profile.primary_id",
  "profile.metadata",
  "device.name",
  "device.brand",
  "device.model",
  "device.type",
  "device.touch",
  "device.ip",
  "device.resolution",
  "device.color_depth",
  "device.orientation",
  "device.geo.country.name",
  "device.geo.country.code",
  "device.geo.city",
  "device.geo.county",
  "device.geo.postal",
  "device.geo.latitude",
  "device.geo.longitude",
  "device.geo.location",
  "os.name",
  "os.version",
  "app.type",
  "app.name",
  "app.version",
  "app.language",
  "app.bot",
  "app.resolution",
  "utm.source",
  "utm.medium",
  "utm.campaign",
  "utm.term",
  "utm.content",
  "context",
  "properties",
  "traits",
  "aux",
];
const SERVER_SET = [
  "id",
  "revision",
  "operation",
  "metadata.time.insert",
  "metadata.time.update",
  "metadata.time.timestamp",
  "metadata.time.duration",
  "metadata.time.weekday",
];

function maskError(paths: string[]): InvalidArgumentError {
  try {
    resolveMask(paths);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    return err as InvalidArgumentError;
  }
  throw new Error(`resolveMask(${JSON.stringify(paths)}) did not throw`);
}

function sampleDoc(): SessionDoc {
  const doc = emptySessionDoc("s-1", INSERT);
  doc.metadata.channel = "web";
  doc.device.geo.city = "Warsaw";
  doc.properties = { a: 1, b: 2, cart: { value: 5, items: ["x"] } };
  doc.context = { page: { url: "https://example.com/" } };
  return doc;
}

describe("resolveMask", () => {
  it('expands "*" to every client-writable field', () => {
    const out = resolveMask(["*"]);
    for (const leaf of WRITABLE_LEAVES) expect([leaf, isCovered(out, p(leaf))]).toEqual([leaf, true]);
    expect(names(out)).toEqual(
      [
        "metadata.time.create",
        "metadata.channel",
        "metadata.aux",
        "metadata.status",
        "profile",
        "device",
        "os",
        "app",
        "utm",
        "context",
        "properties",
        "traits",
        "aux",
      ].sort(),
    );
  });

  it('leaves every server-set field out of "*"', () => {
    const out = resolveMask(["*"]);
    for (const path of SERVER_SET) expect([path, isCovered(out, p(path))]).toEqual([path, false]);
    // nor does any resolved path lie above a server-set field
    for (const r of out) for (const path of SERVER_SET) expect(isCovered([r], p(path))).toBe(false);
  });

  it('expands "metadata" to its client-writable fields', () => {
    expect(names(resolveMask(["metadata"]))).toEqual(["metadata.aux", "metadata.channel", "metadata.status", "metadata.time.create"]);
  });

  it('expands "metadata.time" to metadata.time.create only', () => {
    expect(resolveMask(["metadata.time"])).toEqual([["metadata", "time", "create"]]);
  });

  it("keeps leaf and message paths as they are", () => {
    expect(resolveMask(["device.geo.city"])).toEqual([["device", "geo", "city"]]);
    expect(resolveMask(["device.geo.country.code"])).toEqual([["device", "geo", "country", "code"]]);
    expect(resolveMask(["utm"])).toEqual([["utm"]]);
    expect(resolveMask(["profile.primary_id"])).toEqual([["profile", "primary_id"]]);
    expect(resolveMask(["metadata.time.create"])).toEqual([["metadata", "time", "create"]]);
  });

  it("accepts paths into the keys of free-form objects", () => {
    expect(resolveMask(["properties.a.b"])).toEqual([["properties", "a", "b"]]);
    expect(resolveMask(["metadata.aux.x"])).toEqual([["metadata", "aux", "x"]]);
    expect(resolveMask(["profile.metadata.tier"])).toEqual([["profile", "metadata", "tier"]]);
    expect(resolveMask(["context.a$b.zażółć"])).toEqual([["context", "a$b", "zażółć"]]);
    expect(resolveMask(["traits.x", "aux.y"])).toEqual([
      ["traits", "x"],
      ["aux", "y"],
    ]);
  });

  it.each([
    ["an unknown top-level field", "nope"],
    ["an unknown nested field", "device.geo.planet"],
    ["a path below a leaf", "device.geo.city.name"],
    ["a wrong case", "Device"],
    ["a camelCase name", "device.colorDepth"],
    ["an inherited property name", "constructor"],
    ["an inherited property name below a message", "device.toString"],
    ["__proto__", "__proto__"],
    ["an empty path", ""],
    ["a trailing dot", "device."],
  ])("rejects %s", (_name, path) => {
    const err = maskError([path]);
    expect(err.violations).toHaveLength(1);
    expect(err.violations[0].field).toBe("update_mask");
    expect(err.violations[0].description).toContain(JSON.stringify(path));
  });

  it.each([
    "metadata.time.insert",
    "metadata.time.update",
    "metadata.time.timestamp",
    "metadata.time.duration",
    "metadata.time.weekday",
    "revision",
    "id",
    "operation",
    "traffic",
    "traffic.source",
    "traffic.channel_group",
  ])("rejects the server-set path %s", (path) => {
    const err = maskError([path]);
    expect(err.violations).toEqual([{ field: "update_mask", description: expect.stringContaining(path) }]);
  });

  it("rejects a path below a server-set field", () => {
    expect(maskError(["operation.new"]).violations.map((v) => v.field)).toEqual(["update_mask"]);
  });

  it.each([
    ["a $ key", "properties.$x"],
    ["a $ key deeper down", "properties.a.$x"],
    ["an empty key", "properties..a"],
    ["an empty last key", "context."],
    ["a NUL key", "aux.a\0b"],
    ["a bad key in profile.metadata", "profile.metadata.$where"],
    ["a bad key in metadata.aux", "metadata.aux.$x"],
  ])("rejects %s in a free-form path", (_name, path) => {
    const err = maskError([path]);
    expect(err.violations).toHaveLength(1);
    expect(err.violations[0].field).toBe("update_mask");
  });

  it("rejects an empty mask", () => {
    const err = maskError([]);
    expect(err.violations).toHaveLength(1);
    expect(err.violations[0].field).toBe("update_mask");
  });

  it("reports every bad path of a mask, and a good path does not save it", () => {
    const err = maskError(["device.geo.city", "nope", "id", "properties.$x"]);
    expect(err.violations).toHaveLength(3);
    expect(err.violations.every((v) => v.field === "update_mask")).toBe(true);
  });

  it('rejects a server-set path also next to "*"', () => {
    expect(maskError(["*", "revision"]).violations).toHaveLength(1);
  });
});

describe("isCovered", () => {
  const masked = [
    ["device", "geo"],
    ["properties", "a"],
  ];
  it("is true for a masked path and any path below it", () => {
    expect(isCovered(masked, ["device", "geo"])).toBe(true);
    expect(isCovered(masked, ["device", "geo", "city"])).toBe(true);
    expect(isCovered(masked, ["properties", "a", "b", "c"])).toBe(true);
  });
  it("is false for parents, siblings and look-alike prefixes", () => {
    expect(isCovered(masked, ["device"])).toBe(false);
    expect(isCovered(masked, ["device", "name"])).toBe(false);
    expect(isCovered(masked, ["properties", "ab"])).toBe(false);
    expect(isCovered(masked, ["os", "name"])).toBe(false);
  });
  it("is false for an empty mask", () => {
    expect(isCovered([], ["device"])).toBe(false);
  });
});

describe("getIn", () => {
  const doc = sampleDoc();
  it("reads values at any depth, including null and falsy ones", () => {
    expect(getIn(doc, ["device", "geo", "city"])).toBe("Warsaw");
    expect(getIn(doc, ["device", "brand"])).toBeNull();
    expect(getIn(doc, ["device", "touch"])).toBe(false);
    expect(getIn(doc, ["properties", "cart", "value"])).toBe(5);
    expect(getIn(doc, ["metadata", "time", "insert"])).toBe(INSERT);
    expect(getIn(doc, [])).toBe(doc);
  });
  it("is undefined when a step is missing or not an object", () => {
    expect(getIn(doc, ["properties", "missing"])).toBeUndefined();
    expect(getIn(doc, ["properties", "missing", "x"])).toBeUndefined();
    expect(getIn(doc, ["profile", "id"])).toBeUndefined(); // profile is null
    expect(getIn(doc, ["properties", "a", "x"])).toBeUndefined(); // a is a number
    expect(getIn(doc, ["properties", "cart", "items", "0"])).toBeUndefined(); // no walking into arrays
    expect(getIn(doc, ["metadata", "time", "insert", "getTime"])).toBeUndefined(); // nor into Dates
  });
  it("reads own keys only", () => {
    expect(getIn(doc, ["properties", "constructor"])).toBeUndefined();
    expect(getIn(doc, ["properties", "toString"])).toBeUndefined();
    expect(getIn(doc, ["properties", "__proto__"])).toBeUndefined();
  });
});

describe("setIn", () => {
  it("sets an existing path", () => {
    const doc = sampleDoc();
    setIn(doc as unknown as Record<string, unknown>, ["device", "geo", "city"], "Kraków");
    expect(doc.device.geo.city).toBe("Kraków");
    expect(doc.device.geo.county).toBeNull();
  });
  it("creates missing steps and replaces non-object steps with objects", () => {
    const o: Record<string, unknown> = { a: 5, keep: 1 };
    setIn(o, ["a", "b", "c"], true);
    setIn(o, ["x", "y"], null);
    expect(o).toEqual({ a: { b: { c: true } }, x: { y: null }, keep: 1 });
  });
  it("replaces a null step (a null profile) with an object", () => {
    const doc = sampleDoc();
    setIn(doc as unknown as Record<string, unknown>, ["profile", "id"], "p-1");
    expect(doc.profile).toEqual({ id: "p-1" });
  });
  it("writes a key named __proto__ as an own key, never into Object.prototype", () => {
    const o: Record<string, unknown> = {};
    try {
      setIn(o, ["__proto__", "polluted"], 1);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(Object.prototype.hasOwnProperty.call(o, "__proto__")).toBe(true);
      expect(Object.getPrototypeOf(o)).toBe(Object.prototype);
    } finally {
      delete (Object.prototype as Record<string, unknown>).polluted;
    }
  });
  it("writes a __proto__ leaf as an own key, not as the object's prototype", () => {
    const o: Record<string, unknown> = { properties: {} };
    setIn(o, ["properties", "__proto__"], { x: 1 });
    const props = o.properties as Record<string, unknown>;
    expect(Object.getPrototypeOf(props)).toBe(Object.prototype);
    expect(Object.prototype.hasOwnProperty.call(props, "__proto__")).toBe(true);
    expect(getIn(o, ["properties", "__proto__", "x"])).toBe(1);
  });
});

describe("deleteIn", () => {
  it("removes a key at any depth", () => {
    const doc = sampleDoc();
    deleteIn(doc as unknown as Record<string, unknown>, ["properties", "cart", "value"]);
    expect(doc.properties).toEqual({ a: 1, b: 2, cart: { items: ["x"] } });
    deleteIn(doc as unknown as Record<string, unknown>, ["properties", "a"]);
    expect(doc.properties).not.toHaveProperty("a");
  });
  it("does nothing when the key or a parent is missing or not an object", () => {
    const doc = sampleDoc();
    deleteIn(doc as unknown as Record<string, unknown>, ["properties", "missing"]);
    deleteIn(doc as unknown as Record<string, unknown>, ["properties", "missing", "x"]);
    deleteIn(doc as unknown as Record<string, unknown>, ["properties", "a", "x"]);
    deleteIn(doc as unknown as Record<string, unknown>, ["profile", "id"]);
    expect(doc).toEqual(sampleDoc());
  });
});

describe("copyPaths", () => {
  it("copies the values at the given paths and nothing else", () => {
    const target = sampleDoc();
    const source = emptySessionDoc("other", new Date(0));
    source.device.geo.city = "Gdańsk";
    source.metadata.channel = "mobile";
    source.os = { name: "iOS", version: "17.4" };
    copyPaths(target, source, [["device", "geo", "city"], ["os"]]);
    expect(target.device.geo.city).toBe("Gdańsk");
    expect(target.os).toEqual({ name: "iOS", version: "17.4" });
    expect(target.metadata.channel).toBe("web");
    expect(target.id).toBe("s-1");
  });

  it("copies null values", () => {
    const target = sampleDoc();
    copyPaths(target, emptySessionDoc("x", new Date(0)), [["device", "geo", "city"]]);
    expect(target.device.geo.city).toBeNull();
  });

  it("removes a free-form key that the source does not have", () => {
    const target = sampleDoc();
    const source = sampleDoc();
    delete source.properties.a;
    copyPaths(target, source, [
      ["properties", "a"],
      ["properties", "nothere"],
    ]);
    expect(target.properties).toEqual({ b: 2, cart: { value: 5, items: ["x"] } });
  });

  it("creates missing free-form parents and a null profile", () => {
    const target = sampleDoc();
    const source = sampleDoc();
    source.properties.n = { deep: { x: 1 } };
    source.profile = { id: "p-1", primary_id: null, metadata: null };
    copyPaths(target, source, [
      ["properties", "n", "deep", "x"],
      ["profile", "id"],
    ]);
    expect(target.properties.n).toEqual({ deep: { x: 1 } });
    expect(target.profile).toEqual({ id: "p-1" });
  });

  it("copies values, sharing no object or Date with the source", () => {
    const target = sampleDoc();
    const source = sampleDoc();
    source.metadata.time.create = new Date(1000);
    copyPaths(target, source, [["properties"], ["metadata", "time", "create"]]);
    (source.properties.cart as { items: string[] }).items.push("y");
    source.metadata.time.create.setTime(2000);
    expect(target.properties.cart).toEqual({ value: 5, items: ["x"] });
    expect((target.metadata.time.create as Date).getTime()).toBe(1000);
  });

  it("does not pollute Object.prototype through a free-form key named __proto__", () => {
    // What UpdateSession does for update_mask "properties.__proto__.polluted" (accepted by
    // resolveMask today) with session.properties = {"__proto__": {"polluted": "yes"}}.
    const target = sampleDoc();
    const source = sampleDoc();
    source.properties = JSON.parse('{"__proto__": {"polluted": "yes"}}');
    try {
      copyPaths(target, source, [["properties", "__proto__", "polluted"]]);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(Object.getPrototypeOf(target.properties)).toBe(Object.prototype);
      expect(getIn(target, ["properties", "__proto__", "polluted"])).toBe("yes");
    } finally {
      delete (Object.prototype as Record<string, unknown>).polluted;
    }
  });
});

describe("buildPatch", () => {
  it("keeps paths whose parents exist as they are, with the next values", () => {
    const current = sampleDoc();
    const next = sampleDoc();
    next.device.geo.city = "Kraków";
    next.metadata.channel = "mobile";
    next.properties.cart = { value: 7 };
    const patch = buildPatch(current, next, [
      ["device", "geo", "city"],
      ["metadata", "channel"],
      ["properties", "cart", "value"],
    ]);
    expect(patch.unset).toEqual([]);
    expect(patch.set).toHaveLength(3);
    expect(patch.set).toEqual(
      expect.arrayContaining([
        { path: ["device", "geo", "city"], value: "Kraków" },
        { path: ["metadata", "channel"], value: "mobile" },
        { path: ["properties", "cart", "value"], value: 7 },
      ]),
    );
  });

  it("writes a masked path even when its value did not change", () => {
    const current = sampleDoc();
    const patch = buildPatch(current, sampleDoc(), [["device", "geo", "city"]]);
    expect(patch).toEqual({ set: [{ path: ["device", "geo", "city"], value: "Warsaw" }], unset: [] });
  });

  it("writes null values with set, not unset", () => {
    const next = sampleDoc();
    next.device.geo.city = null;
    expect(buildPatch(sampleDoc(), next, [["device", "geo", "city"]])).toEqual({
      set: [{ path: ["device", "geo", "city"], value: null }],
      unset: [],
    });
  });

  it("lifts a path into a null profile to the whole profile", () => {
    const current = sampleDoc();
    expect(current.profile).toBeNull();
    const next = sampleDoc();
    next.profile = { id: "p-1", primary_id: null, metadata: { tier: "gold" } };
    const patch = buildPatch(current, next, [
      ["profile", "id"],
      ["profile", "metadata", "tier"],
    ]);
    expect(patch).toEqual({ set: [{ path: ["profile"], value: { id: "p-1", primary_id: null, metadata: { tier: "gold" } } }], unset: [] });
  });

  it("lifts a path below a missing free-form key to that key", () => {
    const current = sampleDoc();
    const next = sampleDoc();
    next.properties.n = { deep: { x: 1 } };
    expect(buildPatch(current, next, [["properties", "n", "deep", "x"]])).toEqual({
      set: [{ path: ["properties", "n"], value: { deep: { x: 1 } } }],
      unset: [],
    });
  });

  it("lifts to the first missing step when a deeper part of the parent exists", () => {
    const current = sampleDoc();
    current.properties.n = {};
    const next = sampleDoc();
    next.properties.n = { deep: { x: 1 } };
    expect(buildPatch(current, next, [["properties", "n", "deep", "x"]])).toEqual({
      set: [{ path: ["properties", "n", "deep"], value: { x: 1 } }],
      unset: [],
    });
  });

  it("lifts a path below a non-object free-form value to that value", () => {
    const current = sampleDoc(); // properties.a is 1
    const next = sampleDoc();
    next.properties.a = { b: 2 };
    expect(buildPatch(current, next, [["properties", "a", "b"]])).toEqual({
      set: [{ path: ["properties", "a"], value: { b: 2 } }],
      unset: [],
    });
  });

  it("unsets a free-form key that next no longer has", () => {
    const current = sampleDoc();
    const next = sampleDoc();
    delete next.properties.a;
    expect(buildPatch(current, next, [["properties", "a"]])).toEqual({ set: [], unset: [["properties", "a"]] });
  });

  it("unsets a lifted key that next does not have either", () => {
    const current = sampleDoc();
    const next = sampleDoc();
    expect(buildPatch(current, next, [["properties", "gone", "x"]])).toEqual({ set: [], unset: [["properties", "gone"]] });
  });

  it("drops paths below another patched path, in any order", () => {
    const current = sampleDoc();
    const next = sampleDoc();
    next.device.geo.city = "Kraków";
    next.device.name = "iPhone";
    const patch = buildPatch(current, next, [["device", "geo", "city"], ["device"], ["device", "name"]]);
    expect(patch.unset).toEqual([]);
    expect(patch.set).toEqual([{ path: ["device"], value: next.device }]);
  });

  it("drops a set and an unset below another patched path", () => {
    const current = sampleDoc();
    const next = sampleDoc();
    delete next.properties.a;
    next.properties.cart = { value: 1 };
    const patch = buildPatch(current, next, [["properties", "a"], ["properties", "cart", "value"], ["properties"]]);
    expect(patch).toEqual({ set: [{ path: ["properties"], value: next.properties }], unset: [] });
  });

  it("drops duplicate paths", () => {
    const patch = buildPatch(sampleDoc(), sampleDoc(), [["os"], ["os"], ["os", "name"]]);
    expect(patch.set.map((s) => s.path)).toEqual([["os"]]);
  });

  it("never has a path that is a prefix of another", () => {
    const current = sampleDoc();
    const next = sampleDoc();
    next.profile = { id: "p", primary_id: "q", metadata: null };
    delete next.properties.b;
    const patch = buildPatch(current, next, [
      ...resolveMask(["*"]),
      ["profile", "id"],
      ["properties", "b"],
      ["metadata", "time", "update"],
      ["metadata", "time", "duration"],
    ]);
    const all = [...patch.set.map((s) => s.path), ...patch.unset];
    for (const a of all) for (const b of all) if (a !== b) expect([a, b, isCovered([a], b)]).toEqual([a, b, false]);
    expect(patch.set.map((s) => s.path)).toEqual(expect.arrayContaining([["profile"], ["properties"], ["metadata", "time", "update"]]));
  });

  it("copies the values, sharing nothing with next", () => {
    const current = sampleDoc();
    const next = sampleDoc();
    next.metadata.time.update = new Date(5000);
    const patch = buildPatch(current, next, [["properties"], ["metadata", "time", "update"]]);
    (next.properties.cart as { items: string[] }).items.push("y");
    next.metadata.time.update.setTime(0);
    const props = patch.set.find((s) => s.path[0] === "properties")!.value as Record<string, unknown>;
    expect(props.cart).toEqual({ value: 5, items: ["x"] });
    const update = patch.set.find((s) => s.path[2] === "update")!.value as Date;
    expect(Object.prototype.toString.call(update)).toBe("[object Date]");
    expect(update.getTime()).toBe(5000);
  });

  it("leaves current and next untouched", () => {
    const current = sampleDoc();
    const next = sampleDoc();
    next.properties.n = { x: 1 };
    buildPatch(current, next, [
      ["profile", "id"],
      ["properties", "n", "x"],
      ["properties", "a"],
    ]);
    expect(current).toEqual(sampleDoc());
    expect(next.properties.n).toEqual({ x: 1 });
  });
});
