// GetSessionStats on the embedded store from the maintained counts (counts.ts), so that its cost
// follows what is asked, not how many sessions are stored:
// - total, groups and each breakdown: a sum over the rows of stats_totals of the grouped field
//   (statuses x channels x values), one per field; with `insertFrom`, over the whole hours from
//   stats_hourly, plus the sessions of the partial first hour counted from the sessions table
//   through its insert-time index (one read for all the fields asked);
// - online: the active sessions with activity at or after onlineSince, through the partial index
//   on active sessions' activity: it costs what the online sessions cost;
// - with a `profileId` filter: the profile's sessions, counted through the profile index in one
//   read for every figure but the minutes (a scan of that profile's sessions only);
// - sessions started per minute: one range read of the insert-time index over the asked minutes
//   (the profile index with a profile), grouped by minute: it costs what those sessions cost.
// A read of sessions for several fields groups by all of them at once (one row per combination
// of values, at most one per session read) and adds the rows up per field here.
// All of one call's reads run in one read transaction: one snapshot of the file.

import type Database from "better-sqlite3";

import { STATUS_ACTIVE } from "../../domain/session";
import { MINUTE_MS, type StatsField, type StatsGroupCount, type StatsQuery, type StatsResult } from "../../domain/store";
import { COUNTED_FIELDS, decodeValue, HOUR_MS, hourOf, type CountedField } from "./counts";
import { filterTerms, STATS_COLUMNS } from "./queries";

type Row = Record<string, unknown> & { n: number };

/** Counts per value of each field asked, and the total (and online, where read with them). */
interface Counts {
  total: number;
  online: number;
  byField: Map<StatsField, Map<string | null, number>>;
}

/** The fields in one fixed order: the SQL of a read depends on the set asked, not its order. */
const FIELD_ORDER = Object.keys(STATS_COLUMNS) as StatsField[];

export class Stats {
  private readonly statements = new Map<string, Database.Statement<unknown[], Row>>();
  private readonly inSnapshot: Database.Transaction<(query: StatsQuery) => StatsResult>;

  constructor(private readonly db: Database.Database) {
    this.inSnapshot = db.transaction((query: StatsQuery) => this.read(query));
  }

  stats(query: StatsQuery): StatsResult {
    return this.inSnapshot.deferred(query);
  }

  private read(query: StatsQuery): StatsResult {
    const asked = new Set<StatsField>([...(query.groupBy === undefined ? [] : [query.groupBy]), ...(query.breakdowns ?? [])]);
    const fields = FIELD_ORDER.filter((f) => asked.has(f));
    let counts: Counts;
    if (query.profileId !== undefined) {
      counts = this.sessions(filterTerms(query), fields, query.onlineSince);
    } else {
      counts = this.fromCounts(query, fields);
      counts.online = this.online(query);
    }
    const groupsOf = (field: StatsField): StatsGroupCount[] =>
      [...(counts.byField.get(field) ?? [])].filter(([, n]) => n > 0).map(([key, count]) => ({ key, count }));
    return {
      total: counts.total,
      groups: query.groupBy === undefined ? [] : groupsOf(query.groupBy),
      breakdowns: (query.breakdowns ?? []).map((field) => ({ field, groups: groupsOf(field) })),
      startedPerMinute: query.startedPerMinute === undefined ? [] : this.perMinute(query, query.startedPerMinute),
      online: counts.online,
    };
  }

  /** Total and counts per field from the maintained counts (and the partial first hour). */
  private fromCounts(query: StatsQuery, fields: StatsField[]): Counts {
    const counts: Counts = { total: 0, online: 0, byField: new Map(fields.map((f) => [f, new Map()])) };
    let firstWhole: number | undefined;
    if (query.insertFrom !== undefined) {
      const from = query.insertFrom.getTime();
      firstWhole = hourOf(from) * HOUR_MS === from ? hourOf(from) : hourOf(from) + 1;
      // The partial first hour, from the sessions themselves.
      const terms = filterTerms({ status: query.status, channel: query.channel, insertFrom: query.insertFrom });
      terms.where.push("insert_ms < ?");
      terms.params.push(firstWhole * HOUR_MS);
      const partial = this.sessions(terms, fields);
      counts.total = partial.total;
      for (const [field, values] of partial.byField) for (const [key, n] of values) add(counts.byField.get(field)!, key, n);
    }
    if (fields.length === 0) {
      for (const [, n] of this.countRows(query, undefined, firstWhole)) counts.total += n;
      return counts;
    }
    for (const field of fields) {
      const values = counts.byField.get(field)!;
      for (const [key, n] of this.countRows(query, field, firstWhole)) {
        add(values, key, n);
        // Every session is in every field's rows: the first field's give the total.
        if (field === fields[0]) counts.total += n;
      }
    }
    return counts;
  }

  /** The sums of one field's count rows per value (per nothing without `groupBy`). */
  private countRows(
    query: StatsQuery,
    groupBy: StatsField | undefined,
    firstWholeHour: number | undefined,
  ): Array<[string | null, number]> {
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
    if (firstWholeHour !== undefined) {
      where.push("hour >= ?");
      params.push(firstWholeHour);
    }
    const table = firstWholeHour === undefined ? "stats_totals" : "stats_hourly";
    const sql = `SELECT ${keyColumn} AS k0, sum(n) AS n FROM ${table} WHERE ${where.join(" AND ")} GROUP BY k0`;
    return this.statement(sql)
      .all(...params)
      .map((row) => [decode(row.k0), row.n]);
  }

  /**
   * One read of the sessions matching `terms`, grouped by every field of `fields` at once (one
   * row per combination of values) and added up per field; with `onlineSince`, the online ones
   * are counted in the same read.
   */
  private sessions(terms: { where: string[]; params: unknown[] }, fields: StatsField[], onlineSince?: Date): Counts {
    const columns = fields.map((f, i) => `${STATS_COLUMNS[f]} AS k${i}`);
    columns.push("count(*) AS n");
    const params = [...terms.params];
    if (onlineSince !== undefined) {
      columns.push("coalesce(sum(status = 'active' AND active_ms >= ?), 0) AS online");
      params.unshift(onlineSince.getTime());
    }
    const sql =
      `SELECT ${columns.join(", ")} FROM sessions` +
      (terms.where.length > 0 ? ` WHERE ${terms.where.join(" AND ")}` : "") +
      (fields.length > 0 ? ` GROUP BY ${fields.map((_, i) => `k${i}`).join(", ")}` : "");
    const counts: Counts = { total: 0, online: 0, byField: new Map(fields.map((f) => [f, new Map()])) };
    for (const row of this.statement(sql).all(...params)) {
      counts.total += row.n;
      counts.online += Number(row.online ?? 0);
      fields.forEach((field, i) => {
        const key = row[`k${i}`];
        add(counts.byField.get(field)!, key === null || key === undefined ? null : String(key), row.n);
      });
    }
    return counts;
  }

  /** Sessions inserted per minute (see perMinuteQuery). */
  private perMinute(query: StatsQuery, range: { from: Date; minutes: number }): number[] {
    const { sql, params } = perMinuteQuery(query, range);
    const out = new Array<number>(range.minutes).fill(0);
    for (const row of this.statement(sql).all(...params)) out[Number(row.k0)] = row.n;
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
    const sql = `SELECT count(*) AS n FROM sessions INDEXED BY sessions_active_by_activity WHERE ${where.join(" AND ")}`;
    return this.statement(sql).get(...params)?.n ?? 0;
  }

  private statement(sql: string): Database.Statement<unknown[], Row> {
    let stmt = this.statements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare<unknown[], Row>(sql);
      this.statements.set(sql, stmt);
    }
    return stmt;
  }
}

function add(values: Map<string | null, number>, key: string | null, n: number): void {
  values.set(key, (values.get(key) ?? 0) + n);
}

/**
 * The read of the sessions inserted per minute in [from, from + minutes), within the filters:
 * one range of the insert-time index (the profile index with a profile; the status indexes with
 * a status), grouped by minute (k0: the minute's offset from `from`), so that the cost follows
 * the sessions inserted in the range. Exported for the query-plan test.
 */
export function perMinuteQuery(query: StatsQuery, range: { from: Date; minutes: number }): { sql: string; params: unknown[] } {
  const from = range.from.getTime();
  const lower = query.insertFrom !== undefined && query.insertFrom.getTime() > from ? query.insertFrom : range.from;
  const { where, params } = filterTerms({ ...query, insertFrom: lower });
  where.push("insert_ms < ?");
  params.push(from + range.minutes * MINUTE_MS);
  // Integer division (a bound number may arrive as a REAL, so it is cast).
  const sql = `SELECT (insert_ms - CAST(? AS INTEGER)) / ${MINUTE_MS} AS k0, count(*) AS n FROM sessions WHERE ${where.join(" AND ")} GROUP BY k0`;
  return { sql, params: [from, ...params] };
}
