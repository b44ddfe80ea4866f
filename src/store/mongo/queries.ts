// The reads of sessions: ListSessions' filter and keyset page, the expiry candidates, statistics,
// and the replay of an idempotent create. Each query has an index (collections.ts). On FerretDB
// only `_id` lookups use an index; the others read the collection (docs/mongodb.md).

import type { Collection, Filter } from "mongodb";

import { STATUS_ACTIVE, type SessionDoc } from "../../domain/session";
import { STATS_PATHS, type CreateResult, type ExpiryQuery, type ListQuery, type StatsQuery, type StatsResult } from "../../domain/store";
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
  const docs = await sessions
    .find(filter, call.opts)
    .sort({ [INSERT]: -1, _id: -1 })
    .limit(Math.max(1, query.limit))
    .toArray();
  return docs.map((d) => fromStoredDocument(d));
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

/** Counts (total, per group) and the sessions online since `onlineSince`. */
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
  if (query.groupBy === undefined) {
    return { total: await sessions.countDocuments(match, call.opts), groups: [], online };
  }
  const field = "$" + STATS_PATHS[query.groupBy].join(".");
  const rows = await sessions
    .aggregate<{ _id: unknown; n: number }>([{ $match: match }, { $group: { _id: field, n: { $sum: 1 } } }], call.opts)
    .toArray();
  const groups = rows.map((r) => ({ key: r._id === null || r._id === undefined ? null : String(r._id), count: r.n }));
  return { total: groups.reduce((sum, g) => sum + g.count, 0), groups, online };
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
