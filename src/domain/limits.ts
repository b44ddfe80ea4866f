// Input limits: every dimension of a request that costs the server work or storage is bounded,
// and every stored document stays small enough to be sent back on both protocols.
//
// The configurable limits come from environment variables (src/config.ts, README table); the
// structural ones (path length, nesting, ids) are constants. All checks run in the domain,
// before the store is called, so an over-limit request writes nothing.

import { MAX_LISTED_VIOLATIONS, ResourceExhaustedError } from "./errors";
import type { JsonValue, SessionDoc } from "./session";

export interface InputLimits {
  /** Largest stored document, as measured by sessionSizeBytes (MAX_SESSION_BYTES). */
  maxSessionBytes: number;
  /** Paths in one update_mask, after "*" and duplicates count once each (MAX_MASK_PATHS). */
  maxMaskPaths: number;
  /** Characters of user_agent, page_url and each string field of a session (MAX_STRING_LENGTH). */
  maxStringLength: number;
  /** Keys plus array items of one free-form object, at all levels (MAX_FREE_FORM_KEYS). */
  maxFreeFormKeys: number;
  /** Bytes of the sessions of one ListSessions page (derived from MAX_MESSAGE_BYTES). */
  listPageBytes: number;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;
export const DEFAULT_MAX_SESSION_BYTES = 256 * 1024;

/** Room left in a list response for the next_page_token and the message framing. */
const LIST_MARGIN_BYTES = 1024;

/** The page byte budget for a message limit: the limit minus a margin, at least half of it. */
export function listPageBytes(maxMessageBytes: number): number {
  return Math.max(Math.floor(maxMessageBytes / 2), maxMessageBytes - LIST_MARGIN_BYTES);
}

export const DEFAULT_LIMITS: InputLimits = {
  maxSessionBytes: DEFAULT_MAX_SESSION_BYTES,
  maxMaskPaths: 1000,
  maxStringLength: 8192,
  maxFreeFormKeys: 10_000,
  listPageBytes: listPageBytes(DEFAULT_MAX_MESSAGE_BYTES),
};

/** Longest update_mask path, in characters, and most segments in one. */
export const MAX_MASK_PATH_LENGTH = 1024;
export const MAX_MASK_PATH_SEGMENTS = 40;
/** Field violations listed in one error; the rest are summarised (a bad request costs little to answer). */
export const MAX_VIOLATIONS = MAX_LISTED_VIOLATIONS;

// Size of a document. The measure is the UTF-8 size of the document's JSON plus a fixed cost per
// free-form value. JSON alone is close to what the stores keep (SQLite stores this JSON; BSON is
// about as large) and to the Connect JSON answer, but the protobuf binary form of a
// google.protobuf.Struct costs more than its JSON for many small values: each map entry or list
// item is a nested message with tags and length prefixes (up to about 16 bytes), and a number
// is 8 bytes however short its text ("1"). Adding PER_VALUE_BYTES for each key and array item
// keeps the measure at or above both encodings (checked in test/unit/limits.test.ts), so a
// session under MAX_SESSION_BYTES (at most half of MAX_MESSAGE_BYTES) always fits in an answer.
const PER_VALUE_BYTES = 24;
/** Fields of the answer that are not in the document (operation flags, wrapper message). */
const FIXED_BYTES = 128;

/** Keys plus array items below `value`, at all levels (iterative: no deep recursion). */
function countValues(value: JsonValue | null | undefined): number {
  let count = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v === null || typeof v !== "object") continue;
    if (Array.isArray(v)) {
      count += v.length;
      for (const item of v) stack.push(item);
    } else {
      const values = Object.values(v as Record<string, unknown>);
      count += values.length;
      for (const item of values) stack.push(item);
    }
  }
  return count;
}

/** The free-form parts of a document, with their names in a request. */
function freeFormParts(doc: SessionDoc): Array<[string, JsonValue | null | undefined]> {
  return [
    ["metadata.aux", doc.metadata.aux],
    ["profile.metadata", doc.profile?.metadata],
    ["context", doc.context],
    ["properties", doc.properties],
    ["traits", doc.traits],
    ["aux", doc.aux],
  ];
}

/** The size the document counts for against MAX_SESSION_BYTES (see above). Linear in its size. */
export function sessionSizeBytes(doc: SessionDoc): number {
  let values = doc.merged_from_profile_ids.length;
  for (const [, part] of freeFormParts(doc)) values += countValues(part);
  return Buffer.byteLength(JSON.stringify(doc)) + values * PER_VALUE_BYTES + FIXED_BYTES;
}

/** The largest free-form part of a document, by the same measure, or null when they are all small. */
function largestPart(doc: SessionDoc): string | null {
  let best: string | null = null;
  let bestSize = 1024;
  for (const [name, part] of freeFormParts(doc)) {
    if (part === null || part === undefined) continue;
    const size = Buffer.byteLength(JSON.stringify(part)) + countValues(part) * PER_VALUE_BYTES;
    if (size > bestSize) {
      best = name;
      bestSize = size;
    }
  }
  return best;
}

/**
 * Throws ResourceExhaustedError (reason SESSION_TOO_LARGE) when `doc`, as it would be stored,
 * is over the limit. `field` names what the request adds (e.g. "page_url"); without it the
 * largest free-form part of the session is named ("session.properties"), else "session".
 */
export function checkSessionSize(doc: SessionDoc, maxBytes: number, field?: string): void {
  const size = sessionSizeBytes(doc);
  if (size <= maxBytes) return;
  const part = field === undefined ? largestPart(doc) : null;
  const named = field ?? (part === null ? "session" : `session.${part}`);
  throw new ResourceExhaustedError(
    "SESSION_TOO_LARGE",
    `${named}: the session would be ${size} bytes, over the limit of ${maxBytes} (MAX_SESSION_BYTES); nothing was written`,
    undefined,
    { id: doc.id, field: named, size_bytes: String(size), max_session_bytes: String(maxBytes) },
  );
}
