// ListSessions page tokens: the position after the last session of a page (insert time and id)
// plus a fingerprint of the filters the token was made for, as base64url JSON. A token sent
// with other filters is refused instead of silently paging through a different listing.

import { createHash } from "node:crypto";
import { InvalidArgumentError } from "./errors";
import type { ListCursor } from "./store";

/** The filters of a listing that a page token is bound to. */
export interface PageFilters {
  profileId: string;
  status: string;
  channel: string;
  /** "" = any; named in the fingerprint only when set, so tokens made before it stay valid. */
  channelGroup?: string;
  insertFrom?: Date;
  insertTo?: Date;
}

interface PageToken {
  /** Position: insert time (ms) and id of the last session of the previous page. */
  t: number;
  i: string;
  /** Fingerprint of the filters the token was made for. */
  f: string;
}

export function filterFingerprint(input: PageFilters): string {
  const key = JSON.stringify([
    input.profileId,
    input.status,
    input.channel,
    input.insertFrom?.getTime() ?? null,
    input.insertTo?.getTime() ?? null,
    ...(input.channelGroup ? [input.channelGroup] : []),
  ]);
  return createHash("sha256").update(key).digest("base64url").slice(0, 12);
}

export function encodePageToken(cursor: ListCursor, input: PageFilters): string {
  const token: PageToken = { t: cursor.insert.getTime(), i: cursor.id, f: filterFingerprint(input) };
  return Buffer.from(JSON.stringify(token)).toString("base64url");
}

export function decodePageToken(token: string, input: PageFilters): ListCursor {
  const invalid = (why: string) => InvalidArgumentError.field("page_token", why);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw invalid("is not a token returned by ListSessions");
  }
  const t = parsed as Partial<PageToken>;
  if (
    typeof t !== "object" ||
    t === null ||
    typeof t.t !== "number" ||
    !Number.isFinite(new Date(t.t).getTime()) ||
    typeof t.i !== "string" ||
    typeof t.f !== "string"
  ) {
    throw invalid("is not a token returned by ListSessions");
  }
  if (t.f !== filterFingerprint(input)) throw invalid("was made for other filters; send the same filters as the first call");
  return { insert: new Date(t.t), id: t.i };
}
