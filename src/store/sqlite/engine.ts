// The embedded store's engine: the synchronous SQLite logic (better-sqlite3) of one connection.
// It runs inside worker threads (src/store/sqlite/worker.ts), never on the service's event loop:
// the SessionStore the service uses is the proxy in src/store/sqlite/index.ts, which explains why.
// One writer thread runs an engine opened with `open` (every write, group commit, trimming and the
// write probe of health); reader threads run engines opened with `attach` (read-only
// connections: get, list, stats, findExpired, readChanges, headRevision).
//
//
// Durability: WAL journal with synchronous=NORMAL. A call that has resolved survives a crash or
// kill -9 of the process (its transaction is in the WAL file). Power loss or an OS crash may lose
// the last transactions before the next checkpoint; synchronous=FULL would prevent that at the
// cost of an fsync per commit.
//
// Group commit: writes issued in the same event-loop turn are committed together in one
// transaction. A commit costs about as much as the pages it writes, and concurrent writes share
// most of their pages (table tails, index tails, the counter row). Every write call resolves
// only after its transaction has committed.
//
// A failing write never affects the others, without savepoints: every write makes all its
// checks (reads, typed errors, patching, serializing) before its first modifying statement, and
// SQLite undoes a failed statement by itself. So a write that fails before or at its first
// modification has changed nothing, and the batch goes on. A failure after that (only I/O, disk
// full and the like) fails the whole batch: the transaction rolls back and every write of it
// rejects. (Savepoints cost a statement journal: about 35 KB of temp-file writes per create.)
//
// Revisions: a batch reads the counter once, hands out the next values to its successful
// writes in order, and stores the last one with one UPDATE before COMMIT.
//
// A create inserts its session row at once (that statement is what can fail: a taken id), and
// leaves its change row and its visit row to the batch: they go in with one multi-row INSERT
// each, before the next update or delete of the batch runs (those read and amend change rows)
// and before COMMIT, so every commit still holds them. The visit numbers a batch hands out are
// remembered per profile for the rest of the batch (the rows are not in the table yet); the
// batch holds the write lock, so nobody else can take a number in between.
//
// The change log stores a document only when the sessions table no longer holds it: the row
// of a session's latest change has doc = '' and its post-image is the session row (same
// revision). The next update or delete of the session first copies the document into that row.
// So a create writes its JSON once, and trimming may drop any change row. Files from before
// this layout (every change row holds its document) open as they are; code from before it must
// not write to a file shared with this code (it would overwrite a session without the copy).
//
// Several processes may share the file: each batch runs in a BEGIN IMMEDIATE transaction, which
// takes the write lock before reading, so revisions (the `meta` row) are handed out and committed
// in one serialized step and follow commit order.
//
// better-sqlite3 is synchronous: a call blocks its thread while it runs, including while it
// waits for another process's write lock; that thread is a worker's, not the service's.

import fs from "node:fs";
import path from "node:path";
import { Worker } from "node:worker_threads";
import Database from "better-sqlite3";

import { ChangesTrimmedError, DomainError, NotFoundError, AlreadyExistsError, RevisionConflictError, StoreUnavailableError } from "../../domain/errors";
import { emptyActivity, STATUS_ACTIVE, type SessionDoc } from "../../domain/session";
import { applyPatch, cloneDoc } from "../patch";
import type {
  CallOptions,
  ChangeBatch,
  ChangeKind,
  ChangeRecord,
  ConditionalOptions,
  CreateOptions,
  CreateResult,
  ExpiryQuery,
  FilterFields,
  ListQuery,
  SessionPatch,
  SessionStore,
  StatsField,
  StatsQuery,
  StatsResult,
  UpdateOptions,
} from "../../domain/store";

/** How long a write waits for another connection's write lock (unless its deadline is sooner). */
const BUSY_TIMEOUT_MS = 5000;

/** Commits after which the checkpointer thread starts (small stores, like tests, never need it). */
const CHECKPOINTER_AFTER_COMMITS = 200;
/** How often the checkpointer thread copies the WAL into the database file. */
const CHECKPOINT_INTERVAL_MS = 100;
/** WAL size (frames) from which the checkpointer catches up completely, so the WAL restarts. */
const RESTART_WAL_FRAMES = 4000;
/**
 * WAL size (frames) at which the writer checkpoints by itself after a commit, on the event loop:
 * a backstop for when the checkpointer thread falls behind or is gone (SQLite's default is 1000).
 */
const BACKSTOP_CHECKPOINT_PAGES = 16000;
/**
 * Free space (bytes) under which the write probe fails: the file system is as good as full (a
 * session can be hundreds of KB; a commit also needs room for its WAL frames).
 */
export const MIN_FREE_BYTES = 1024 * 1024;
const PROBE_BYTE = Buffer.from([0]);
/** Rows per multi-row INSERT of a batch's deferred change and visit rows (3 parameters each). */
const MULTI_INSERT_ROWS = 64;

// The checkpointer: a worker thread with its own connection that runs a PASSIVE checkpoint
// every CHECKPOINT_INTERVAL_MS. A passive checkpoint never blocks the writer, nor the writer
// it, so the page copies and fsyncs of checkpoints leave the event loop. SQLite's automatic
// checkpoint (run by the writer inside COMMIT, every 1000 pages by default) stays on as a
// backstop at BACKSTOP_CHECKPOINT_PAGES, for when the thread falls behind or is gone.
// Started after CHECKPOINTER_AFTER_COMMITS commits; until then the writer checkpoints at
// SQLite's default. Plain JavaScript, evaluated as the worker's script.
const CHECKPOINTER_SCRIPT = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
const checkpoint = () => {
  try {
    let { log } = db.pragma("wal_checkpoint(PASSIVE)")[0];
    // The WAL starts over (instead of growing) when a write begins with every frame copied,
    // but the writer usually commits more while a checkpoint runs. From a certain size, copy
    // those too, in a few quick rounds, until a round finds nothing new.
    for (let i = 0; i < 5 && log >= workerData.restartFrames; i++) {
      const next = db.pragma("wal_checkpoint(PASSIVE)")[0].log;
      if (next === log) break;
      log = next;
    }
  } catch {
    // Busy or failing: the next tick tries again, the writer's backstop covers the rest.
  }
};
const timer = setInterval(checkpoint, workerData.intervalMs);
parentPort.once("message", () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS sessions (
    id         TEXT PRIMARY KEY,
    doc        TEXT NOT NULL,     -- JSON of the SessionDoc without revision, dates as epoch ms
    revision   INTEGER NOT NULL,
    profile_id TEXT,
    status     TEXT NOT NULL,
    channel    TEXT NOT NULL,
    insert_ms  INTEGER NOT NULL,
    request_id TEXT,              -- idempotency key of the create, NULL when none was given
    active_ms  INTEGER NOT NULL DEFAULT 0  -- latest activity: metadata.time.update, else insert
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
  -- Replaced by the two above (these existed in files made before 2026-11-27).
  DROP INDEX IF EXISTS sessions_by_insert;
  DROP INDEX IF EXISTS sessions_by_status;
  DROP INDEX IF EXISTS sessions_by_channel;
  -- No query reads sessions by revision (this index existed in files made before 2026-11-27).
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
    before_channel    TEXT
  );
  -- Trimming scans from the oldest change (revision order follows at_ms closely enough).
  DROP INDEX IF EXISTS changes_by_time;
`;

/**
 * Schema changes that CREATE ... IF NOT EXISTS cannot express, for files made by older code.
 * active_ms (added 2026-11-27): the latest activity, metadata.time.update or else insert, for
 * lifecycle expiry and "online now"; older rows get it from their documents.
 */
function migrate(db: Database.Database): void {
  const columns = db.prepare("SELECT name FROM pragma_table_info('sessions')").pluck().all() as string[];
  if (!columns.includes("active_ms")) {
    db.exec("ALTER TABLE sessions ADD COLUMN active_ms INTEGER NOT NULL DEFAULT 0");
    db.exec("UPDATE sessions SET active_ms = coalesce(json_extract(doc, '$.metadata.time.update'), insert_ms)");
  }
  // Only active sessions can expire or be online: the two expiry queries (idle, too long) and
  // the "online" count walk these, never the ended sessions that pile up over time.
  db.exec("CREATE INDEX IF NOT EXISTS sessions_active_by_activity ON sessions (active_ms) WHERE status = 'active'");
  db.exec("CREATE INDEX IF NOT EXISTS sessions_active_by_insert ON sessions (insert_ms) WHERE status = 'active'");
}

/** SQLite result codes that mean "cannot be reached / did not answer", not a bug. */
const UNAVAILABLE_CODES = /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|PROTOCOL|NOTADB|CORRUPT)/;

interface StatsRow {
  key: unknown;
  n: number;
  online: number;
}

/** The SQL of each StatsField: the indexed column where there is one, else the JSON path. */
const STATS_COLUMNS: Record<StatsField, string> = {
  channel: "channel",
  status: "status",
  device_type: "json_extract(doc, '$.device.type')",
  os_name: "json_extract(doc, '$.os.name')",
  app_name: "json_extract(doc, '$.app.name')",
  country_code: "json_extract(doc, '$.device.geo.country.code')",
  utm_source: "json_extract(doc, '$.utm.source')",
};

interface DocRow {
  doc: string;
  revision: number;
}

interface ChangeRow {
  revision: number;
  id: string;
  kind: ChangeKind;
  /** null only if the log is inconsistent (no document and no session row). */
  doc: string | null;
  /** The revision of the session row whose document `doc` is ('' and null when doc is the row's own). */
  session_revision: number | null;
  before_profile_id: string | null;
  before_status: string | null;
  before_channel: string | null;
}

/** A write waiting for the next group commit. `run` executes inside the batch's transaction. */
interface PendingWrite {
  run: () => unknown;
  /** A create: it leaves its change row and visit row to the batch (see the header). */
  create: boolean;
  deadlineMs: number;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

export class SqliteEngine implements SessionStore {
  readonly kind = "sqlite";
  /**
   * A write batch failed for a reason of the store (busy, I/O, disk full) and no write has
   * succeeded since: the write probe then commits for real (see probeWrite).
   */
  private writeFailed = false;
  /** The file the write probe writes to (see probeWrite), opened on first use. */
  private probeFd: number | undefined;

  private closed = false;
  private commits = 0;
  private checkpointer: { worker: Worker; exited: Promise<void> } | undefined;
  private pending: PendingWrite[] = [];
  /** List statements, prepared on first use per combination of filters. */
  private readonly listStatements = new Map<string, Database.Statement<unknown[], DocRow>>();

  private readonly readRevisionStmt: Database.Statement<[], number>;
  private readonly writeRevisionStmt: Database.Statement<[number]>;
  /** During a batch: the last revision handed out (to a write that succeeded). */
  private revision = 0;
  /** During a write of a batch: it has changed the database (a failure now fails the batch). */
  private modified = false;
  /** During a batch: the change rows of its creates not inserted yet, 3 values each (revision, id, at_ms). */
  private deferredChanges: (number | string)[] = [];
  /** During a batch: the visit rows of its creates not inserted yet, 3 values each (profile_id, idx, session_id). */
  private deferredVisits: (number | string)[] = [];
  /** During a batch: the last visit number it handed out per profile, and to which session. */
  private readonly batchVisits = new Map<string, { idx: number; session_id: string }>();
  /** Multi-row INSERTs of deferred rows, by table and row count. */
  private readonly multiInsertStatements = new Map<string, Database.Statement<unknown[]>>();
  private readonly selectByIdStmt: Database.Statement<[string], DocRow>;
  private readonly selectByRequestIdStmt: Database.Statement<[string], DocRow>;
  private readonly insertStmt: Database.Statement<unknown[]>;
  private readonly updateStmt: Database.Statement<unknown[]>;
  private readonly deleteStmt: Database.Statement<[string]>;
  private readonly insertChangeStmt: Database.Statement<[number, string, ChangeKind, string, number, string | null, string | null, string | null]>;
  private readonly keepChangeDocStmt: Database.Statement<[string, number]>;
  private readonly headStmt: Database.Statement<[], { revision: number; trimmed_through: number }>;
  private readonly changesStmt: Database.Statement<[number, number, number], ChangeRow>;
  private readonly trimStmt: Database.Transaction<(beforeMs: number) => number>;
  private readonly commitListeners = new Set<() => void>();
  private readonly pingStmt: Database.Statement<[], number>;
  private readonly topVisitStmt: Database.Statement<[string], { idx: number; session_id: string }>;
  private readonly insertVisitStmt: Database.Statement<[string, number, string]>;
  private readonly idleStmt: Database.Statement<[number, number], DocRow>;
  private readonly tooLongStmt: Database.Statement<[number, number], DocRow>;
  /** Stats statements, prepared on first use per combination of filters and grouping. */
  private readonly statsStatements = new Map<string, Database.Statement<unknown[], StatsRow>>();

  /** Runs a batch in one transaction (BEGIN IMMEDIATE when called as .immediate). */
  private readonly batchTx: Database.Transaction<(batch: PendingWrite[]) => Outcome[]>;

  /** Creates the file if needed and brings its schema up to date, then closes it again. */
  static setUp(file: string): void {
    SqliteEngine.openFile(file).db.close();
  }

  /** Opens (creating if needed) the database file, with its schema up to date. */
  static openFile(file: string): SqliteEngine {
    const dataDir = path.dirname(file);
    let db: Database.Database | undefined;
    try {
      fs.mkdirSync(dataDir, { recursive: true });
      db = new Database(file, { timeout: BUSY_TIMEOUT_MS });
      const mode = db.pragma("journal_mode = WAL", { simple: true });
      if (mode !== "wal") throw new Error(`journal_mode is "${String(mode)}", WAL is required`);
      db.pragma("synchronous = NORMAL");
      db.exec("BEGIN IMMEDIATE");
      db.exec(SCHEMA);
      migrate(db);
      db.exec("COMMIT");
      return new SqliteEngine(db, file);
    } catch (err) {
      db?.close();
      throw new StoreUnavailableError(`cannot open the SQLite store at ${file}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * A read-only connection to a file that `openFile` has set up (WAL, schema): for reader
   * threads. In WAL mode its reads never wait for writers, of this process or another.
   */
  static attach(file: string): SqliteEngine {
    let db: Database.Database | undefined;
    try {
      db = new Database(file, { readonly: true, fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
      return new SqliteEngine(db, file);
    } catch (err) {
      db?.close();
      throw new StoreUnavailableError(`cannot open the SQLite store at ${file}: ${(err as Error).message}`, { cause: err });
    }
  }

  private constructor(
    private readonly db: Database.Database,
    private readonly file: string,
  ) {
    this.readRevisionStmt = db.prepare<[], number>("SELECT revision FROM meta WHERE id = 1").pluck();
    this.writeRevisionStmt = db.prepare<[number]>("UPDATE meta SET revision = ? WHERE id = 1");
    this.selectByIdStmt = db.prepare<[string], DocRow>("SELECT doc, revision FROM sessions WHERE id = ?");
    this.selectByRequestIdStmt = db.prepare<[string], DocRow>("SELECT doc, revision FROM sessions WHERE request_id = ?");
    this.insertStmt = db.prepare(
      `INSERT INTO sessions (id, doc, revision, profile_id, status, channel, insert_ms, request_id, active_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
    );
    this.updateStmt = db.prepare(
      "UPDATE sessions SET doc = ?, revision = ?, profile_id = ?, status = ?, channel = ?, insert_ms = ?, active_ms = ? WHERE id = ?",
    );
    this.topVisitStmt = db.prepare<[string], { idx: number; session_id: string }>(
      "SELECT idx, session_id FROM visits WHERE profile_id = ? ORDER BY idx DESC LIMIT 1",
    );
    this.insertVisitStmt = db.prepare<[string, number, string]>("INSERT INTO visits (profile_id, idx, session_id) VALUES (?, ?, ?)");
    this.idleStmt = db.prepare<[number, number], DocRow>("SELECT doc, revision FROM sessions WHERE status = 'active' AND active_ms < ? LIMIT ?");
    this.tooLongStmt = db.prepare<[number, number], DocRow>("SELECT doc, revision FROM sessions WHERE status = 'active' AND insert_ms < ? LIMIT ?");
    this.deleteStmt = db.prepare<[string]>("DELETE FROM sessions WHERE id = ?");
    this.insertChangeStmt = db.prepare(
      `INSERT INTO changes (revision, id, kind, doc, at_ms, before_profile_id, before_status, before_channel)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    // Before a session row changes: its latest change row (if not trimmed) gets the document.
    this.keepChangeDocStmt = db.prepare<[string, number]>("UPDATE changes SET doc = ? WHERE revision = ? AND doc = ''");
    this.headStmt = db.prepare<[], { revision: number; trimmed_through: number }>("SELECT revision, trimmed_through FROM meta WHERE id = 1");
    this.changesStmt = db.prepare<[number, number, number], ChangeRow>(
      `SELECT c.revision, c.id, c.kind, iif(c.doc = '', s.doc, c.doc) AS doc, s.revision AS session_revision,
              c.before_profile_id, c.before_status, c.before_channel
       FROM changes c LEFT JOIN sessions s ON c.doc = '' AND s.id = c.id
       WHERE c.revision > ? AND c.revision <= ? ORDER BY c.revision LIMIT ?`,
    );
    // The changes before the first one at or after the bound: a scan in revision order that
    // reads only the rows it is about to delete (plus one). Without such a row, all of them.
    const trimThrough = db.prepare<[number], number>(
      "SELECT coalesce((SELECT revision FROM changes WHERE at_ms >= ? ORDER BY revision LIMIT 1) - 1, (SELECT max(revision) FROM changes))",
    ).pluck();
    const setTrimmed = db.prepare<[number]>("UPDATE meta SET trimmed_through = max(trimmed_through, ?) WHERE id = 1");
    const deleteChanges = db.prepare<[number]>("DELETE FROM changes WHERE revision <= ?");
    this.trimStmt = db.transaction((beforeMs: number): number => {
      const through = trimThrough.get(beforeMs) as number | null;
      if (through !== null) {
        setTrimmed.run(through);
        deleteChanges.run(through);
      }
      return this.headStmt.get()!.trimmed_through;
    });
    this.pingStmt = db.prepare<[], number>("SELECT 1").pluck();

    this.batchTx = db.transaction((batch: PendingWrite[]): Outcome[] => {
      const now = Date.now();
      // Under BEGIN IMMEDIATE: no other connection can hand out revisions until COMMIT.
      const first = (this.revision = this.readRevisionStmt.get() as number);
      this.deferredChanges = [];
      this.deferredVisits = [];
      this.batchVisits.clear();
      const outcomes = batch.map((write): Outcome => {
        if (write.deadlineMs <= now) return { ok: false, error: deadlineExceeded() };
        // Updates and deletes read and amend change rows (and visits): the creates' go in first.
        // A failure here fails the batch (it comes from writes that changed something).
        if (!write.create) this.insertDeferred();
        this.modified = false;
        try {
          return { ok: true, value: write.run() };
        } catch (error) {
          // Failed after changing something, or SQLite aborted the transaction (disk full,
          // I/O): fail the batch, its transaction rolls back.
          if (this.modified || !db.inTransaction) throw error;
          return { ok: false, error };
        }
      });
      this.insertDeferred();
      this.batchVisits.clear();
      if (this.revision !== first) this.writeRevisionStmt.run(this.revision);
      return outcomes;
    });
  }

  async create(doc: SessionDoc, options?: CreateOptions): Promise<CreateResult> {
    // Our own copy, taken now: the write runs later, in the next group commit.
    const session = cloneDoc(doc);
    const visitIn = options?.numberVisitIn;
    // With visit numbering the document is only complete inside the write.
    let json = visitIn === undefined ? toJson(session) : "";
    const requestId = options?.requestId ?? null;
    // The replayed session when requestId repeats an earlier create, else the new revision.
    const outcome = await this.write<SessionDoc | number>(options, () => {
      if (requestId !== null) {
        const replayed = this.selectByRequestIdStmt.get(requestId);
        if (replayed) return fromRow(replayed);
      }
      const revision = this.revision + 1;
      if (visitIn !== undefined) {
        this.numberVisit(session, visitIn);
        json = toJson(session);
      }
      const m = session.metadata;
      const t = m.time;
      const inserted = this.insertStmt.run(session.id, json, revision, session.profile?.id ?? null, m.status, m.channel, t.insert.getTime(), requestId, activeMs(session));
      if (inserted.changes === 0) throw new AlreadyExistsError(session.id);
      this.modified = true;
      // Both rows go in with the batch's (see the header). The change row has doc = '': the
      // document is the session row's until the session changes again.
      if (visitIn !== undefined) this.deferVisit(visitIn, session.session_index, session.id);
      this.deferredChanges.push(revision, session.id, Date.now());
      return (this.revision = revision);
    }, true);
    if (typeof outcome !== "number") return { session: outcome, created: false };
    session.revision = outcome;
    return { session, created: true };
  }

  async get(id: string, options?: CallOptions): Promise<SessionDoc> {
    return this.read(options, () => {
      const row = this.selectByIdStmt.get(id);
      if (!row) throw new NotFoundError(id);
      return fromRow(row);
    });
  }

  async update(id: string, patch: SessionPatch, options?: UpdateOptions): Promise<SessionDoc> {
    const expected = options?.expectedRevision;
    const visitIn = options?.numberVisitIn;
    return this.write(options, () => {
      const row = this.selectByIdStmt.get(id);
      if (!row) throw new NotFoundError(id);
      if (expected !== undefined && expected !== row.revision) throw new RevisionConflictError(id, expected, row.revision);
      const before = fromRow(row);
      const doc = applyPatch(before, patch);
      if (doc.id !== id) throw new Error(`patch must not change the session id ("${id}" to "${doc.id}")`);
      if (visitIn !== undefined) this.numberVisit(doc, visitIn);
      const json = toJson(doc);
      const revision = this.revision + 1;
      const m = doc.metadata;
      const bm = before.metadata;
      this.keepChangeDocStmt.run(row.doc, row.revision);
      this.modified = true;
      this.updateStmt.run(json, revision, doc.profile?.id ?? null, m.status, m.channel, m.time.insert.getTime(), activeMs(doc), id);
      this.insertChangeStmt.run(revision, id, "updated", "", Date.now(), before.profile?.id ?? null, bm.status, bm.channel);
      if (visitIn !== undefined) {
        this.insertVisitStmt.run(visitIn, doc.session_index, id);
        this.batchVisits.set(visitIn, { idx: doc.session_index, session_id: id });
      }
      doc.revision = this.revision = revision;
      return doc;
    });
  }

  async delete(id: string, options?: ConditionalOptions): Promise<{ revision: number }> {
    const expected = options?.expectedRevision;
    return this.write(options, () => {
      const row = this.selectByIdStmt.get(id);
      if (row === undefined) throw new NotFoundError(id);
      if (expected !== undefined && expected !== row.revision) throw new RevisionConflictError(id, expected, row.revision);
      const revision = this.revision + 1;
      const last = fromRow(row);
      const lm = last.metadata;
      this.keepChangeDocStmt.run(row.doc, row.revision);
      this.modified = true;
      this.deleteStmt.run(id);
      this.insertChangeStmt.run(revision, id, "deleted", row.doc, Date.now(), last.profile?.id ?? null, lm.status, lm.channel);
      this.revision = revision;
      return { revision };
    });
  }

  async list(query: ListQuery, options?: CallOptions): Promise<SessionDoc[]> {
    return this.read(options, () => {
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
      return stmt.all(...params).map(fromRow);
    });
  }

  async findExpired(query: ExpiryQuery, options?: CallOptions): Promise<SessionDoc[]> {
    return this.read(options, () => {
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
    });
  }

  async stats(query: StatsQuery, options?: CallOptions): Promise<StatsResult> {
    return this.read(options, () => {
      const { where, params } = filterTerms(query);
      params.unshift(query.onlineSince.getTime());
      const key = query.groupBy === undefined ? "NULL" : STATS_COLUMNS[query.groupBy];
      const sql =
        `SELECT ${key} AS key, count(*) AS n, coalesce(sum(status = 'active' AND active_ms >= ?), 0) AS online FROM sessions` +
        (where.length > 0 ? ` WHERE ${where.join(" AND ")}` : "") +
        (query.groupBy === undefined ? "" : " GROUP BY key");
      let stmt = this.statsStatements.get(sql);
      if (!stmt) {
        stmt = this.db.prepare<unknown[], StatsRow>(sql);
        this.statsStatements.set(sql, stmt);
      }
      const rows = stmt.all(...params);
      const result: StatsResult = { total: 0, groups: [], online: 0 };
      for (const row of rows) {
        result.total += row.n;
        result.online += row.online;
        if (query.groupBy !== undefined) result.groups.push({ key: row.key === null ? null : String(row.key), count: row.n });
      }
      return result;
    });
  }

  async readChanges(after: number, limit: number, options?: CallOptions): Promise<ChangeBatch> {
    return this.read(options, () => {
      // The counter first: every revision up to it is committed together with its change row,
      // so reading up to it can never skip a change that commits later.
      const head = this.headStmt.get()!;
      if (after < head.trimmed_through) throw new ChangesTrimmedError(after, head.trimmed_through);
      const rows = this.changesStmt.all(after, head.revision, limit);
      const changes = rows.map(fromChangeRow);
      const safeRevision = rows.length === limit && rows.length > 0 ? rows[rows.length - 1].revision : Math.max(after, head.revision);
      return { changes, safeRevision };
    });
  }

  async headRevision(options?: CallOptions): Promise<number> {
    return this.read(options, () => this.headStmt.get()!.revision);
  }

  /**
   * A read sees only committed writes, and each commits together with its revision in `meta`:
   * the head read after the snapshot's reads is at or above every write they could have seen.
   */
  async snapshotRevision(options?: CallOptions): Promise<number> {
    return this.headRevision(options);
  }

  async trimChanges(before: Date, options?: CallOptions): Promise<number> {
    return this.read(options, () => this.trimStmt.immediate(before.getTime()));
  }

  onCommit(listener: () => void): () => void {
    this.commitListeners.add(listener);
    return () => this.commitListeners.delete(listener);
  }

  async ping(options?: CallOptions): Promise<void> {
    this.read(options, () => this.pingStmt.get());
  }

  /**
   * The write check of health: takes the write lock (BEGIN IMMEDIATE), waiting for it at most
   * until the deadline, and lets it go. While writes are failing (see writeFailed) it commits a
   * no-op write instead, so that only a write that reached the file ends the failure. And it
   * fails while the file system has less than MIN_FREE_BYTES free: on a full disk taking the
   * lock works, and even a one-page commit may fit in WAL space a failed write left allocated,
   * while real writes fail. Last, it writes one byte to `<file>-probe`: taking the lock only
   * touches shared memory, so on a frozen file system (fsfreeze, a hung network disk) it would
   * succeed while every commit hangs; the write blocks there too (this thread, not the event
   * loop), so the probe does not answer in time. Throws StoreUnavailableError when it cannot.
   */
  probeWrite(options?: CallOptions): void {
    this.checkCallable(options);
    const remaining = (options?.deadline?.getTime() ?? Infinity) - Date.now();
    const bounded = remaining < BUSY_TIMEOUT_MS;
    if (bounded) this.db.pragma(`busy_timeout = ${Math.max(0, Math.ceil(remaining))}`);
    try {
      this.db.exec("BEGIN IMMEDIATE");
      if (this.writeFailed) {
        this.db.exec("UPDATE meta SET revision = revision WHERE id = 1");
        this.db.exec("COMMIT");
        this.writeFailed = false;
      } else {
        this.db.exec("ROLLBACK");
      }
      this.probeFd ??= fs.openSync(`${this.file}-probe`, "w");
      fs.writeSync(this.probeFd, PROBE_BYTE, 0, 1, 0);
      const { bavail, bsize } = fs.statfsSync(path.dirname(this.file));
      if (bavail * bsize < MIN_FREE_BYTES) {
        throw new StoreUnavailableError(`SQLite store: the file system of ${this.file} is full (${bavail * bsize} bytes free)`);
      }
    } catch (err) {
      if (this.db.inTransaction) this.db.exec("ROLLBACK");
      const error = toStoreError(err);
      throw error instanceof DomainError ? error : new StoreUnavailableError(`SQLite store: ${(err as Error).message}`, { cause: err });
    } finally {
      if (bounded) this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
  }

  /** Commits writes already issued, then closes the file. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    // The checkpointer closes its connection first, so that closing the last one (ours)
    // checkpoints and removes the WAL.
    if (this.checkpointer) {
      const { worker, exited } = this.checkpointer;
      worker.postMessage("close");
      const timeout = setTimeout(() => void worker.terminate(), 5000);
      await exited;
      clearTimeout(timeout);
    }
    this.db.close();
    if (this.probeFd !== undefined) fs.closeSync(this.probeFd);
  }

  /** Inside a write: gives `doc` the next visit number of `profileId` (read before any change). */
  private numberVisit(doc: SessionDoc, profileId: string): void {
    const top = this.batchVisits.get(profileId) ?? this.topVisitStmt.get(profileId);
    doc.session_index = (top?.idx ?? 0) + 1;
    doc.previous_session_id = top?.session_id ?? null;
  }

  /** Inside a create: its visit row goes in with the batch's; later writes of the batch see its number. */
  private deferVisit(profileId: string, idx: number, sessionId: string): void {
    this.deferredVisits.push(profileId, idx, sessionId);
    this.batchVisits.set(profileId, { idx, session_id: sessionId });
  }

  /** Inside a batch: inserts the deferred change and visit rows of its creates so far. */
  private insertDeferred(): void {
    if (this.deferredChanges.length > 0) {
      const rows = this.deferredChanges;
      this.deferredChanges = [];
      this.insertRows("changes", rows, "(?, ?, 'created', '', ?, NULL, NULL, NULL)", "INSERT INTO changes (revision, id, kind, doc, at_ms, before_profile_id, before_status, before_channel) VALUES ");
    }
    if (this.deferredVisits.length > 0) {
      const rows = this.deferredVisits;
      this.deferredVisits = [];
      this.insertRows("visits", rows, "(?, ?, ?)", "INSERT INTO visits (profile_id, idx, session_id) VALUES ");
    }
  }

  /** Multi-row INSERTs of `values` (3 per row), at most MULTI_INSERT_ROWS rows per statement. */
  private insertRows(table: string, values: (number | string)[], row: string, head: string): void {
    for (let at = 0; at < values.length; at += 3 * MULTI_INSERT_ROWS) {
      const chunk = values.length - at <= 3 * MULTI_INSERT_ROWS ? (at === 0 ? values : values.slice(at)) : values.slice(at, at + 3 * MULTI_INSERT_ROWS);
      const n = chunk.length / 3;
      const key = `${table} ${n}`;
      let stmt = this.multiInsertStatements.get(key);
      if (!stmt) {
        stmt = this.db.prepare<unknown[]>(head + Array<string>(n).fill(row).join(", "));
        this.multiInsertStatements.set(key, stmt);
      }
      stmt.run(chunk);
    }
  }

  /** A read runs at once: in WAL mode it never waits for a writer. */
  private read<T>(options: CallOptions | undefined, run: () => T): T {
    this.checkCallable(options);
    try {
      return run();
    } catch (err) {
      throw toStoreError(err);
    }
  }

  /** Queues a write for the next group commit; settles once that transaction has committed. */
  private write<T>(options: CallOptions | undefined, run: () => T, create = false): Promise<T> {
    this.checkCallable(options);
    return new Promise<T>((resolve, reject) => {
      const deadlineMs = options?.deadline?.getTime() ?? Infinity;
      this.pending.push({ run, create, deadlineMs, resolve: resolve as (value: unknown) => void, reject });
      // setImmediate runs after the I/O callbacks of this loop turn, so the writes of all
      // requests that arrived together share the commit.
      if (this.pending.length === 1) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    let outcomes: Outcome[];
    try {
      outcomes = this.withLockTimeout(batch, () => this.batchTx.immediate(batch));
    } catch (err) {
      // Nothing of the batch was committed: a write failed after changing something, or
      // BEGIN or COMMIT failed.
      const error = toStoreError(err);
      if (error instanceof StoreUnavailableError) this.writeFailed = true;
      for (const write of batch) write.reject(error);
      return;
    }
    if (outcomes.some((o) => o.ok)) this.writeFailed = false;
    outcomes.forEach((outcome, i) => {
      if (outcome.ok) batch[i].resolve(outcome.value);
      else batch[i].reject(toStoreError(outcome.error));
    });
    if (outcomes.some((o) => o.ok)) for (const listener of this.commitListeners) listener();
    if (++this.commits === CHECKPOINTER_AFTER_COMMITS) this.startCheckpointer();
  }

  private startCheckpointer(): void {
    let worker: Worker;
    try {
      worker = new Worker(CHECKPOINTER_SCRIPT, {
        eval: true,
        workerData: { driver: require.resolve("better-sqlite3"), file: this.file, intervalMs: CHECKPOINT_INTERVAL_MS, restartFrames: RESTART_WAL_FRAMES },
      });
    } catch {
      return; // The writer keeps checkpointing by itself.
    }
    // The thread must neither keep the process alive nor take it down.
    worker.unref();
    const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
    worker.on("error", () => {
      // Without the thread, the writer checkpoints by itself at SQLite's default size again.
      if (!this.closed) this.db.pragma("wal_autocheckpoint = 1000");
    });
    this.checkpointer = { worker, exited };
    this.db.pragma(`wal_autocheckpoint = ${BACKSTOP_CHECKPOINT_PAGES}`);
  }

  /** Waits for another connection's write lock only as long as the most patient write allows. */
  private withLockTimeout<T>(batch: PendingWrite[], run: () => T): T {
    const latest = batch.reduce((max, w) => Math.max(max, w.deadlineMs), -Infinity);
    const remaining = latest - Date.now();
    if (remaining >= BUSY_TIMEOUT_MS) return run();
    this.db.pragma(`busy_timeout = ${Math.max(0, Math.ceil(remaining))}`);
    try {
      return run();
    } finally {
      this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
  }

  private checkCallable(options: CallOptions | undefined): void {
    if (this.closed) throw new StoreUnavailableError("the SQLite store is closed");
    if (options?.deadline !== undefined && options.deadline.getTime() <= Date.now()) throw deadlineExceeded();
  }
}

/** The WHERE terms (and their parameters) of the filters listings and statistics share. */
function filterTerms(query: { profileId?: string; status?: string; channel?: string; insertFrom?: Date }): { where: string[]; params: unknown[] } {
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
  if (query.insertFrom !== undefined) {
    where.push("insert_ms >= ?");
    params.push(query.insertFrom.getTime());
  }
  return { where, params };
}

function deadlineExceeded(): StoreUnavailableError {
  return new StoreUnavailableError("the deadline passed before the store could run the call");
}

function toStoreError(err: unknown): unknown {
  if (err instanceof DomainError) return err;
  if (err instanceof Database.SqliteError && UNAVAILABLE_CODES.test(err.code)) {
    return new StoreUnavailableError(`SQLite store: ${err.message}`, { cause: err });
  }
  return err;
}

// Serialization. The document is stored as JSON; its three Dates (metadata.time.insert, create,
// update) are written as epoch milliseconds and revived on read. Everything else is JSON already.
// The revision lives in its own column and is not part of the JSON.

function toJson(doc: SessionDoc): string {
  const m = doc.metadata;
  const t = m.time;
  return JSON.stringify({
    ...doc,
    metadata: { ...m, time: { ...t, insert: toMs(t.insert), create: toMs(t.create), update: toMs(t.update) } },
    revision: undefined, // JSON.stringify drops undefined members
  });
}

function fromRow(row: DocRow): SessionDoc {
  const doc = JSON.parse(row.doc) as SessionDoc;
  const t = doc.metadata.time;
  t.insert = fromMs(t.insert)!;
  t.create = fromMs(t.create);
  t.update = fromMs(t.update);
  doc.revision = row.revision;
  // Documents written before the lifecycle fields existed (2026-11-27) get their empty values.
  if (doc.activity === undefined) {
    doc.session_index = 0;
    doc.previous_session_id = null;
    doc.activity = emptyActivity();
    doc.merged_from_profile_ids = [];
  }
  return doc;
}

/** The latest activity: metadata.time.update, else insert (epoch ms). */
function activeMs(doc: SessionDoc): number {
  const t = doc.metadata.time;
  return (t.update ?? t.insert).getTime();
}

function fromChangeRow(row: ChangeRow): ChangeRecord {
  // A change row without a document points at its session row, which must still be at it.
  if (row.session_revision !== null && row.session_revision !== row.revision) {
    throw new Error(`change log: change ${row.revision} of session "${row.id}" has no document (the session is at ${row.session_revision})`);
  }
  if (row.doc === null) throw new Error(`change log: change ${row.revision} of session "${row.id}" has no document (the session is gone)`);
  const before: FilterFields | null =
    row.before_status === null ? null : { profileId: row.before_profile_id, status: row.before_status, channel: row.before_channel ?? "" };
  return { revision: row.revision, kind: row.kind, id: row.id, doc: fromRow({ doc: row.doc, revision: row.revision }), before };
}

function toMs(date: Date | null): number | null {
  return date === null ? null : date.getTime();
}

function fromMs(ms: unknown): Date | null {
  return typeof ms === "number" ? new Date(ms) : null;
}
