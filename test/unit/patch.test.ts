import { emptySessionDoc, type SessionDoc } from "../../src/domain/session";
import { applyPatch, cloneDoc } from "../../src/store/patch";

const INSERT = new Date(Date.UTC(2024, 4, 30, 7, 44, 23, 243));

function sampleDoc(): SessionDoc {
  const doc = emptySessionDoc("s-1", INSERT);
  doc.metadata.time.create = new Date(INSERT.getTime() - 1000);
  doc.profile = { id: "p-1", primary_id: null, metadata: { tier: "gold" } };
  doc.context = { page: { url: "https://example.com/", title: "Zażółć 🙂" }, tags: ["a", "b"] };
  doc.properties = { count: 1, keep: "me", nested: { a: 1, b: [1, { c: null }] } };
  doc.revision = 7;
  return doc;
}

describe("cloneDoc", () => {
  it("returns a deep-equal copy that shares no object or Date with the original", () => {
    const doc = sampleDoc();
    const copy = cloneDoc(doc);
    expect(copy).toEqual(doc);
    expect(copy.metadata.time.insert).not.toBe(doc.metadata.time.insert);
    expect(copy.metadata.time.insert.getTime()).toBe(INSERT.getTime());

    (copy.properties.nested as { b: unknown[] }).b.push("x");
    copy.metadata.time.insert.setTime(0);
    (copy.context.tags as string[])[0] = "z";
    expect(doc).toEqual(sampleDoc());
  });
});

describe("applyPatch", () => {
  it("returns a new document and leaves the input untouched", () => {
    const doc = sampleDoc();
    const result = applyPatch(doc, { set: [{ path: ["device", "geo", "city"], value: "Kraków" }], unset: [["properties", "keep"]] });
    expect(result).not.toBe(doc);
    expect(doc).toEqual(sampleDoc());
    expect(result.device.geo.city).toBe("Kraków");
    expect(result.properties).not.toHaveProperty("keep");
  });

  it("sets top-level, nested and Date fields and changes nothing else", () => {
    const doc = sampleDoc();
    const update = new Date(INSERT.getTime() + 5000);
    const result = applyPatch(doc, {
      set: [
        { path: ["metadata", "status"], value: "closed" },
        { path: ["metadata", "time", "update"], value: update },
        { path: ["device", "geo", "country", "code"], value: "PL" },
        { path: ["traits"], value: { vip: true } },
        { path: ["profile"], value: null },
      ],
      unset: [],
    });
    const expected = sampleDoc();
    expected.metadata.status = "closed";
    expected.metadata.time.update = new Date(update.getTime());
    expected.device.geo.country.code = "PL";
    expected.traits = { vip: true };
    expected.profile = null;
    expect(result).toEqual(expected);
    expect(result.metadata.time.update).toBeInstanceOf(Date);
  });

  it("copies set values, so later changes to them do not reach the result", () => {
    const value = { list: [1, 2], when: new Date(INSERT.getTime()) };
    const result = applyPatch(sampleDoc(), { set: [{ path: ["aux", "v"], value }], unset: [] });
    value.list.push(3);
    value.when.setTime(0);
    expect(result.aux.v).toEqual({ list: [1, 2], when: new Date(INSERT.getTime()) });
  });

  it("creates the last key of a path whose parents exist", () => {
    const result = applyPatch(sampleDoc(), {
      set: [
        { path: ["properties", "fresh"], value: "new" },
        { path: ["properties", "nested", "d"], value: { e: [] } },
      ],
      unset: [],
    });
    expect(result.properties.fresh).toBe("new");
    expect(result.properties.nested).toEqual({ a: 1, b: [1, { c: null }], d: { e: [] } });
  });

  it.each([
    ["a missing parent", ["properties", "missing", "x"]],
    ["a null parent", ["device", "geo", "city", "x"]],
    ["an array parent", ["context", "tags", "0"]],
    ["a Date parent", ["metadata", "time", "insert", "x"]],
    ["a string parent", ["properties", "keep", "x"]],
    ["an inherited key as parent", ["properties", "constructor", "x"]],
    ["an empty path", []],
  ])("throws rather than create anything under %s", (_label, path) => {
    expect(() => applyPatch(sampleDoc(), { set: [{ path, value: 1 }], unset: [] })).toThrow(/cannot set/);
  });

  it("unsets keys of free-form objects, at any depth", () => {
    const result = applyPatch(sampleDoc(), {
      set: [],
      unset: [
        ["properties", "count"],
        ["properties", "nested", "a"],
        ["context", "page"],
      ],
    });
    expect(result.properties).toEqual({ keep: "me", nested: { b: [1, { c: null }] } });
    expect(result.context).toEqual({ tags: ["a", "b"] });
  });

  it("ignores unset of a key or parent that does not exist, like MongoDB's $unset", () => {
    const doc = sampleDoc();
    const result = applyPatch(doc, {
      set: [],
      unset: [
        ["properties", "absent"],
        ["properties", "absent", "deeper"],
        ["properties", "toString"],
      ],
    });
    expect(result).toEqual(doc);
  });

  it("treats a free-form key named __proto__ as an ordinary key", () => {
    const result = applyPatch(sampleDoc(), { set: [{ path: ["properties", "__proto__"], value: { polluted: true } }], unset: [] });
    expect(Object.getPrototypeOf(result.properties)).toBe(Object.prototype);
    expect(Object.keys(result.properties)).toContain("__proto__");
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();

    // It survives a further copy and can be unset.
    const copy = cloneDoc(result);
    expect(Object.getOwnPropertyDescriptor(copy.properties, "__proto__")?.value).toEqual({ polluted: true });
    const unset = applyPatch(copy, { set: [], unset: [["properties", "__proto__"]] });
    expect(Object.keys(unset.properties)).not.toContain("__proto__");
  });

  it("keeps the revision of the input (the store stamps a new one)", () => {
    expect(applyPatch(sampleDoc(), { set: [], unset: [] }).revision).toBe(7);
  });
});
