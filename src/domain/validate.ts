// Input rules shared by every RPC. Each check returns violations naming the offending field
// with its path in the request, so the edge can send them as google.rpc.BadRequest.

import { InvalidArgumentError, type FieldViolation } from "./errors";
import { InvalidUrlError, parseUtm } from "./enrich";
import { DEFAULT_LIMITS, MAX_VIOLATIONS } from "./limits";
import type { JsonValue, SessionDoc, UtmDoc } from "./session";

export const MAX_ID_LENGTH = 128;
const MAX_NESTING = 32;
// Ids: 1-128 characters, no whitespace or control characters (they end up in URLs, logs, _id).
const ID_PATTERN = /^[^\s\p{Cc}]+$/u;

/** Checks a session id (or request id); `required` makes an empty one a violation. */
export function checkId(field: string, id: string, required: boolean): FieldViolation[] {
  if (id === "") return required ? [{ field, description: "must not be empty" }] : [];
  if (id.length > MAX_ID_LENGTH) return [{ field, description: `must be at most ${MAX_ID_LENGTH} characters` }];
  if (!ID_PATTERN.test(id)) return [{ field, description: "must not contain whitespace or control characters" }];
  return [];
}

/**
 * Why a key of a free-form object cannot be stored, or null when it can. MongoDB cannot
 * address keys starting with "$" or containing "." in queries and updates, and NUL ends a BSON
 * key; an empty key cannot be named in an update path. Every store rejects these alike.
 */
export function badKeyReason(key: string): string | null {
  if (key === "") return "keys must not be empty";
  if (key.startsWith("$")) return `key "${key}" must not start with "$"`;
  if (key.includes(".")) return `key "${key}" must not contain "."`;
  if (key.includes("\0")) return `key ${JSON.stringify(key)} must not contain NUL`;
  return null;
}

/**
 * Checks every key of a free-form value, recursively; `field` is its path in the request.
 * Linear in the size of the value and bounded: the walk stops at the first `maxKeys + 1`-th key
 * or array item (one violation names the limit) and after MAX_VIOLATIONS violations, so a
 * hostile object costs at most maxKeys steps and a short answer.
 */
export function checkFreeForm(
  field: string,
  value: JsonValue | null | undefined,
  maxKeys: number = DEFAULT_LIMITS.maxFreeFormKeys,
): FieldViolation[] {
  const out: FieldViolation[] = [];
  let seen = 0;
  let stop = false;
  const count = (n: number): void => {
    seen += n;
    if (seen > maxKeys && !stop) {
      out.push({ field, description: `must have at most ${maxKeys} keys and array items in all (MAX_FREE_FORM_KEYS)` });
      stop = true;
    }
  };
  const report = (path: string, description: string): void => {
    out.push({ field: path, description });
    if (out.length >= MAX_VIOLATIONS) stop = true;
  };
  const walk = (v: JsonValue | null | undefined, path: string, depth: number): void => {
    if (stop || v === null || v === undefined) return;
    // google.protobuf.Value carries a double: NaN and ±Infinity decode from the binary form,
    // but JSON (SQLite silently writes null) and BSON on MongoDB cannot keep them.
    if (typeof v === "number" && !Number.isFinite(v)) {
      report(path, "must be a finite number (NaN and Infinity cannot be stored)");
      return;
    }
    if (typeof v !== "object") return;
    if (depth > MAX_NESTING) {
      report(path, `nesting deeper than ${MAX_NESTING} levels`);
      return;
    }
    if (Array.isArray(v)) {
      count(v.length);
      for (let i = 0; i < v.length && !stop; i++) walk(v[i], `${path}[${i}]`, depth + 1);
      return;
    }
    const keys = Object.keys(v);
    count(keys.length);
    for (let i = 0; i < keys.length && !stop; i++) {
      const key = keys[i];
      const reason = badKeyReason(key);
      if (reason) report(path, reason);
      else walk(v[key], `${path}.${key}`, depth + 1);
    }
  };
  walk(value, field, 0);
  return out;
}

/** Checks all free-form objects of a session given in a request (field prefix "session"). */
export function checkSessionFreeForm(doc: SessionDoc, maxKeys: number = DEFAULT_LIMITS.maxFreeFormKeys): FieldViolation[] {
  return [
    ...checkFreeForm("session.metadata.aux", doc.metadata.aux, maxKeys),
    ...checkFreeForm("session.profile.metadata", doc.profile?.metadata, maxKeys),
    ...checkFreeForm("session.context", doc.context, maxKeys),
    ...checkFreeForm("session.properties", doc.properties, maxKeys),
    ...checkFreeForm("session.traits", doc.traits, maxKeys),
    ...checkFreeForm("session.aux", doc.aux, maxKeys),
  ].slice(0, MAX_VIOLATIONS);
}

/** The client-writable string fields of a session (nullable ones may be null). */
const STRING_FIELDS: ReadonlyArray<readonly string[]> = [
  ["metadata", "channel"],
  ["metadata", "status"],
  ["profile", "id"],
  ["profile", "primary_id"],
  ["device", "name"],
  ["device", "brand"],
  ["device", "model"],
  ["device", "type"],
  ["device", "ip"],
  ["device", "resolution"],
  ["device", "color_depth"],
  ["device", "orientation"],
  ["device", "geo", "country", "name"],
  ["device", "geo", "country", "code"],
  ["device", "geo", "city"],
  ["device", "geo", "county"],
  ["device", "geo", "postal"],
  ["device", "geo", "latitude"],
  ["device", "geo", "longitude"],
  ["device", "geo", "location"],
  ["os", "name"],
  ["os", "version"],
  ["app", "type"],
  ["app", "name"],
  ["app", "version"],
  ["app", "language"],
  ["app", "resolution"],
  ["utm", "source"],
  ["utm", "medium"],
  ["utm", "campaign"],
  ["utm", "term"],
  ["utm", "content"],
];

/** Checks a string of a request against MAX_STRING_LENGTH (characters, as UTF-16 code units). */
export function checkLength(
  field: string,
  value: string | null | undefined,
  maxLength: number = DEFAULT_LIMITS.maxStringLength,
): FieldViolation[] {
  return typeof value === "string" && value.length > maxLength
    ? [{ field, description: `must be at most ${maxLength} characters (MAX_STRING_LENGTH), got ${value.length}` }]
    : [];
}

/** Checks the length of every string field of a session given in a request (prefix "session"). */
export function checkSessionStrings(doc: SessionDoc, maxLength: number = DEFAULT_LIMITS.maxStringLength): FieldViolation[] {
  const out: FieldViolation[] = [];
  for (const path of STRING_FIELDS) {
    let v: unknown = doc;
    for (const seg of path) v = v !== null && typeof v === "object" ? (v as Record<string, unknown>)[seg] : undefined;
    out.push(...checkLength(`session.${path.join(".")}`, v as string | null | undefined, maxLength));
  }
  return out;
}

/**
 * Revisions are counted in JavaScript numbers: exact up to 2^53 - 1, which no store reaches
 * (a million writes a second for 285 years). A revision a client sends beyond that cannot be
 * one the service handed out, and would lose precision on the way back.
 */
export const MAX_REVISION = Number.MAX_SAFE_INTEGER;

/** Checks a revision sent by a client (expected_revision, after_revision). */
export function checkRevision(field: string, revision: number | undefined): FieldViolation[] {
  if (revision === undefined) return [];
  if (revision < 0) return [{ field, description: "must not be negative" }];
  if (revision > MAX_REVISION) return [{ field, description: `must be at most ${MAX_REVISION}` }];
  return [];
}

/** Throws InvalidArgumentError with every violation found, if there is any. */
export function fail(violations: FieldViolation[]): void {
  if (violations.length > 0) throw new InvalidArgumentError(violations);
}

/** A page URL ("" = none) read for its UTM parameters; one that is not a page URL is a violation of `field`. */
function readPageUrl(field: string, pageUrl: string): { utm: UtmDoc | null; violations: FieldViolation[] } {
  if (pageUrl === "") return { utm: null, violations: [] };
  try {
    return { utm: parseUtm(pageUrl), violations: [] };
  } catch (err) {
    if (err instanceof InvalidUrlError) return { utm: null, violations: [{ field, description: "must be a valid URL" }] };
    throw err;
  }
}

/** Checks a page URL ("" is allowed: no page). */
export function checkPageUrl(field: string, pageUrl: string): FieldViolation[] {
  return readPageUrl(field, pageUrl).violations;
}

/** The UTM parameters of a page URL (null for "" or a URL without any); throws InvalidArgumentError when it is not a page URL. */
export function parsePageUrl(field: string, pageUrl: string): UtmDoc | null {
  const { utm, violations } = readPageUrl(field, pageUrl);
  fail(violations);
  return utm;
}
