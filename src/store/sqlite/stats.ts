// GetSessionStats on the embedded store from the maintained counts (counts.ts), so that its cost
// follows what is asked, not how many sessions are stored:
// - total and groups: a sum over the rows of stats_totals of one field (statuses x channels x
//   values); with `insertFrom`, over the whole hours from stats_hourly, plus the sessions of the
//   partial first hour counted from the sessions table through its insert-time index;
// - online: the active sessions with activity at or after onlineSince, through the partial index
//   on active sessions' activity: it costs what the online sessions cost;
// - with a `profileId` filter: the profile's sessions, counted through the profile index
//   (Queries.stats, a scan of that profile's sessions only);
// - breakdowns: each one more such sum (or profile scan), grouped by its field;
// - sessions started per minute: one range read of the insert-time index over the asked minutes
//   (the profile index with a profile), grouped by minute: it costs what those sessions cost.
// All of one call's reads run in one read transaction: one snapshot of the file.

import type Database from "better-sqlite3";

import { STATUS_ACTIVE } from "../../domain/session";
import { MINUTE_MS, type StatsField, type StatsQuery, type StatsResult } from "../../domain/store";
import { COUNTED_FIELDS, decodeValue, HOUR_MS, hourOf, type CountedField } from "./counts";
import { filterTerms, STATS_COLUMNS, type Queries } from "./queries";

interface KeyRow {
  key: unknown;
  n: number;
}

export class Stats {
  private readonly statements = new Map<string, Database.Statement<unknown[], KeyRow>>();
  private readonly inSnapshot: Database.Transaction<(query: StatsQuery) => StatsResult>;

  constructor(
    private readonly db: Database.Database,
    private readonly queries: Queries,
  ) {
    this.inSnapshot = db.transaction((query: StatsQuery) => this.read(query));
  }

  stats(query: StatsQuery): StatsResult {
    return this.inSnapshot.deferred(query);
  }

  private read(query: StatsQuery): StatsResult {
    const result: StatsResult = { total: 0, groups: [], breakdowns: [], startedPerMinute: [], online: 0 };
    if (query.profileId !== undefined) {
      // A profile's sessions, through the profile index: one scan per grouping.
      const main = this.queries.stats(query);
      Object.assign(result, { total: main.total, groups: main.groups, online: main.online });
      for (const field of query.breakdowns ?? []) {
        result.breakdowns.push({ field, groups: this.queries.stats({ ...query, groupBy: field }).groups });
      }
    } else {
      const counts = this.fromCounts(query, query.groupBy);
      for (const [key, count] of counts) {
        result.total += count;
        if (query.groupBy !== undefined) result.groups.push({ key, count });
      }
      result.online = this.online(query);
      for (const field of query.breakdowns ?? []) {
        result.breakdowns.push({ field, groups: [...this.fromCounts(query, field)].map(([key, count]) => ({ key, count })) });
      }
    }
    if (query.startedPerMinute !== undefined) result.startedPerMinute = this.perMinute(query, query.startedPerMinute);
    return result;
  }

  /** The matching sessions per value of `groupBy` (one key, null, without it), from the counts. */
  private fromCounts(query: StatsQuery, groupBy: StatsField | undefined): Map<string | null, number> {
    const counts = new Map<string | null, number>();
    const add = (key: string | null, n: number) => counts.set(key, (counts.get(key) ?? 0) + n);
    // The rows of one counted field: the grouped one, else any (each session is in each field's).
    const field: CountedField = groupBy !== undefined && groupBy in COUNTED_FIELDS ? (groupBy as CountedField) : "device_type";
    const keyColumn = groupBy === "status" || groupBy === "channel" ? groupBy : groupBy === undefined ? "NULL" : "value";
    const decode = keyColumn === "value" ? (k: unknown) => decodeValue(String(k)) : (k: unknown) => (k === null ? null : String(k));
    const where = ["field = ?"];
    const params: unknown[] = [field];
    if (query.status !== undefined) {
      where.push("status = ?");
      params.push(query.status);
    }
    if (query.channel !== undefined) {
      where.push("channel = ?");
      params.push(query.channel);
    }
    let table = "stats_totals";
    if (query.insertFrom !== undefined) {
      const from = query.insertFrom.getTime();
      const firstWhole = hourOf(from) * HOUR_MS === from ? hourOf(from) : hourOf(from) + 1;
      table = "stats_hourly";
      where.push("hour >= ?");
      params.push(firstWhole);
      // The partial first hour, from the sessions themselves.
      const partial = filterTerms({ status: query.status, channel: query.channel, insertFrom: query.insertFrom });
      partial.where.push("insert_ms < ?");
      partial.params.push(firstWhole * HOUR_MS);
      const key = groupBy === undefined ? "NULL" : STATS_COLUMNS[groupBy];
      const sql = `SELECT ${key} AS key, count(*) AS n FROM sessions WHERE ${partial.where.join(" AND ")} GROUP BY key`;
      for (const row of this.statement(sql).all(...partial.params)) add(row.key === null ? null : String(row.key), row.n);
    }
    const sql = `SELECT ${keyColumn} AS key, sum(n) AS n FROM ${table} WHERE ${where.join(" AND ")} GROUP BY key`;
    for (const row of this.statement(sql).all(...params)) add(decode(row.key), row.n);

    for (const [key, n] of counts) if (n <= 0) counts.delete(key);
    return counts;
  }

  /** Sessions inserted per minute (see perMinuteQuery). */
  private perMinute(query: StatsQuery, range: { from: Date; minutes: number }): number[] {
    const { sql, params } = perMinuteQuery(query, range);
    const out = new Array<number>(range.minutes).fill(0);
    for (const row of this.statement(sql).all(...params)) out[Number(row.key)] = row.n;
    return out;
  }

  /** Active sessions with activity at or after onlineSince, within the filters. */
  private online(query: StatsQuery): number {
    if (query.status !== undefined && query.status !== STATUS_ACTIVE) return 0;
    const where = ["status = 'active'", "active_ms >= ?"];
    const params: unknown[] = [query.onlineSince.getTime()];
    if (query.channel !== undefined) {
      where.push("channel = ?");
      params.push(query.channel);
    }
    if (query.insertFrom !== undefined) {
      where.push("insert_ms >= ?");
      params.push(query.insertFrom.getTime());
    }
    // The index of active sessions by activity, so that the cost follows the online sessions.
    const sql = `SELECT NULL AS key, count(*) AS n FROM sessions INDEXED BY sessions_active_by_activity WHERE ${where.join(" AND ")}`;
    return this.statement(sql).get(...params)?.n ?? 0;
  }

  private statement(sql: string): Database.Statement<unknown[], KeyRow> {
    let stmt = this.statements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare<unknown[], KeyRow>(sql);
      this.statements.set(sql, stmt);
    }
    return stmt;
  }
}

/**
 * The read of the sessions inserted per minute in [from, from + minutes), within the filters:
 * one range of the insert-time index (the profile index with a profile; the status indexes with
 * a status), grouped by minute (key: the minute's offset from `from`), so that the cost follows
 * the sessions inserted in the range. Exported for the query-plan test.
 */
export function perMinuteQuery(query: StatsQuery, range: { from: Date; minutes: number }): { sql: string; params: unknown[] } {
  const from = range.from.getTime();
  const lower = query.insertFrom !== undefined && query.insertFrom.getTime() > from ? query.insertFrom : range.from;
  const { where, params } = filterTerms({ ...query, insertFrom: lower });
  where.push("insert_ms < ?");
  params.push(from + range.minutes * MINUTE_MS);
  // Integer division (a bound number may arrive as a REAL, so it is cast).
  const sql = `SELECT (insert_ms - CAST(? AS INTEGER)) / ${MINUTE_MS} AS key, count(*) AS n FROM sessions WHERE ${where.join(" AND ")} GROUP BY key`;
  return { sql, params: [from, ...params] };
}
