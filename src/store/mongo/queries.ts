// The reads of sessions: ListSessions' filter and keyset page, the expiry candidates, statistics,
// and the replay of an idempotent create. Each query has an index (collections.ts). On FerretDB
// only `_id` lookups use an index; the others read the collection (docs/mongodb.md).

import { BSON, type Collection, type Filter } from "mongodb";

import { STATUS_ACTIVE, type SessionDoc } from "../../domain/session";
import {
  MINUTE_MS,
  STATS_PATHS,
  type CreateResult,
  type ExpiryQuery,
  type ListQuery,
  type StatsField,
  type StatsQuery,
  type StatsResult,
} from "../../domain/store";
import type { Call } from "./call";
import { fromStoredDocument, type StoredSession } from "./codec";
import { INSERT } from "./collections";

/** One page of ListSessions: newest first, after the cursor `query.after`. */
export async function listSessions(sessions: Collection<StoredSession>, query: ListQuery, call: Call): Promise<SessionDoc[]> {
  const and: Filter<StoredSession>[] = [];
  if (query.profileId !== undefined) and.push({ "profile.id": query.profileId });
  if (query.status !== undefined) and.push({ "metadata.status": query.status });
  if (query.channel !== undefined) and.push({ "metadata.channel": query.channel });
  if (query.channelGroup !== undefined) and.push({ "traffic.channel_group": query.channelGroup });
  if (query.insertFrom !== undefined) and.push({ [INSERT]: { $gte: query.insertFrom } });
  if (query.insertTo !== undefined) and.push({ [INSERT]: { $lt: query.insertTo } });
  if (query.after !== undefined) {
    const { insert, id } = query.after;
    and.push({ $or: [{ [INSERT]: { $lt: insert } }, { [INSERT]: insert, _id: { $lt: id } }] });
  }
  const filter: Filter<StoredSession> = and.length === 0 ? {} : and.length === 1 ? and[0]! : { $and: and };
  const cursor = sessions
    .find(filter, call.opts)
    .sort({ [INSERT]: -1, _id: -1 })
    .limit(Math.max(1, query.limit));
  if (query.maxBytes === undefined) return (await cursor.toArray()).map((d) => fromStoredDocument(d));
  // The driver's batch (up to `limit` documents) is dropped with the cursor: what the caller
  // keeps is what the byte bound let in.
  const docs: SessionDoc[] = [];
  let bytes = 0;
  for await (const d of cursor) {
    docs.push(fromStoredDocument(d));
    bytes += BSON.calculateObjectSize(d);
    if (bytes >= query.maxBytes) break;
  }
  return docs;
}

/** Active sessions idle since `idleBefore`, then those inserted before `insertedBefore`. */
export async function findExpired(sessions: Collection<StoredSession>, query: ExpiryQuery, call: Call): Promise<SessionDoc[]> {
  const limit = Math.max(1, query.limit);
  const idle = await sessions
    .find({ "metadata.status": STATUS_ACTIVE, ...activeBefore(query.idleBefore) }, call.opts)
    .limit(limit)
    .toArray();
  const found = idle.map((d) => fromStoredDocument(d));
  if (found.length < limit) {
    const seen = new Set(found.map((d) => d.id));
    const tooLong = await sessions
      .find({ "metadata.status": STATUS_ACTIVE, [INSERT]: { $lt: query.insertedBefore } }, call.opts)
      .limit(limit)
      .toArray();
    for (const raw of tooLong) {
      if (found.length === limit) break;
      if (!seen.has(raw._id)) found.push(fromStoredDocument(raw));
    }
  }
  return found;
}

/**
 * Counts (total, per group, per breakdown field), the sessions online since `onlineSince` and
 * the sessions inserted per minute. One query per figure: without transactions (FerretDB has
 * none) they are not one snapshot, so writes during the call may show in some figures only.
 */
export async function sessionStats(sessions: Collection<StoredSession>, query: StatsQuery, call: Call): Promise<StatsResult> {
  const match: Filter<StoredSession> = {};
  if (query.profileId !== undefined) match["profile.id"] = query.profileId;
  if (query.status !== undefined) match["metadata.status"] = query.status;
  if (query.channel !== undefined) match["metadata.channel"] = query.channel;
  if (query.insertFrom !== undefined) match[INSERT] = { $gte: query.insertFrom };
  const online = await sessions.countDocuments(
    { $and: [match, { "metadata.status": STATUS_ACTIVE }, { $nor: [activeBefore(query.onlineSince)] }] },
    call.opts,
  );
  const result: StatsResult = { total: 0, groups: [], breakdowns: [], startedPerMinute: [], online };
  if (query.groupBy === undefined) {
    result.total = await sessions.countDocuments(match, call.opts);
  } else {
    result.groups = await groupCounts(sessions, match, query.groupBy, call);
    result.total = result.groups.reduce((sum, g) => sum + g.count, 0);
  }
  for (const field of query.breakdowns ?? []) result.breakdowns.push({ field, groups: await groupCounts(sessions, match, field, call) });
  if (query.startedPerMinute !== undefined) {
    result.startedPerMinute = await perMinute(sessions, match, query.insertFrom, query.startedPerMinute, call);
  }
  return result;
}

/** The matching sessions per value of `field` (null for null or missing). */
async function groupCounts(sessions: Collection<StoredSession>, match: Filter<StoredSession>, field: StatsField, call: Call) {
  const path = "$" + STATS_PATHS[field].join(".");
  const rows = await sessions
    .aggregate<{ _id: unknown; n: number }>([{ $match: match }, { $group: { _id: path, n: { $sum: 1 } } }], call.opts)
    .toArray();
  return rows.map((r) => ({ key: r._id === null || r._id === undefined ? null : String(r._id), count: r.n }));
}

/** The matching sessions inserted in each minute of the range, from their insert times alone. */
async function perMinute(
  sessions: Collection<StoredSession>,
  match: Filter<StoredSession>,
  insertFrom: Date | undefined,
  range: { from: Date; minutes: number },
  call: Call,
): Promise<number[]> {
  const from = range.from.getTime();
  const to = new Date(from + range.minutes * MINUTE_MS);
  const lower = insertFrom !== undefined && insertFrom > range.from ? insertFrom : range.from;
  const docs = await sessions
    .find({ ...match, [INSERT]: { $gte: lower, $lt: to } }, { ...call.opts, projection: { _id: 0, [INSERT]: 1 } })
    .toArray();
  const out = new Array<number>(range.minutes).fill(0);
  for (const d of docs) {
    const i = Math.floor((d.metadata.time.insert.getTime() - from) / MINUTE_MS);
    if (i >= 0 && i < range.minutes) out[i]++;
  }
  return out;
}

/** The session an earlier create with this idempotency key made, as a replay. */
export async function findByRequestId(sessions: Collection<StoredSession>, requestId: string, call: Call): Promise<CreateResult | null> {
  const raw = await sessions.findOne({ request_id: requestId }, call.opts);
  return raw ? { session: fromStoredDocument(raw), created: false } : null;
}

/** Sessions whose latest activity (update, else insert) is before `instant`. */
function activeBefore(instant: Date): Filter<StoredSession> {
  return { $or: [{ "metadata.time.update": { $lt: instant } }, { "metadata.time.update": null, [INSERT]: { $lt: instant } }] };
}
