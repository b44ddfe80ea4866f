// Input generators for the fuzz test: valid requests of every SessionService method, and three
// ways of spoiling them — random bytes, byte-level mutations of a valid encoding (truncation, bit
// flips, duplicated fields, bad lengths), and structured mutations that walk the request's
// descriptor and put an extreme value into one field (huge or odd strings, extreme numbers,
// timestamps at and past the protobuf range, negative or huge nanos, deep or wide Structs, odd
// field masks). Every generator draws only from the Rng it is given: a case replays from its seed.

import { create, toBinary, toJson, ScalarType, type DescField, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { DurationSchema, FieldMaskSchema, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { SessionService } from "../../../gen/session/v1/session_service_pb";
import type { Rng } from "./prng";

export type MethodName = (typeof SessionService.methods)[number]["name"];
export const METHODS = SessionService.methods.map((m) => m.name);
export const methodDesc = (name: string) => SessionService.methods.find((m) => m.name === name)!;

/** Ids the fuzz cases aim at: created before the run, so that gets, updates, touches hit. */
export interface Pool {
  ids: string[];
  profiles: string[];
  /** The next id for a create (deterministic per case, so inputs do not depend on answers). */
  newId(r: Rng): string;
}

const CHANNELS = ["web", "app", "", "email"];
const STATUSES = ["active", "ended", "", "weird"];

/** A valid request (as init object) for `method`. */
export function validRequest(method: string, r: Rng, pool: Pool): Record<string, unknown> {
  const id = r.pick(pool.ids);
  const profile = r.pick(pool.profiles);
  switch (method) {
    case "CreateSession":
      return {
        session: {
          id: r.chance(0.7) ? pool.newId(r) : "",
          profile: { id: profile },
          metadata: {
            channel: r.pick(CHANNELS),
            ...(r.chance(0.3)
              ? { time: { create: { seconds: BigInt(1_700_000_000 + r.int(0, 1e7)), nanos: r.int(0, 999_999_999) } } }
              : {}),
          },
          properties: { n: r.int(0, 100), tag: "fuzz" },
          traits: r.chance(0.5) ? { plan: r.pick(["free", "pro"]) } : undefined,
        },
        userAgent: r.pick(["", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36", "curl/8.0"]),
        pageUrl: r.pick(["", "https://shop.example/?utm_source=fuzz&utm_medium=cpc", "https://shop.example/?gclid=fz", "not a url"]),
        referrer: r.pick(["", "https://www.google.com/", "android-app://com.google.android.gm", "https://shop.example/", "not a url"]),
        requestId: r.chance(0.3) ? `rq-${r.int(0, 200)}` : "",
      };
    case "GetSession":
      return { id };
    case "UpdateSession":
      return {
        session: {
          id,
          traits: { v: r.int(0, 1e6) },
          metadata: { channel: r.pick(CHANNELS), status: r.pick(STATUSES) },
          profile: { id: profile },
        },
        updateMask: { paths: r.pick([["traits"], ["metadata.channel"], ["traits", "profile.id"], ["metadata.status"], ["properties.x"]]) },
        ...(r.chance(0.2) ? { expectedRevision: BigInt(r.int(0, 5000)) } : {}),
      };
    case "DeleteSession":
      return { id, ...(r.chance(0.3) ? { expectedRevision: BigInt(r.int(0, 5000)) } : {}) };
    case "ListSessions":
      return {
        pageSize: r.int(0, 120),
        profileId: r.chance(0.3) ? profile : "",
        status: r.chance(0.2) ? "active" : "",
        channelGroup: r.chance(0.2) ? r.pick(["Organic Search", "Direct"]) : "",
      };
    case "WatchSessions":
      return {
        filter: r.pick([{}, { profileId: profile }, { ids: [id] }, { status: "active" }, { channel: "web" }, { channelGroup: "Direct" }]),
        sendInitial: r.chance(0.5),
        ...(r.chance(0.3) ? { afterRevision: BigInt(r.int(0, 3000)) } : {}),
        heartbeatInterval: { seconds: 1n },
      };
    case "TouchSession":
      return {
        id,
        pageUrl: r.pick(["", "https://shop.example/cart", "/relative"]),
        ...(r.chance(0.2) ? { at: { seconds: BigInt(Math.floor(Date.now() / 1000)) } } : {}),
      };
    case "MergeProfiles":
      return { sourceProfileIds: [r.pick(pool.profiles)], targetProfileId: r.pick(pool.profiles) };
    case "EraseProfile":
      return { profileId: r.pick(pool.profiles) };
    case "GetSessionStats":
      return { groupBy: r.int(0, 9), filter: r.chance(0.3) ? { channel: "web" } : undefined };
    case "WatchSessionStats":
      return {
        groupBy: r.int(0, 9),
        filter: r.chance(0.3) ? { profileId: profile } : undefined,
        minInterval: { nanos: r.pick([0, 100_000_000, 500_000_000]) },
        heartbeatInterval: { seconds: 1n },
      };
    default:
      throw new Error(`no valid request for ${method}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Extreme values.

const MIN_TS = -62135596800n; // 0001-01-01T00:00:00Z
const MAX_TS = 253402300799n; // 9999-12-31T23:59:59Z
const I64_MAX = 2n ** 63n - 1n;
const I64_MIN = -(2n ** 63n);

const ODD = [
  "",
  " ",
  "\n",
  "\0",
  "a\0b",
  "\u202eevil",
  "\u200d\u200d",
  "e\u0301\u0301\u0301",
  "👩‍👩‍👧‍👦",
  "\ud800",
  "\udfff\ud800",
  "$set",
  "a.b",
  "__proto__",
  "constructor",
  "%00%ff",
  "../../etc/passwd",
  "'; DROP TABLE sessions;--",
  "*",
  "ﬃ\u0130ß",
  "9999-12-31T23:59:59Z",
  "x".repeat(128),
  "x".repeat(129),
];

/** A string: odd unicode, control characters, boundary lengths, now and then a huge one. */
export function weirdString(r: Rng): string {
  const roll = r.next();
  if (roll < 0.55) return r.pick(ODD);
  if (roll < 0.8) return r.pick(ODD) + "x".repeat(r.int(0, 2000));
  if (roll < 0.93) return "é".repeat(r.int(2000, 40_000));
  if (roll < 0.985) return "y".repeat(r.pick([100_000, 300_000, 600_000]));
  return "z".repeat(r.pick([1_048_000, 1_100_000])); // about the message limit
}

function extremeInt32(r: Rng): number {
  return r.pick([0, -1, 1, 1000, 1001, 2147483647, -2147483648, 65536]);
}
function extremeInt64(r: Rng): bigint {
  return r.pick([0n, -1n, 1n, I64_MAX, I64_MIN, 2n ** 53n + 1n, 2n ** 62n, -(2n ** 62n), 4294967296n]);
}
function extremeUint(r: Rng, bits: 32 | 64): number | bigint {
  return bits === 32 ? r.pick([0, 1, 4294967295]) : r.pick([0n, 1n, 2n ** 64n - 1n]);
}
function extremeDouble(r: Rng): number {
  return r.pick([NaN, Infinity, -Infinity, -0, 1e308, 5e-324, -1e308, 2 ** 53 + 2]);
}

export function extremeTimestamp(r: Rng) {
  const seconds = r.pick([
    MIN_TS,
    MIN_TS - 1n,
    MAX_TS,
    MAX_TS + 1n,
    2n ** 62n,
    -(2n ** 62n),
    I64_MAX,
    I64_MIN,
    0n,
    -1n,
    BigInt(Math.floor(Date.now() / 1000)),
    32503680000n /* year 3000 */,
  ]);
  const nanos = r.pick([0, 0, 999_999_999, -1, 1_000_000_000, 2147483647, -2147483648, 1]);
  return create(TimestampSchema, { seconds, nanos });
}

function extremeDuration(r: Rng) {
  return create(DurationSchema, {
    seconds: r.pick([-1n, 0n, 1n, 86_401n, 315_576_000_000n, 315_576_000_001n, I64_MAX, I64_MIN]),
    nanos: r.pick([0, -1, 999_999_999, 1_000_000_000, -2147483648]),
  });
}

function weirdMask(r: Rng): string[] {
  const roll = r.next();
  if (roll < 0.1) return [];
  if (roll < 0.25) return Array.from({ length: r.pick([2, 100, 5000]) }, () => "*");
  if (roll < 0.4) return Array.from({ length: r.pick([2, 50, 2000]) }, () => r.pick(["traits", "properties", "metadata.channel"]));
  if (roll < 0.55) return Array.from({ length: r.pick([10, 500, 2000]) }, (_, i) => `properties.k${i}`);
  if (roll < 0.7)
    return [
      r.pick([
        "id",
        "revision",
        "session.id",
        "metadata.time.insert",
        "metadata.time.create",
        "metadata.time.update",
        "operation.new",
        "activity.page_views",
        "merged_from_profile_ids",
        "session_index",
      ]),
    ];
  if (roll < 0.85)
    return [
      r.pick([
        "properties..x",
        "properties.$x",
        "traits.a.b.c.d.e.f",
        ".",
        "",
        "properties.",
        "*.*",
        "nope",
        "device.geo.country.code.x",
        "Properties",
      ]),
    ];
  return [weirdString(r).slice(0, 5000)];
}

function nested(depth: number, leaf: JsonValue, asArray: boolean): JsonValue {
  let v: JsonValue = leaf;
  for (let i = 0; i < depth; i++) v = asArray ? [v] : { n: v };
  return v;
}

/** A free-form object: deep, wide, with bad keys or odd values. */
export function weirdStruct(r: Rng, binary: boolean): Record<string, JsonValue> {
  const roll = r.next();
  if (roll < 0.25) return { deep: nested(r.pick([31, 32, 33, 100, 1000]), "leaf", r.chance(0.5)) };
  if (roll < 0.4) {
    const o: Record<string, JsonValue> = {};
    for (let i = 0, n = r.pick([100, 5000, 30_000]); i < n; i++) o[`k${i}`] = i;
    return o;
  }
  if (roll < 0.6) return { [r.pick(["$where", "a.b", "", "\0", "$", ".", "x\0y", "__proto__"])]: 1 };
  if (roll < 0.75) return { list: Array.from({ length: r.pick([1000, 50_000]) }, (_, i) => i) };
  if (roll < 0.85 && binary) return { nan: extremeDouble(r) };
  if (roll < 0.95) return { [weirdString(r).slice(0, 300) || "k"]: weirdString(r) };
  return { big: 1e308, small: -1e308, neg0: -0 };
}

// ---------------------------------------------------------------------------------------------
// Structured mutation of a message: walks its descriptor.

function scalarValue(r: Rng, t: ScalarType, binary: boolean): unknown {
  switch (t) {
    case ScalarType.STRING:
      return weirdString(r);
    case ScalarType.BYTES:
      return r.bytes(r.int(0, 64));
    case ScalarType.BOOL:
      return r.chance(0.5);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return extremeInt32(r);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return extremeUint(r, 32);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return extremeInt64(r);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return extremeUint(r, 64);
    default:
      return binary ? extremeDouble(r) : r.pick([1e308, -0, 5e-324]);
  }
}

/** A path from a request message down to one of its leaf fields (scalars, lists, well-known types). */
type Leaf = DescField[];

const leafCache = new Map<string, { all: Leaf[]; special: Leaf[] }>();

/**
 * The leaf fields of a request, up to 5 levels deep. Mutations pick a leaf uniformly, or one of
 * the "special" leaves (timestamps, durations, masks, Structs, repeated fields) half of the time:
 * a random walk from the root would reach metadata.time.create once in a thousand cases.
 */
function leaves(desc: DescMessage): { all: Leaf[]; special: Leaf[] } {
  let cached = leafCache.get(desc.typeName);
  if (cached) return cached;
  const all: Leaf[] = [];
  const walk = (m: DescMessage, prefix: Leaf) => {
    for (const f of m.fields) {
      if (f.fieldKind === "message" && !f.message.typeName.startsWith("google.protobuf.") && prefix.length < 4)
        walk(f.message, [...prefix, f]);
      else all.push([...prefix, f]);
    }
  };
  walk(desc, []);
  const special = all.filter((p) => {
    const f = p[p.length - 1];
    return f.fieldKind === "list" || (f.fieldKind === "message" && f.message.typeName.startsWith("google.protobuf."));
  });
  cached = { all, special: special.length ? special : all };
  leafCache.set(desc.typeName, cached);
  return cached;
}

function pickLeaf(desc: DescMessage, r: Rng): Leaf {
  const { all, special } = leaves(desc);
  return r.chance(0.5) ? r.pick(special) : r.pick(all);
}

/** An extreme value for one leaf field of a protobuf-es message, and a short description of it. */
function leafValue(f: DescField, r: Rng, binary: boolean): { value: unknown; shown: string } {
  if (f.fieldKind === "message") {
    const tn = f.message.typeName;
    if (tn === "google.protobuf.Timestamp") {
      const t = extremeTimestamp(r);
      return { value: t, shown: `{seconds:${t.seconds},nanos:${t.nanos}}` };
    }
    if (tn === "google.protobuf.Duration") {
      const d = extremeDuration(r);
      return { value: d, shown: `{seconds:${d.seconds},nanos:${d.nanos}}` };
    }
    if (tn === "google.protobuf.FieldMask") {
      const paths = weirdMask(r);
      return {
        value: create(FieldMaskSchema, { paths }),
        shown: `<mask ${paths.length}: ${JSON.stringify(paths.slice(0, 2)).slice(0, 60)}>`,
      };
    }
    if (tn === "google.protobuf.Struct") {
      const v = weirdStruct(r, binary);
      return { value: v, shown: `<struct ${JSON.stringify(v).length} chars: ${JSON.stringify(v).slice(0, 40)}>` };
    }
    return { value: undefined, shown: "unset" };
  }
  if (f.fieldKind === "enum") {
    const v = r.pick([-1, 0, 1, 7, 8, 99, 2147483647]);
    return { value: v, shown: String(v) };
  }
  if (f.fieldKind === "list") {
    if (f.listKind === "scalar" && f.scalar === ScalarType.STRING) {
      const n = r.pick([0, 1, 2, 100, 1000, 20_000]);
      // Long lists of short strings, short lists of odd ones: a request stays within a few MB.
      const one = r.chance(0.5) ? weirdString(r).slice(0, n >= 1000 ? 20 : 1000) : "dup";
      return {
        value: Array.from({ length: n }, (_, i) => (r.chance(0.5) ? one : `${one}${i}`)),
        shown: `[${n} x ${JSON.stringify(one.slice(0, 16))}]`,
      };
    }
    return { value: [], shown: "[]" };
  }
  if (f.fieldKind === "scalar") {
    const v = scalarValue(r, f.scalar, binary);
    return { value: v, shown: typeof v === "string" ? `<str ${v.length}: ${JSON.stringify(v.slice(0, 24))}>` : String(v) };
  }
  return { value: undefined, shown: "unset" };
}

/** Puts an extreme value into one leaf field of `msg` (a protobuf-es message); returns what it did. */
export function mutateMessage(desc: DescMessage, msg: Record<string, unknown>, r: Rng, binary = true): string {
  const path = pickLeaf(desc, r);
  let m = msg;
  for (const f of path.slice(0, -1)) {
    if (f.fieldKind !== "message") break;
    let sub = m[f.localName] as Record<string, unknown> | undefined;
    if (!sub) m[f.localName] = sub = create(f.message) as unknown as Record<string, unknown>;
    m = sub;
  }
  const leaf = path[path.length - 1];
  const { value, shown } = leafValue(leaf, r, binary);
  m[leaf.localName] = value;
  return `${path.map((f) => f.name).join(".")}=${shown}`;
}

// ---------------------------------------------------------------------------------------------
// JSON-level mutations (Connect with application/json).

const TS_STRINGS = [
  "0001-01-01T00:00:00Z",
  "0000-12-31T23:59:59Z",
  "9999-12-31T23:59:59.999999999Z",
  "10000-01-01T00:00:00Z",
  "+275760-09-13T00:00:00Z",
  "-000001-01-01T00:00:00Z",
  "2024-02-30T00:00:00Z",
  "2024-01-01T00:00:00+25:00",
  "2024-01-01T00:00:00.1234567891Z",
  "1970-01-01T00:00:00Z",
  "2024-13-01T00:00:00Z",
  "now",
  "",
];
const DURATION_STRINGS = ["-1s", "0s", "1e9s", "315576000001s", "-315576000001s", "1.0000000001s", "s", "9223372036854775807s", "86401s"];

function weirdJsonValue(r: Rng): JsonValue {
  return r.pick<() => JsonValue>([
    () => weirdString(r),
    () => r.pick([0, -1, 1e308, -0, 1.5, 2 ** 63, -(2 ** 63), 4294967296]),
    () => r.pick(["9223372036854775808", "-9223372036854775809", "18446744073709551616", "1e400", "0x10", "NaN", "Infinity", " 1"]),
    () => r.pick(TS_STRINGS),
    () => r.pick(DURATION_STRINGS),
    () => r.pick(["*,*", "a,,b", "properties.k1,properties.k1", ",", "traits"]),
    () => null,
    () => r.chance(0.5),
    () => [],
    () => ({}),
    () => nested(r.pick([10, 33, 200, 3000]), 1, r.chance(0.5)),
    () => weirdStruct(r, false),
  ])();
}

/** A JSON value for one field, sometimes of the right type with an extreme value, sometimes of another type. */
function jsonFieldValue(f: DescField, r: Rng): { value: JsonValue; label: string } {
  if (r.chance(0.3)) return { value: weirdJsonValue(r), label: "any" };
  if (f.fieldKind === "message") {
    const tn = f.message.typeName;
    if (tn === "google.protobuf.Timestamp") return { value: r.pick(TS_STRINGS), label: "ts" };
    if (tn === "google.protobuf.Duration") return { value: r.pick(DURATION_STRINGS), label: "duration" };
    if (tn === "google.protobuf.FieldMask") return { value: weirdMask(r).join(","), label: "mask" };
    if (tn === "google.protobuf.Struct") return { value: weirdStruct(r, false), label: "struct" };
    return { value: weirdJsonValue(r), label: "any" };
  }
  if (f.fieldKind === "enum") return { value: r.pick([-1, 99, "NOPE", "STATS_GROUP_BY_OS_NAME", 2147483648, null]), label: "enum" };
  if (f.fieldKind === "list")
    return {
      value: Array.from({ length: r.pick([0, 1, 1000, 10_000]) }, () => (r.chance(0.8) ? "dup" : weirdString(r).slice(0, 20))),
      label: "list",
    };
  if (f.fieldKind === "scalar" && f.scalar === ScalarType.STRING) return { value: weirdString(r), label: "string" };
  return {
    value: r.pick<JsonValue>([
      0,
      -1,
      2147483648,
      -2147483649,
      "9223372036854775807",
      "-9223372036854775808",
      "9223372036854775808",
      1.5,
      "1e3",
      true,
    ]),
    label: "number",
  };
}

/** Sets a weird value at a random leaf field of `json` (a request in proto3 JSON), following the descriptor. */
export function mutateJson(desc: DescMessage, json: Record<string, JsonValue>, r: Rng): string {
  const path = pickLeaf(desc, r);
  const names = path.map((f) => (r.chance(0.8) ? f.jsonName : f.name)); // both spellings are accepted
  let o = json;
  for (const key of names.slice(0, -1)) {
    const cur = o[key];
    const sub = cur && typeof cur === "object" && !Array.isArray(cur) ? (cur as Record<string, JsonValue>) : {};
    o[key] = sub;
    o = sub;
  }
  const { value, label } = jsonFieldValue(path[path.length - 1], r);
  o[names[names.length - 1]] = value;
  const text = JSON.stringify(value) ?? "undefined";
  const shown =
    typeof value === "string"
      ? JSON.stringify(value.slice(0, 40)) + (value.length > 40 ? `…(${value.length})` : "")
      : `<${label} ${text.length > 40 ? `${text.slice(0, 40)}…(${text.length})` : text}>`;
  return `${names.join(".")}=${shown}`;
}

/** Text-level damage to a JSON body. */
export function mutateJsonText(text: string, r: Rng): { text: string; label: string } {
  switch (r.int(0, 5)) {
    case 0:
      return { text: text.slice(0, r.int(0, text.length)), label: "truncated" };
    case 1: {
      const at = r.int(0, text.length);
      return {
        text: text.slice(0, at) + r.pick(["{", "}", "[", '"', ",", "\\", "\u0000", "\ud800", "null"]) + text.slice(at),
        label: "char inserted",
      };
    }
    case 2:
      return { text: text.replace(/^\{/, `{"id":"dup-key",`), label: "duplicate key" };
    case 3:
      return { text: "\ufeff" + text, label: "BOM" };
    case 4:
      return { text: r.pick(["", "null", "[]", "1", '"x"', "{}", '{"a":' + "[".repeat(5000)]), label: "odd document" };
    default:
      return { text: text + text, label: "doubled" };
  }
}

// ---------------------------------------------------------------------------------------------
// Byte-level mutations of a binary encoding.

function varint(n: number | bigint): Buffer {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
}

/** The top-level fields of an encoding, each as its full bytes (tag and value); undefined if it does not parse. */
export function splitFields(buf: Buffer): Buffer[] | undefined {
  const out: Buffer[] = [];
  let i = 0;
  const readVarint = (): bigint | undefined => {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (i >= buf.length) return undefined;
      const b = buf[i++];
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
    }
    return undefined;
  };
  while (i < buf.length) {
    const start = i;
    const tag = readVarint();
    if (tag === undefined) return undefined;
    const wt = Number(tag & 7n);
    if (wt === 0) {
      if (readVarint() === undefined) return undefined;
    } else if (wt === 1) i += 8;
    else if (wt === 5) i += 4;
    else if (wt === 2) {
      const len = readVarint();
      if (len === undefined) return undefined;
      i += Number(len);
    } else return undefined;
    if (i > buf.length) return undefined;
    out.push(buf.subarray(start, i));
  }
  return out;
}

export function mutateBytes(valid: Buffer, r: Rng): { bytes: Buffer; label: string } {
  const b = Buffer.from(valid);
  switch (r.int(0, 8)) {
    case 0:
      return { bytes: b.subarray(0, r.int(0, Math.max(0, b.length - 1))), label: "truncated" };
    case 1: {
      const flips = r.int(1, 4);
      for (let k = 0; k < flips && b.length; k++) b[r.int(0, b.length - 1)] ^= 1 << r.int(0, 7);
      return { bytes: b, label: `${flips} bit flips` };
    }
    case 2: {
      for (let k = 0, n = r.int(1, 8); k < n && b.length; k++) b[r.int(0, b.length - 1)] = r.int(0, 255);
      return { bytes: b, label: "bytes overwritten" };
    }
    case 3: {
      const at = r.int(0, b.length);
      return { bytes: Buffer.concat([b.subarray(0, at), r.bytes(r.int(1, 16)), b.subarray(at)]), label: "bytes inserted" };
    }
    case 4: {
      const fields = splitFields(b);
      if (!fields?.length) return { bytes: Buffer.concat([b, b]), label: "doubled" };
      const f = r.pick(fields);
      const times = r.pick([1, 2, 50, 2000]);
      return {
        bytes: Buffer.concat([b, ...Array.from({ length: times }, () => f)]),
        label: `field duplicated x${times} (tag byte ${f[0]})`,
      };
    }
    case 5: {
      const fields = splitFields(b);
      if (!fields || fields.length < 2) return { bytes: Buffer.concat([b, b]), label: "doubled" };
      return { bytes: Buffer.concat([...fields].reverse()), label: "fields reversed" };
    }
    case 6:
      // A length-delimited field that claims far more bytes than follow.
      return {
        bytes: Buffer.concat([b, Buffer.from([0x0a]), varint(r.pick([0xffffffff, 2 ** 31, 1_000_000, 2 ** 53]))]),
        label: "huge length",
      };
    case 7:
      // Tags the parser must reject or skip: field 0, groups, wire type 7, a huge field number.
      return {
        bytes: Buffer.concat([
          b,
          r.pick([
            Buffer.from([0x00, 0x01]),
            Buffer.from([0x0b, 0x0c]),
            Buffer.from([0x0b]),
            Buffer.from([0x0f]),
            Buffer.concat([varint((2 ** 29 - 1) * 8), Buffer.from([1])]),
            Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
          ]),
        ]),
        label: "odd tag",
      };
    default:
      return { bytes: Buffer.concat([b, b]), label: "doubled" };
  }
}

/** Encodes a request init for `method` to binary and to proto3 JSON text (undefined where JSON cannot express it). */
export function encode(
  method: string,
  init: Record<string, unknown>,
): { msg: Record<string, unknown>; binary: Buffer; json: string | undefined } {
  const desc = methodDesc(method).input;
  const msg = create(desc, init as never) as unknown as Record<string, unknown>;
  const binary = Buffer.from(toBinary(desc, msg as never));
  let json: string | undefined;
  try {
    json = JSON.stringify(toJson(desc, msg as never));
  } catch {
    json = undefined;
  }
  return { msg, binary, json };
}
