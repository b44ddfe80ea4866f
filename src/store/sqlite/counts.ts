// Maintained session counts, so that GetSessionStats sums a bounded number of rows instead of
// scanning every session (the read is in stats.ts).
//
// Two tables hold the number of stored sessions per (status, channel, value of one grouped
// field): stats_totals over all sessions, stats_hourly per hour of metadata.time.insert (for
// `insertFrom`). Only the fields kept in the document are counted (COUNTED_FIELDS); status and
// channel are columns of every row, so any one field's rows also give the counts by status, by
// channel and the total.
//
// Exactness: the counts change in the same transaction as the write that changes the session
// (create, update incl. the lifecycle's expiry updates, delete): a write collects its deltas
// during the group commit (batch.ts) and the batch adds them with one upsert per changed row
// right before COMMIT. A crash loses the counts together with the writes; several processes on
// one file serialize their batches under BEGIN IMMEDIATE like every write. A file without the
// tables (made by older code) gets them filled from its sessions when it is opened (migrate in
// schema.ts, inside the schema's write transaction); so does a field added to COUNTED_FIELDS
// since the file was last opened (`stats_fields` lists the fields a file counts). Every process
// writing to one file must run code with the same COUNTED_FIELDS.
//
// Values are stored encoded: '' for null or missing, '=' followed by the value otherwise (NULL
// cannot be part of a key that upserts match on).

import type Database from "better-sqlite3";

import type { SessionDoc } from "../../domain/session";
import type { StatsField } from "../../domain/store";

export const HOUR_MS = 3_600_000;

/** The grouped fields kept in the document, with their JSON path in sessions.doc. */
export const COUNTED_FIELDS = {
  device_type: "$.device.type",
  os_name: "$.os.name",
  app_name: "$.app.name",
  country_code: "$.device.geo.country.code",
  utm_source: "$.utm.source",
  channel_group: "$.traffic.channel_group",
  source: "$.traffic.source",
} as const satisfies Partial<Record<StatsField, string>>;

/** The fields counted by files made before `stats_fields` existed. */
const FIRST_FIELDS: readonly CountedField[] = ["device_type", "os_name", "app_name", "country_code", "utm_source"];

export type CountedField = keyof typeof COUNTED_FIELDS;
const FIELDS = Object.keys(COUNTED_FIELDS) as CountedField[];

/** A field's value as the counts store it (see the header). */
export function encodeValue(value: string | null | undefined): string {
  return value === null || value === undefined ? "" : `=${value}`;
}

export function decodeValue(value: string): string | null {
  return value === "" ? null : value.slice(1);
}

/** The hour (since the epoch, rounded down) of an insert time in ms. */
export function hourOf(ms: number): number {
  return Math.floor(ms / HOUR_MS);
}

function fieldValue(doc: SessionDoc, field: CountedField): string | null {
  switch (field) {
    case "device_type":
      return doc.device?.type ?? null;
    case "os_name":
      return doc.os?.name ?? null;
    case "app_name":
      return doc.app?.name ?? null;
    case "country_code":
      return doc.device?.geo?.country?.code ?? null;
    case "utm_source":
      return doc.utm?.source ?? null;
    case "channel_group":
      return doc.traffic?.channel_group ?? null;
    case "source":
      return doc.traffic?.source ?? null;
  }
}

/** What a session contributes to the counts. */
interface Contribution {
  hour: number;
  status: string;
  channel: string;
  values: string[];
}

function contribution(doc: SessionDoc): Contribution {
  const m = doc.metadata;
  return {
    hour: hourOf(m.time.insert.getTime()),
    status: m.status,
    channel: m.channel,
    values: FIELDS.map((f) => encodeValue(fieldValue(doc, f))),
  };
}

function sameContribution(a: Contribution, b: Contribution): boolean {
  return a.hour === b.hour && a.status === b.status && a.channel === b.channel && a.values.every((v, i) => v === b.values[i]);
}

/**
 * Creates the count tables when the file has none, and fills the counts of every field the file
 * does not count yet from the stored sessions (one pass over them per field). Runs inside the
 * schema's write transaction (openReadWrite).
 */
export function migrateCounts(db: Database.Database): void {
  const table = (name: string) => db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
  const hadCounts = table("stats_totals");
  const hadFields = table("stats_fields");
  if (!hadFields) db.exec("CREATE TABLE stats_fields (field TEXT PRIMARY KEY) WITHOUT ROWID");
  if (!hadCounts) {
    // Nothing is counted without the tables, whatever the list says.
    createCountTables(db);
    db.exec("DELETE FROM stats_fields");
  } else if (!hadFields) {
    // Count tables without the list were made by code that counted FIRST_FIELDS.
    for (const field of FIRST_FIELDS) db.prepare("INSERT INTO stats_fields (field) VALUES (?)").run(field);
  }
  const counted = new Set(db.prepare("SELECT field FROM stats_fields").pluck().all() as string[]);
  for (const field of FIELDS) {
    if (counted.has(field)) continue;
    fillCounts(db, field);
    db.prepare("INSERT INTO stats_fields (field) VALUES (?)").run(field);
  }
}

function createCountTables(db: Database.Database): void {
  db.exec(`
    CREATE TABLE stats_totals (
      field   TEXT NOT NULL,
      status  TEXT NOT NULL,
      channel TEXT NOT NULL,
      value   TEXT NOT NULL,
      n       INTEGER NOT NULL,
      PRIMARY KEY (field, status, channel, value)
    ) WITHOUT ROWID;
    CREATE TABLE stats_hourly (
      field   TEXT NOT NULL,
      hour    INTEGER NOT NULL,
      status  TEXT NOT NULL,
      channel TEXT NOT NULL,
      value   TEXT NOT NULL,
      n       INTEGER NOT NULL,
      PRIMARY KEY (field, hour, status, channel, value)
    ) WITHOUT ROWID;
  `);
}

/** Counts one field's values over the stored sessions (the file has no rows of it yet). */
function fillCounts(db: Database.Database, field: CountedField): void {
  // The hour rounded down also for times before 1970 (SQLite's % keeps the dividend's sign).
  const hour = `(insert_ms - ((insert_ms % ${HOUR_MS}) + ${HOUR_MS}) % ${HOUR_MS}) / ${HOUR_MS}`;
  const value = `CASE WHEN json_extract(doc, '${COUNTED_FIELDS[field]}') IS NULL THEN '' ELSE '=' || json_extract(doc, '${COUNTED_FIELDS[field]}') END`;
  db.exec(
    `INSERT INTO stats_totals (field, status, channel, value, n)
     SELECT '${field}', status, channel, ${value} AS v, count(*) FROM sessions GROUP BY status, channel, v`,
  );
  db.exec(
    `INSERT INTO stats_hourly (field, hour, status, channel, value, n)
     SELECT '${field}', ${hour} AS h, status, channel, ${value} AS v, count(*) FROM sessions GROUP BY h, status, channel, v`,
  );
}

/** The deltas of one group commit, added to the tables before it commits (writer thread). */
export class StatsCounts {
  /** JSON of [hour or null for the totals, field, status, channel, value] -> delta. */
  private readonly deltas = new Map<string, number>();
  private upsertTotal: Database.Statement<unknown[]> | undefined;
  private upsertHourly: Database.Statement<unknown[]> | undefined;
  private dropTotal: Database.Statement<unknown[]> | undefined;
  private dropHourly: Database.Statement<unknown[]> | undefined;

  constructor(private readonly db: Database.Database) {}

  startBatch(): void {
    this.deltas.clear();
  }

  created(doc: SessionDoc): void {
    this.add(contribution(doc), 1);
  }

  deleted(doc: SessionDoc): void {
    this.add(contribution(doc), -1);
  }

  /** An update: nothing to do unless it changed a counted value, the status, channel or hour. */
  updated(before: SessionDoc, after: SessionDoc): void {
    const a = contribution(before);
    const b = contribution(after);
    if (sameContribution(a, b)) return;
    this.add(a, -1);
    this.add(b, 1);
  }

  /** Adds the batch's deltas to the tables (inside its transaction). */
  endBatch(): void {
    if (this.deltas.size === 0) return;
    this.upsertTotal ??= this.db.prepare(
      "INSERT INTO stats_totals (field, status, channel, value, n) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
    );
    this.upsertHourly ??= this.db.prepare(
      "INSERT INTO stats_hourly (field, hour, status, channel, value, n) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
    );
    // A row that comes down to 0 goes, so that deleted sessions leave no rows behind.
    this.dropTotal ??= this.db.prepare("DELETE FROM stats_totals WHERE field = ? AND status = ? AND channel = ? AND value = ? AND n = 0");
    this.dropHourly ??= this.db.prepare(
      "DELETE FROM stats_hourly WHERE field = ? AND hour = ? AND status = ? AND channel = ? AND value = ? AND n = 0",
    );
    for (const [key, delta] of this.deltas) {
      if (delta === 0) continue;
      const [hour, field, status, channel, value] = JSON.parse(key) as [number | null, string, string, string, string];
      if (hour === null) {
        this.upsertTotal.run(field, status, channel, value, delta);
        if (delta < 0) this.dropTotal.run(field, status, channel, value);
      } else {
        this.upsertHourly.run(field, hour, status, channel, value, delta);
        if (delta < 0) this.dropHourly.run(field, hour, status, channel, value);
      }
    }
    this.deltas.clear();
  }

  private add(c: Contribution, sign: 1 | -1): void {
    FIELDS.forEach((field, i) => {
      for (const hour of [null, c.hour]) {
        const key = JSON.stringify([hour, field, c.status, c.channel, c.values[i]]);
        this.deltas.set(key, (this.deltas.get(key) ?? 0) + sign);
      }
    });
  }
}
