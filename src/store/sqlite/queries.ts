// The reads of sessions that scan: ListSessions' filtered keyset page and the expiry candidates;
// also the SQL that statistics over the sessions themselves share (stats.ts: a profile's
// sessions, a partial first hour, the minutes; the other statistics come from maintained counts).
// Listings build their SQL from the filters given and keep one prepared statement per
// combination; each filter has an index (schema.ts).

import type Database from "better-sqlite3";

import { STATUS_ACTIVE, type SessionDoc } from "../../domain/session";
import type { ExpiryQuery, ListQuery, StatsField } from "../../domain/store";
import { fromRow, type DocRow } from "./codec";

/** The SQL of each StatsField: the indexed column where there is one, else the JSON path. */
export const STATS_COLUMNS: Record<StatsField, string> = {
  channel: "channel",
  status: "status",
  device_type: "json_extract(doc, '$.device.type')",
  os_name: "json_extract(doc, '$.os.name')",
  app_name: "json_extract(doc, '$.app.name')",
  country_code: "json_extract(doc, '$.device.geo.country.code')",
  utm_source: "json_extract(doc, '$.utm.source')",
  channel_group: "channel_group",
  source: "json_extract(doc, '$.traffic.source')",
};

/** The WHERE terms (and their parameters) of the filters listings and statistics share. */
export function filterTerms(query: { profileId?: string; status?: string; channel?: string; channelGroup?: string; insertFrom?: Date }): {
  where: string[];
  params: unknown[];
} {
  const where: string[] = [];
  const params: unknown[] = [];
  if (query.profileId !== undefined) {
    where.push("profile_id = ?");
    params.push(query.profileId);
  }
  if (query.status !== undefined) {
    // The same term as the partial index's, so that SQLite may use it.
    where.push(query.status === STATUS_ACTIVE ? "status = ?" : "status = ? AND status <> 'active'");
    params.push(query.status);
  }
  if (query.channel !== undefined) {
    where.push("channel = ?");
    params.push(query.channel);
  }
  if (query.channelGroup !== undefined) {
    where.push("channel_group = ?");
    params.push(query.channelGroup);
  }
  if (query.insertFrom !== undefined) {
    where.push("insert_ms >= ?");
    params.push(query.insertFrom.getTime());
  }
  return { where, params };
}

export class Queries {
  /** List statements, prepared on first use per combination of filters. */
  private readonly listStatements = new Map<string, Database.Statement<unknown[], DocRow>>();
  private readonly idleStmt: Database.Statement<[number, number], DocRow>;
  private readonly tooLongStmt: Database.Statement<[number, number], DocRow>;

  constructor(private readonly db: Database.Database) {
    this.idleStmt = db.prepare<[number, number], DocRow>(
      "SELECT doc, revision FROM sessions WHERE status = 'active' AND active_ms < ? LIMIT ?",
    );
    this.tooLongStmt = db.prepare<[number, number], DocRow>(
      "SELECT doc, revision FROM sessions WHERE status = 'active' AND insert_ms < ? LIMIT ?",
    );
  }

  list(query: ListQuery): SessionDoc[] {
    const { where, params } = filterTerms(query);
    if (query.insertTo !== undefined) {
      where.push("insert_ms < ?");
      params.push(query.insertTo.getTime());
    }
    if (query.after !== undefined) {
      // Keyset paging: strictly after the cursor in (insert_ms desc, id desc) order.
      where.push("(insert_ms, id) < (?, ?)");
      params.push(query.after.insert.getTime(), query.after.id);
    }
    params.push(query.limit);
    const sql =
      "SELECT doc, revision FROM sessions" +
      (where.length > 0 ? ` WHERE ${where.join(" AND ")}` : "") +
      " ORDER BY insert_ms DESC, id DESC LIMIT ?";
    let stmt = this.listStatements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare<unknown[], DocRow>(sql);
      this.listStatements.set(sql, stmt);
    }
    if (query.maxBytes === undefined) return stmt.all(...params).map(fromRow);
    const rows: DocRow[] = [];
    let bytes = 0;
    for (const row of stmt.iterate(...params)) {
      rows.push(row);
      bytes += row.doc.length;
      if (bytes >= query.maxBytes) break;
    }
    return rows.map(fromRow);
  }

  /** Idle sessions first, then those active for too long, `query.limit` at most in all. */
  findExpired(query: ExpiryQuery): SessionDoc[] {
    const limit = Math.max(1, query.limit);
    const found = this.idleStmt.all(query.idleBefore.getTime(), limit).map(fromRow);
    if (found.length < limit) {
      const seen = new Set(found.map((d) => d.id));
      for (const doc of this.tooLongStmt.all(query.insertedBefore.getTime(), limit).map(fromRow)) {
        if (found.length === limit) break;
        if (!seen.has(doc.id)) found.push(doc);
      }
    }
    return found;
  }
}
