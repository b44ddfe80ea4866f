// The embedded default store: one SQLite file (better-sqlite3) in the data directory.
//
// Durability: WAL journal with synchronous=NORMAL. A call that has resolved survives a crash or
// kill -9 of the process (the transaction is in the WAL file). Power loss or an OS crash may lose
// the last transactions before the next checkpoint; synchronous=FULL would prevent that at the
// cost of an fsync per write.
//
// Several processes may share the file: every write runs in a BEGIN IMMEDIATE transaction, which
// takes the write lock before reading, so the store-wide revision (the `meta` row) is taken and
// committed in one serialized step and revisions follow commit order.
//
// better-sqlite3 is synchronous; the methods are async only to fit the port. A call blocks the
// event loop while it runs, including while it waits for another process's write lock.

import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";

import { DomainError, NotFoundError, AlreadyExistsError, RevisionConflictError, StoreUnavailableError } from "../domain/errors";
import type { SessionDoc } from "../domain/session";
import { applyPatch, cloneDoc } from "./patch";
import type {
  CallOptions,
  ConditionalOptions,
  CreateOptions,
  CreateResult,
  ListQuery,
  SessionPatch,
  SessionStore,
} from "./port";

/** How long a call waits for another connection's write lock (unless its deadline is sooner). */
const BUSY_TIMEOUT_MS = 5000;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS sessions (
    id         TEXT PRIMARY KEY,
    doc        TEXT NOT NULL,     -- JSON of the SessionDoc without revision, dates as epoch ms
    revision   INTEGER NOT NULL,
    profile_id TEXT,
    status     TEXT NOT NULL,
    channel    TEXT NOT NULL,
    insert_ms  INTEGER NOT NULL,
    request_id TEXT UNIQUE        -- idempotency key of the create, NULL when none was given
  );
  CREATE INDEX IF NOT EXISTS sessions_by_profile ON sessions (profile_id, insert_ms, id);
  CREATE INDEX IF NOT EXISTS sessions_by_status  ON sessions (status, insert_ms, id);
  CREATE INDEX IF NOT EXISTS sessions_by_channel ON sessions (channel, insert_ms, id);
  CREATE INDEX IF NOT EXISTS sessions_by_insert  ON sessions (insert_ms, id);
  CREATE INDEX IF NOT EXISTS sessions_by_revision ON sessions (revision);

  -- The store-wide revision counter: the last revision handed out.
  CREATE TABLE IF NOT EXISTS meta (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
  );
  INSERT OR IGNORE INTO meta (id, revision) VALUES (1, 0);

  -- One row per committed write, in the same transaction (read by WatchSessions).
  -- doc has the format of sessions.doc (revision is the row's revision); NULL for deletions.
  CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY,
    id       TEXT NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('created', 'updated', 'deleted')),
    doc      TEXT,
    at_ms    INTEGER NOT NULL
  );
`;

/** SQLite result codes that mean "cannot be reached / did not answer", not a bug. */
const UNAVAILABLE_CODES = /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|PROTOCOL|NOTADB|CORRUPT)/;

interface DocRow {
  doc: string;
  revision: number;
}

type ChangeKind = "created" | "updated" | "deleted";

export class SqliteSessionStore implements SessionStore {
  readonly kind = "sqlite";

  private closed = false;
  /** List statements, prepared on first use per combination of filters. */
  private readonly listStatements = new Map<string, Database.Statement<unknown[], DocRow>>();

  private readonly nextRevisionStmt: Database.Statement<[], number>;
  private readonly selectByIdStmt: Database.Statement<[string], DocRow>;
  private readonly selectRevisionStmt: Database.Statement<[string], number>;
  private readonly selectByRequestIdStmt: Database.Statement<[string], DocRow>;
  private readonly insertStmt: Database.Statement<unknown[]>;
  private readonly updateStmt: Database.Statement<unknown[]>;
  private readonly deleteStmt: Database.Statement<[string]>;
  private readonly insertChangeStmt: Database.Statement<[number, string, ChangeKind, string | null, number]>;
  private readonly pingStmt: Database.Statement<[], number>;

  private readonly createTx: Database.Transaction<(doc: SessionDoc, json: string, requestId: string | null) => SessionDoc | number>;
  private readonly updateTx: Database.Transaction<(id: string, patch: SessionPatch, expected: number | undefined) => SessionDoc>;
  private readonly deleteTx: Database.Transaction<(id: string, expected: number | undefined) => number>;

  /** Opens (creating if needed) `<dataDir>/sessions.db`. */
  static open(dataDir: string): SqliteSessionStore {
    const file = path.join(dataDir, "sessions.db");
    let db: Database.Database | undefined;
    try {
      fs.mkdirSync(dataDir, { recursive: true });
      db = new Database(file, { timeout: BUSY_TIMEOUT_MS });
      const mode = db.pragma("journal_mode = WAL", { simple: true });
      if (mode !== "wal") throw new Error(`journal_mode is "${String(mode)}", WAL is required`);
      db.pragma("synchronous = NORMAL");
      db.exec(`BEGIN IMMEDIATE; ${SCHEMA} COMMIT;`);
      return new SqliteSessionStore(db);
    } catch (err) {
      db?.close();
      throw new StoreUnavailableError(`cannot open the SQLite store at ${file}: ${(err as Error).message}`, { cause: err });
    }
  }

  private constructor(private readonly db: Database.Database) {
    this.nextRevisionStmt = db.prepare<[], number>("UPDATE meta SET revision = revision + 1 WHERE id = 1 RETURNING revision").pluck();
    this.selectByIdStmt = db.prepare<[string], DocRow>("SELECT doc, revision FROM sessions WHERE id = ?");
    this.selectRevisionStmt = db.prepare<[string], number>("SELECT revision FROM sessions WHERE id = ?").pluck();
    this.selectByRequestIdStmt = db.prepare<[string], DocRow>("SELECT doc, revision FROM sessions WHERE request_id = ?");
    this.insertStmt = db.prepare(
      `INSERT INTO sessions (id, doc, revision, profile_id, status, channel, insert_ms, request_id)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
    );
    this.updateStmt = db.prepare(
      "UPDATE sessions SET doc = ?, revision = ?, profile_id = ?, status = ?, channel = ?, insert_ms = ? WHERE id = ?",
    );
    this.deleteStmt = db.prepare<[string]>("DELETE FROM sessions WHERE id = ?");
    this.insertChangeStmt = db.prepare("INSERT INTO changes (revision, id, kind, doc, at_ms) VALUES (?, ?, ?, ?, ?)");
    this.pingStmt = db.prepare<[], number>("SELECT 1").pluck();

    // Returns the stored session when `requestId` replays an earlier create, else the new revision.
    this.createTx = db.transaction((doc: SessionDoc, json: string, requestId: string | null): SessionDoc | number => {
      if (requestId !== null) {
        const replayed = this.selectByRequestIdStmt.get(requestId);
        if (replayed) return fromRow(replayed);
      }
      const revision = this.nextRevision();
      const m = doc.metadata;
      const inserted = this.insertStmt.run(doc.id, json, revision, doc.profile?.id ?? null, m.status, m.channel, m.time.insert.getTime(), requestId);
      // Throwing rolls the transaction back, the revision counter included.
      if (inserted.changes === 0) throw new AlreadyExistsError(doc.id);
      this.insertChangeStmt.run(revision, doc.id, "created", json, Date.now());
      return revision;
    });

    this.updateTx = db.transaction((id: string, patch: SessionPatch, expected: number | undefined): SessionDoc => {
      const row = this.selectByIdStmt.get(id);
      if (!row) throw new NotFoundError(id);
      if (expected !== undefined && expected !== row.revision) throw new RevisionConflictError(id, expected, row.revision);
      const doc = applyPatch(fromRow(row), patch);
      if (doc.id !== id) throw new Error(`patch must not change the session id ("${id}" to "${doc.id}")`);
      const json = toJson(doc);
      const revision = this.nextRevision();
      const m = doc.metadata;
      this.updateStmt.run(json, revision, doc.profile?.id ?? null, m.status, m.channel, m.time.insert.getTime(), id);
      this.insertChangeStmt.run(revision, id, "updated", json, Date.now());
      doc.revision = revision;
      return doc;
    });

    this.deleteTx = db.transaction((id: string, expected: number | undefined): number => {
      const current = this.selectRevisionStmt.get(id);
      if (current === undefined) throw new NotFoundError(id);
      if (expected !== undefined && expected !== current) throw new RevisionConflictError(id, expected, current);
      const revision = this.nextRevision();
      this.deleteStmt.run(id);
      this.insertChangeStmt.run(revision, id, "deleted", null, Date.now());
      return revision;
    });
  }

  async create(doc: SessionDoc, options?: CreateOptions): Promise<CreateResult> {
    return this.call(options, () => {
      const json = toJson(doc); // serialized before taking the write lock
      const outcome = this.createTx.immediate(doc, json, options?.requestId ?? null);
      if (typeof outcome !== "number") return { session: outcome, created: false };
      const session = cloneDoc(doc);
      session.revision = outcome;
      return { session, created: true };
    });
  }

  async get(id: string, options?: CallOptions): Promise<SessionDoc> {
    return this.call(options, () => {
      const row = this.selectByIdStmt.get(id);
      if (!row) throw new NotFoundError(id);
      return fromRow(row);
    });
  }

  async update(id: string, patch: SessionPatch, options?: ConditionalOptions): Promise<SessionDoc> {
    return this.call(options, () => this.updateTx.immediate(id, patch, options?.expectedRevision));
  }

  async delete(id: string, options?: ConditionalOptions): Promise<{ revision: number }> {
    return this.call(options, () => ({ revision: this.deleteTx.immediate(id, options?.expectedRevision) }));
  }

  async list(query: ListQuery, options?: CallOptions): Promise<SessionDoc[]> {
    return this.call(options, () => {
      const where: string[] = [];
      const params: unknown[] = [];
      if (query.profileId !== undefined) {
        where.push("profile_id = ?");
        params.push(query.profileId);
      }
      if (query.status !== undefined) {
        where.push("status = ?");
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
      if (query.insertTo !== undefined) {
        where.push("insert_ms < ?");
        params.push(query.insertTo.getTime());
      }
      if (query.after !== undefined) {
        // Keyset paging: strictly after the cursor in (insert_ms desc, id desc) order.
        where.push("(insert_ms, id) <= (?, ?)");
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

  async ping(options?: CallOptions): Promise<void> {
    this.call(options, () => this.pingStmt.get());
  }

  async close(): Promise<void> {
    // Idempotent: closing a closed store resolves.
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  private nextRevision(): number {
    return this.nextRevisionStmt.get() as number;
  }

  /** Runs one call: refuses after close or past the deadline, and turns SQLite outages into StoreUnavailableError. */
  private call<T>(options: CallOptions | undefined, fn: () => T): T {
    if (this.closed) throw new StoreUnavailableError("the SQLite store is closed");
    const deadline = options?.deadline;
    try {
      if (deadline === undefined) return fn();
      const remaining = deadline.getTime() - Date.now();
      if (remaining <= 0) throw new StoreUnavailableError("deadline exceeded before the store was called");
      if (remaining >= BUSY_TIMEOUT_MS) return fn();
      // Wait for another connection's lock no longer than the deadline allows.
      this.db.pragma(`busy_timeout = ${Math.ceil(remaining)}`);
      try {
        return fn();
      } finally {
        this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      }
    } catch (err) {
      throw toStoreError(err);
    }
  }
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
  return doc;
}

function toMs(date: Date | null): number | null {
  return date === null ? null : date.getTime();
}

function fromMs(ms: unknown): Date | null {
  return typeof ms === "number" ? new Date(ms) : null;
}
