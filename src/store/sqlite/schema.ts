// The file's schema and connection settings. Durability: WAL journal with synchronous=NORMAL. A
// call that has resolved survives a crash or kill -9 of the process (its transaction is in the WAL
// file). Power loss or an OS crash may lose the last transactions before the next checkpoint;
// synchronous=FULL would prevent that at the cost of an fsync per commit. WAL also lets the
// read-only connections of the reader threads read while the writer writes or waits for a lock.

import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";

import { migrateCounts } from "./counts";

/** How long a write waits for another connection's write lock (unless its deadline is sooner). */
export const BUSY_TIMEOUT_MS = 5000;

export const SCHEMA = `
  CREATE TABLE IF NOT EXISTS sessions (
    id         TEXT PRIMARY KEY,
    doc        TEXT NOT NULL,     -- JSON of the SessionDoc without revision, dates as epoch ms
    revision   INTEGER NOT NULL,
    profile_id TEXT,
    status     TEXT NOT NULL,
    channel    TEXT NOT NULL,
    insert_ms  INTEGER NOT NULL,
    request_id TEXT,              -- idempotency key of the create, NULL when none was given
    active_ms  INTEGER NOT NULL DEFAULT 0, -- latest activity: metadata.time.update, else insert
    channel_group TEXT            -- traffic.channel_group; NULL for sessions without traffic
  );
  -- Unique among non-NULL keys; partial so that creates without a key add no index entry.
  CREATE UNIQUE INDEX IF NOT EXISTS sessions_by_request_id ON sessions (request_id) WHERE request_id IS NOT NULL;
  CREATE INDEX IF NOT EXISTS sessions_by_profile  ON sessions (profile_id, insert_ms, id);
  -- The listing order; it also holds status and channel, so that listings filtered by them
  -- alone walk this index and skip non-matching sessions without reading their rows.
  CREATE INDEX IF NOT EXISTS sessions_by_insert_status_channel ON sessions (insert_ms, id, status, channel);
  -- Sessions are created active: only other statuses (fewer, and rare ones worth finding
  -- fast) get an entry here. list() adds the same condition for such a status.
  CREATE INDEX IF NOT EXISTS sessions_by_other_status ON sessions (status, insert_ms, id) WHERE status <> 'active';
  -- Replaced by the two above (files made by older code have them).
  DROP INDEX IF EXISTS sessions_by_insert;
  DROP INDEX IF EXISTS sessions_by_status;
  DROP INDEX IF EXISTS sessions_by_channel;
  -- No query reads sessions by revision (files made by older code have this index).
  DROP INDEX IF EXISTS sessions_by_revision;

  -- Visit numbering: the session that took each number of a profile (see the port).
  CREATE TABLE IF NOT EXISTS visits (
    profile_id TEXT NOT NULL,
    idx        INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    PRIMARY KEY (profile_id, idx)
  ) WITHOUT ROWID;

  -- The store-wide revision counter: the last revision handed out.
  CREATE TABLE IF NOT EXISTS meta (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    -- Change-log retention: entries up to this revision have been removed.
    trimmed_through INTEGER NOT NULL DEFAULT 0
  );
  INSERT OR IGNORE INTO meta (id, revision) VALUES (1, 0);

  -- One row per committed write, in the same transaction (read by WatchSessions).
  -- doc has the format of sessions.doc (the revision is the row's): the session after the
  -- change, for deletions its last state; '' while that document is the session row's (the
  -- session is still at this revision; its next update or delete fills doc in first).
  -- before_* are the filter fields before the change (NULL for creations).
  CREATE TABLE IF NOT EXISTS changes (
    revision          INTEGER PRIMARY KEY,
    id                TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('created', 'updated', 'deleted')),
    doc               TEXT NOT NULL,
    at_ms             INTEGER NOT NULL,
    before_profile_id TEXT,
    before_status     TEXT,
    before_channel    TEXT,
    before_channel_group TEXT,
    -- 1: a tombstone of an erased session (doc '-'); see erase.ts.
    erased            INTEGER NOT NULL DEFAULT 0
  );
  -- Trimming scans from the oldest change (revision order follows at_ms closely enough).
  DROP INDEX IF EXISTS changes_by_time;
`;

/**
 * Schema changes that CREATE ... IF NOT EXISTS cannot express, for files made by older code.
 * active_ms: the latest activity, metadata.time.update or else insert, for lifecycle expiry and
 * "online now"; older rows get it from their documents.
 */
export function migrate(db: Database.Database): void {
  const columns = db.prepare("SELECT name FROM pragma_table_info('sessions')").pluck().all() as string[];
  if (!columns.includes("active_ms")) {
    db.exec("ALTER TABLE sessions ADD COLUMN active_ms INTEGER NOT NULL DEFAULT 0");
    db.exec("UPDATE sessions SET active_ms = coalesce(json_extract(doc, '$.metadata.time.update'), insert_ms)");
  }
  // Only active sessions can expire or be online: the two expiry queries (idle, too long) and
  // the "online" count walk these, never the ended sessions that pile up over time.
  db.exec("CREATE INDEX IF NOT EXISTS sessions_active_by_activity ON sessions (active_ms) WHERE status = 'active'");
  db.exec("CREATE INDEX IF NOT EXISTS sessions_active_by_insert ON sessions (insert_ms) WHERE status = 'active'");
  // traffic.channel_group (ListSessions' and WatchSessions' filter). Documents of older code have
  // no traffic: the column stays NULL for them, unless one was written by newer code before.
  if (!columns.includes("channel_group")) {
    db.exec("ALTER TABLE sessions ADD COLUMN channel_group TEXT");
    db.exec("UPDATE sessions SET channel_group = json_extract(doc, '$.traffic.channel_group')");
  }
  // A listing filtered by channel group walks its sessions in listing order; sessions without
  // traffic (NULL) take no entry.
  db.exec(
    "CREATE INDEX IF NOT EXISTS sessions_by_channel_group ON sessions (channel_group, insert_ms, id) WHERE channel_group IS NOT NULL",
  );
  const changeColumns = db.prepare("SELECT name FROM pragma_table_info('changes')").pluck().all() as string[];
  // The channel group before each change, for watch filters by channel_group.
  if (!changeColumns.includes("before_channel_group")) db.exec("ALTER TABLE changes ADD COLUMN before_channel_group TEXT");
  // Erasure (erase.ts): tombstones in the change log, the log by session id, and the erased
  // changes whose before-fields (the profile id) are still to be cleared.
  if (!changeColumns.includes("erased")) db.exec("ALTER TABLE changes ADD COLUMN erased INTEGER NOT NULL DEFAULT 0");
  db.exec("CREATE INDEX IF NOT EXISTS changes_by_id ON changes (id)");
  db.exec(
    "CREATE TABLE IF NOT EXISTS erasures (profile_id TEXT NOT NULL, revision INTEGER NOT NULL, PRIMARY KEY (profile_id, revision)) WITHOUT ROWID",
  );
  // The statistics counts (counts.ts), filled from the sessions when the file has none.
  migrateCounts(db);
}

/**
 * Opens (creating it and its directory if needed) the file read-write, in WAL mode with
 * synchronous=NORMAL, and brings its schema up to date in one write transaction.
 */
export function openReadWrite(file: string): Database.Database {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file, { timeout: BUSY_TIMEOUT_MS });
  try {
    const mode = db.pragma("journal_mode = WAL", { simple: true });
    if (mode !== "wal") throw new Error(`journal_mode is "${String(mode)}", WAL is required`);
    db.pragma("synchronous = NORMAL");
    db.exec("BEGIN IMMEDIATE");
    db.exec(SCHEMA);
    migrate(db);
    db.exec("COMMIT");
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** A read-only connection to a file that openReadWrite has set up (WAL, schema). */
export function openReadOnly(file: string): Database.Database {
  return new Database(file, { readonly: true, fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
}
