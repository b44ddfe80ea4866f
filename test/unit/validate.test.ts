import { emptySessionDoc, type JsonObject, type JsonValue } from "../../src/domain/session";
import { InvalidArgumentError, MAX_LISTED_VIOLATIONS } from "../../src/domain/errors";
import {
  badKeyReason,
  checkFreeForm,
  checkId,
  checkRevision,
  checkSessionFreeForm,
  MAX_ID_LENGTH,
  MAX_REVISION,
} from "../../src/domain/validate";

describe("checkId", () => {
  it("accepts a UUID, required or not", () => {
    expect(checkId("session.id", "0b4f7c6e-3c1a-4f43-9e0e-6a4a8f6f2f11", true)).toEqual([]);
    expect(checkId("session.id", "0b4f7c6e-3c1a-4f43-9e0e-6a4a8f6f2f11", false)).toEqual([]);
  });

  it("accepts other printable ids, including non-ASCII ones", () => {
    expect(checkId("id", "s-1", true)).toEqual([]);
    expect(checkId("id", "sesja-zażółć", true)).toEqual([]);
    expect(checkId("id", "a/b:c@d", true)).toEqual([]);
  });

  it("rejects an empty required id, naming the field", () => {
    const v = checkId("session.id", "", true);
    expect(v).toHaveLength(1);
    expect(v[0].field).toBe("session.id");
    expect(v[0].description).toMatch(/empty/);
  });

  it("accepts an empty optional id", () => {
    expect(checkId("request_id", "", false)).toEqual([]);
  });

  it("accepts exactly MAX_ID_LENGTH (128) characters and rejects one more", () => {
    expect(MAX_ID_LENGTH).toBe(128);
    expect(checkId("id", "x".repeat(128), true)).toEqual([]);
    const v = checkId("id", "x".repeat(129), true);
    expect(v).toHaveLength(1);
    expect(v[0].field).toBe("id");
    expect(v[0].description).toMatch(/128/);
    // too long is too long also when the id is optional
    expect(checkId("request_id", "x".repeat(129), false)).toHaveLength(1);
  });

  it.each([
    ["a space", "a b"],
    ["a leading space", " a"],
    ["a trailing newline", "a\n"],
    ["a tab", "a\tb"],
    ["a carriage return", "a\rb"],
    ["a no-break space", "a\u00a0b"],
    ["a line separator", "a\u2028b"],
    ["NUL", "a\0b"],
    ["a C0 control character", "a\u0001b"],
    ["DEL", "a\u007fb"],
    ["a C1 control character", "a\u0085b"],
    ["only whitespace", "   "],
  ])("rejects %s", (_name, id) => {
    const v = checkId("session.id", id, false);
    expect(v).toHaveLength(1);
    expect(v[0].field).toBe("session.id");
    expect(v[0].description).toMatch(/whitespace or control/);
  });
});

describe("badKeyReason", () => {
  it.each([
    ["$x", /\$/],
    ["$", /\$/],
    ["a.b", /"\."/],
    [".", /"\."/],
    ["a.", /"\."/],
    ["a\0b", /NUL/],
    ["", /empty/],
  ])("rejects %j", (key, reason) => {
    const r = badKeyReason(key);
    expect(r).not.toBeNull();
    expect(r).toMatch(reason);
  });

  it.each(["ok", "a$b", "x$", "zażółć", "キー", "🙂", "with space", "__proto__", "constructor", "0"])("accepts %j", (key) => {
    expect(badKeyReason(key)).toBeNull();
  });
});

describe("checkFreeForm", () => {
  it("rejects NaN and Infinity, which neither store can keep, naming where they are", () => {
    expect(checkFreeForm("session.context", { nan: NaN })).toEqual([
      { field: "session.context.nan", description: "must be a finite number (NaN and Infinity cannot be stored)" },
    ]);
    expect(checkFreeForm("session.traits", { list: [1, -Infinity] })[0].field).toBe("session.traits.list[1]");
    expect(checkFreeForm("session.aux", { ok: 1.5, big: Number.MAX_VALUE })).toEqual([]);
  });

  it("accepts null, undefined, primitives and objects with good keys", () => {
    expect(checkFreeForm("session.context", undefined)).toEqual([]);
    expect(checkFreeForm("session.context", null)).toEqual([]);
    expect(checkFreeForm("session.context", "text")).toEqual([]);
    expect(checkFreeForm("session.context", {})).toEqual([]);
    expect(checkFreeForm("session.context", { a: 1, b: { c$: [1, "x", null, true, { d: {} }] } })).toEqual([]);
  });

  it("rejects a bad top-level key, naming the object", () => {
    expect(checkFreeForm("session.properties", { $set: 1 })).toEqual([
      { field: "session.properties", description: expect.stringMatching(/\$set/) },
    ]);
  });

  it("finds bad keys in nested objects and names their path", () => {
    const v = checkFreeForm("session.properties", { cart: { items: { "a.b": 1 } } });
    expect(v).toEqual([{ field: "session.properties.cart.items", description: expect.stringMatching(/a\.b/) }]);
  });

  it("finds bad keys inside arrays, naming the index", () => {
    const v = checkFreeForm("session.context", { list: [{ ok: 1 }, { $bad: 2 }], deep: [[{ "": 3 }]] });
    expect(v).toEqual([
      { field: "session.context.list[1]", description: expect.stringMatching(/\$bad/) },
      { field: "session.context.deep[0][0]", description: expect.stringMatching(/empty/) },
    ]);
  });

  it("finds bad keys inside a top-level array", () => {
    expect(checkFreeForm("x", [1, { "a\0": 1 }])).toEqual([{ field: "x[1]", description: expect.stringMatching(/NUL/) }]);
  });

  it("reports every bad key, not only the first", () => {
    const v = checkFreeForm("session.traits", { $a: 1, "b.c": 2, ok: { $d: 3 } });
    expect(v.map((x) => x.field).sort()).toEqual(["session.traits", "session.traits", "session.traits.ok"]);
  });

  /** An object nested `levels` objects below the root: {k:{k:...{}}}. */
  function nested(levels: number): JsonObject {
    let v: JsonObject = {};
    for (let i = 0; i < levels; i++) v = { k: v };
    return v;
  }

  it("accepts nesting up to 32 levels below the root", () => {
    expect(checkFreeForm("session.aux", nested(32))).toEqual([]);
  });

  it("rejects nesting deeper than 32 levels, naming the path where it gets too deep", () => {
    const v = checkFreeForm("session.aux", nested(33));
    expect(v).toHaveLength(1);
    expect(v[0].field).toBe("session.aux" + ".k".repeat(33));
    expect(v[0].description).toMatch(/32/);
  });

  it("counts arrays as nesting levels too", () => {
    let v: JsonValue = {};
    for (let i = 0; i < 40; i++) v = [v];
    const out = checkFreeForm("session.context", v);
    expect(out).toHaveLength(1);
    expect(out[0].field).toBe("session.context" + "[0]".repeat(33));
  });

  it("reports a very deep value once and does not overflow the stack", () => {
    const v = checkFreeForm("session.aux", nested(100_000));
    expect(v).toHaveLength(1);
    expect(v[0].description).toMatch(/nesting/);
  });
});

describe("checkSessionFreeForm", () => {
  it("accepts a session with good keys and a null profile", () => {
    const doc = emptySessionDoc("s-1", new Date(0));
    doc.properties = { a: { b: [1, { c: 2 }] } };
    expect(doc.profile).toBeNull();
    expect(checkSessionFreeForm(doc)).toEqual([]);
  });

  it("accepts a profile without metadata", () => {
    const doc = emptySessionDoc("s-1", new Date(0));
    doc.profile = { id: "p", primary_id: null, metadata: null };
    expect(checkSessionFreeForm(doc)).toEqual([]);
  });

  it("checks every free-form object of the session, each with its field path", () => {
    const doc = emptySessionDoc("s-1", new Date(0));
    doc.metadata.aux = { x: { $m: 1 } };
    doc.profile = { id: "p", primary_id: null, metadata: { x: { $p: 1 } } };
    doc.context = { x: { $c: 1 } };
    doc.properties = { x: { $pr: 1 } };
    doc.traits = { x: { $t: 1 } };
    doc.aux = { x: { $a: 1 } };
    const v = checkSessionFreeForm(doc);
    expect(v.map((x) => [x.field, x.description.match(/"(\$\w+)"/)?.[1]]).sort()).toEqual(
      [
        ["session.metadata.aux.x", "$m"],
        ["session.profile.metadata.x", "$p"],
        ["session.context.x", "$c"],
        ["session.properties.x", "$pr"],
        ["session.traits.x", "$t"],
        ["session.aux.x", "$a"],
      ].sort(),
    );
  });

  it.each(["metadata.aux", "profile.metadata", "context", "properties", "traits", "aux"])("checks %s on its own", (name) => {
    const doc = emptySessionDoc("s-1", new Date(0));
    doc.profile = { id: "p", primary_id: null, metadata: {} };
    const bad: JsonObject = { "a.b": 1 };
    if (name === "metadata.aux") doc.metadata.aux = bad;
    else if (name === "profile.metadata") doc.profile.metadata = bad;
    else doc[name as "context" | "properties" | "traits" | "aux"] = bad;
    expect(checkSessionFreeForm(doc)).toEqual([{ field: `session.${name}`, description: expect.stringMatching(/a\.b/) }]);
  });
});

describe("checkRevision", () => {
  it("accepts 0 to 2^53 - 1 and names the field otherwise", () => {
    expect(checkRevision("after_revision", undefined)).toEqual([]);
    expect(checkRevision("after_revision", 0)).toEqual([]);
    expect(checkRevision("after_revision", MAX_REVISION)).toEqual([]);
    expect(checkRevision("after_revision", -1)).toEqual([{ field: "after_revision", description: "must not be negative" }]);
    expect(checkRevision("expected_revision", Number(2n ** 63n - 1n))[0].field).toBe("expected_revision");
  });
});

describe("InvalidArgumentError", () => {
  it("lists at most MAX_LISTED_VIOLATIONS violations and counts the rest, so the answer stays small", () => {
    const many = Array.from({ length: 20_000 }, (_, i) => ({
      field: `filter.ids[${i}]`,
      description: "must not contain whitespace or control characters",
    }));
    const err = new InvalidArgumentError(many);
    expect(err.violations).toHaveLength(MAX_LISTED_VIOLATIONS);
    expect(err.violations[0].field).toBe("filter.ids[0]");
    expect(err.message).toMatch(/; and 19980 more$/);
    expect(err.message.length).toBeLessThan(2000);
  });
});
