// Input rules shared by every RPC. Each check returns violations naming the offending field
// with its path in the request, so the edge can send them as google.rpc.BadRequest.

import type { FieldViolation } from "./errors";
import type { JsonValue, SessionDoc } from "./session";

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

/** Checks every key of a free-form value, recursively; `field` is its path in the request. */
export function checkFreeForm(field: string, value: JsonValue | null | undefined): FieldViolation[] {
  const out: FieldViolation[] = [];
  const walk = (v: JsonValue | null | undefined, path: string, depth: number): void => {
    if (v === null || v === undefined || typeof v !== "object") return;
    if (depth > MAX_NESTING) {
      out.push({ field: path, description: `nesting deeper than ${MAX_NESTING} levels` });
      return;
    }
    if (Array.isArray(v)) {
      v.forEach((item, i) => walk(item, `${path}[${i}]`, depth + 1));
      return;
    }
    for (const [key, child] of Object.entries(v)) {
      const reason = badKeyReason(key);
      if (reason) out.push({ field: path, description: reason });
      else walk(child, `${path}.${key}`, depth + 1);
    }
  };
  walk(value, field, 0);
  return out;
}

/** Checks all free-form objects of a session given in a request (field prefix "session"). */
export function checkSessionFreeForm(doc: SessionDoc): FieldViolation[] {
  return [
    ...checkFreeForm("session.metadata.aux", doc.metadata.aux),
    ...checkFreeForm("session.profile.metadata", doc.profile?.metadata),
    ...checkFreeForm("session.context", doc.context),
    ...checkFreeForm("session.properties", doc.properties),
    ...checkFreeForm("session.traits", doc.traits),
    ...checkFreeForm("session.aux", doc.aux),
  ];
}
