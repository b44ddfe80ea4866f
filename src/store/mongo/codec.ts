// The stored shape of a session: SessionDoc <-> the `sessions` document (snake_case fields as in
// the Session object, Dates as BSON dates, embedded documents, nulls kept), and a patch as a
// $set/$unset update. Documents written by hand in that shape read back with the documented empty
// values. Nested arrays are wrapped on FerretDB, which rejects them (docs/mongodb.md).

import type { UpdateFilter } from "mongodb";

import { emptySessionDoc, type JsonObject, type SessionDoc, type TrafficDoc } from "../../domain/session";
import type { SessionPatch } from "../../domain/store";

/** A stored session: SessionDoc without `id`, plus `_id`, `revision` and maybe `request_id`. */
export type StoredSession = Omit<SessionDoc, "id"> & { _id: string; request_id?: string };

export type Raw = Record<string, unknown>;

/** A plain object from any realm (structuredClone and test runners make objects of another). */
function isPlainObject(value: unknown): value is Raw {
  if (typeof value !== "object" || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === null || Object.getPrototypeOf(proto) === null;
}

function isDate(value: unknown): value is Date {
  return Object.prototype.toString.call(value) === "[object Date]";
}

/** A deep copy of JSON values, Dates and plain objects (made here, not in another realm). */
export function deepCopy<T>(value: T): T {
  if (Array.isArray(value)) return value.map(deepCopy) as T;
  if (isDate(value)) return new Date(value.getTime()) as T;
  if (isPlainObject(value)) {
    const out: Raw = {};
    for (const [k, v] of Object.entries(value)) out[k] = deepCopy(v);
    return out as T;
  }
  return value;
}

/**
 * Stores each array that sits directly inside an array as { "": [...] }, for FerretDB, which
 * rejects nested arrays (docs/mongodb.md). The empty key is one the domain never accepts in
 * free-form objects (validate.ts), so the wrapper cannot be mistaken for data.
 */
export function wrapNestedArrays(value: unknown, inArray = false): unknown {
  if (Array.isArray(value)) {
    const items = value.map((item) => wrapNestedArrays(item, true));
    return inArray ? { "": items } : items;
  }
  if (isPlainObject(value)) {
    const out: Raw = {};
    for (const [k, v] of Object.entries(value)) out[k] = wrapNestedArrays(v);
    return out;
  }
  return value;
}

/** Undoes wrapNestedArrays; values without wrappers come back unchanged. */
export function unwrapNestedArrays(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(unwrapNestedArrays);
  if (isPlainObject(value)) {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === "" && Array.isArray(value[""])) return unwrapNestedArrays(value[""]);
    const out: Raw = {};
    for (const [k, v] of Object.entries(value)) out[k] = unwrapNestedArrays(v);
    return out;
  }
  return value;
}

/**
 * Maps a SessionDoc to the stored document (a copy: nothing is shared with `doc`).
 * `wrapArrays` applies wrapNestedArrays to the free-form objects (FerretDB).
 */
export function toStoredDocument(doc: SessionDoc, revision: number, requestId?: string, wrapArrays = false): StoredSession {
  const { id, ...fields } = deepCopy(doc);
  const stored: StoredSession = { _id: id, ...fields, revision };
  if (wrapArrays) {
    const w = <T>(v: T): T => wrapNestedArrays(v) as T;
    stored.metadata.aux = w(stored.metadata.aux);
    if (stored.profile) stored.profile.metadata = w(stored.profile.metadata);
    stored.context = w(stored.context);
    stored.properties = w(stored.properties);
    stored.traits = w(stored.traits);
    stored.aux = w(stored.aux);
  }
  if (requestId !== undefined) stored.request_id = requestId;
  return stored;
}

function obj(value: unknown): Raw {
  return isPlainObject(value) ? value : {};
}
function pick<T>(value: unknown, fallback: T): T {
  return value === undefined ? fallback : (value as T);
}
/** A free-form object as read: {} when missing or null, nested-array wrappers undone. */
function freeForm(value: unknown): JsonObject {
  return isPlainObject(value) ? (unwrapNestedArrays(value) as JsonObject) : {};
}
function date(value: unknown): Date | null {
  if (isDate(value)) return value;
  if (typeof value === "string" || typeof value === "number") {
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  return null;
}

/**
 * Maps a stored document (as written by this adapter or by hand in the same shape) to a
 * SessionDoc. Missing fields get their documented empty values (emptySessionDoc: null, "",
 * false, {}, "Other" for unknown names; timestamp and weekday derived from insert, revision 0);
 * fields outside the SessionDoc shape (request_id, anything else) are dropped.
 */
export function fromStoredDocument(raw: Raw): SessionDoc {
  const metadata = obj(raw["metadata"]);
  const time = obj(metadata["time"]);
  const insert = date(time["insert"]) ?? new Date(0);
  const empty = emptySessionDoc(String(raw["_id"]), insert);
  const device = obj(raw["device"]);
  const geo = obj(device["geo"]);
  const country = obj(geo["country"]);
  const os = obj(raw["os"]);
  const app = obj(raw["app"]);
  const utm = obj(raw["utm"]);
  const activity = obj(raw["activity"]);
  const profile = raw["profile"];

  const e = empty;
  return {
    id: e.id,
    metadata: {
      time: {
        insert,
        create: time["create"] === undefined ? null : date(time["create"]),
        update: time["update"] === undefined ? null : date(time["update"]),
        timestamp: pick(time["timestamp"], e.metadata.time.timestamp),
        duration: pick(time["duration"], e.metadata.time.duration),
        weekday: pick(time["weekday"], e.metadata.time.weekday),
      },
      channel: pick(metadata["channel"], e.metadata.channel),
      aux: freeForm(metadata["aux"]),
      status: pick(metadata["status"], e.metadata.status),
    },
    profile: isPlainObject(profile)
      ? {
          id: String(profile["id"] ?? ""),
          primary_id: pick(profile["primary_id"], null),
          metadata: isPlainObject(profile["metadata"]) ? freeForm(profile["metadata"]) : null,
        }
      : null,
    device: {
      name: pick(device["name"], e.device.name),
      brand: pick(device["brand"], null),
      model: pick(device["model"], null),
      type: pick(device["type"], null),
      touch: pick(device["touch"], false),
      ip: pick(device["ip"], null),
      resolution: pick(device["resolution"], null),
      geo: {
        country: { name: pick(country["name"], null), code: pick(country["code"], null) },
        city: pick(geo["city"], null),
        county: pick(geo["county"], null),
        postal: pick(geo["postal"], null),
        latitude: pick(geo["latitude"], null),
        longitude: pick(geo["longitude"], null),
        location: pick(geo["location"], null),
      },
      color_depth: pick(device["color_depth"], null),
      orientation: pick(device["orientation"], null),
    },
    os: { name: pick(os["name"], e.os.name), version: pick(os["version"], e.os.version) },
    app: {
      type: pick(app["type"], e.app.type),
      name: pick(app["name"], e.app.name),
      version: pick(app["version"], e.app.version),
      language: pick(app["language"], null),
      bot: pick(app["bot"], false),
      resolution: pick(app["resolution"], null),
    },
    utm: {
      source: pick(utm["source"], null),
      medium: pick(utm["medium"], null),
      campaign: pick(utm["campaign"], null),
      term: pick(utm["term"], null),
      content: pick(utm["content"], null),
    },
    context: freeForm(raw["context"]),
    properties: freeForm(raw["properties"]),
    traits: freeForm(raw["traits"]),
    aux: freeForm(raw["aux"]),
    revision: pick(raw["revision"], 0),
    session_index: pick(raw["session_index"], 0),
    previous_session_id: pick(raw["previous_session_id"], null),
    activity: {
      page_views: pick(activity["page_views"], 0),
      entry_page: pick(activity["entry_page"], null),
      exit_page: pick(activity["exit_page"], null),
      end_reason: pick(activity["end_reason"], ""),
    },
    merged_from_profile_ids: Array.isArray(raw["merged_from_profile_ids"]) ? raw["merged_from_profile_ids"].map(String) : [],
    traffic: readTraffic(raw["traffic"]),
  };
}

/** The traffic object as read; null when missing (sessions stored before it was classified). */
function readTraffic(value: unknown): TrafficDoc | null {
  if (!isPlainObject(value)) return null;
  return {
    referrer: pick(value["referrer"], null),
    referrer_host: pick(value["referrer_host"], null),
    source: pick(value["source"], ""),
    medium: pick(value["medium"], ""),
    channel_group: pick(value["channel_group"], ""),
    click_id: pick(value["click_id"], null),
  };
}

/** The patch as $set / $unset, paths joined with "." (the domain validated every key). */
export function patchToUpdate(patch: SessionPatch, revision: number, wrapArrays = false): UpdateFilter<StoredSession> {
  const $set: Raw = {};
  for (const { path, value } of patch.set) $set[path.join(".")] = wrapArrays ? wrapNestedArrays(value) : value;
  $set["revision"] = revision;
  if (patch.unset.length === 0) return { $set };
  const $unset: Record<string, ""> = {};
  for (const path of patch.unset) $unset[path.join(".")] = "";
  return { $set, $unset };
}
