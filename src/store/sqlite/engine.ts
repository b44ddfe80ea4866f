// The embedded store's engine: the synchronous SQLite logic (better-sqlite3) of one connection.
// It runs inside worker threads (worker.ts), never on the service's event loop: the SessionStore
// the service uses is the proxy in index.ts, which explains why. One writer thread runs an engine
// opened with `openFile` (every write, group commit, trimming, the checkpointer and the write
// probe of health); reader threads run engines opened with `attach` (read-only connections: get,
// list, stats, findExpired, readChanges, headRevision).
//
// The parts: schema.ts (tables, connection settings), batch.ts (group commit, revisions),
// changes.ts (the change log), visits.ts (visit numbering), queries.ts (listings, expiry),
// counts.ts and stats.ts (maintained counts and the statistics read from them), codec.ts (documents <-> rows), checkpoint.ts (the checkpointer thread), errors.ts
// (typed errors). This class composes them and holds the writes themselves: each makes all its
// checks before its first modifying statement (see batch.ts for why).
//
// better-sqlite3 is synchronous: a call blocks its thread while it runs, including while it
// waits for another process's write lock; that thread is a worker's, not the service's.

import fs from "node:fs";
import path from "node:path";
import type Database from "better-sqlite3";

import { AlreadyExistsError, DomainError, NotFoundError, RevisionConflictError, StoreUnavailableError } from "../../domain/errors";
import type { SessionDoc } from "../../domain/session";
import type {
  CallOptions,
  ChangeBatch,
  ConditionalOptions,
  CreateOptions,
  CreateResult,
  EraseSessionsResult,
  EraseTracesResult,
  ExpiryQuery,
  ListQuery,
  SessionPatch,
  SessionStore,
  StatsQuery,
  StatsResult,
  UpdateOptions,
} from "../../domain/store";
import { applyPatch, cloneDoc } from "../patch";
import { GroupCommit } from "./batch";
import { ChangeLog, CommitListeners } from "./changes";
import { Checkpointer } from "./checkpoint";
import { activeMs, fromRow, toJson, type DocRow } from "./codec";
import { SqliteErasure } from "./erase";
import { deadlineExceeded, toStoreError } from "./errors";
import { StatsCounts } from "./counts";
import { Queries } from "./queries";
import { BUSY_TIMEOUT_MS, openReadOnly, openReadWrite } from "./schema";
import { Stats } from "./stats";
import { Visits } from "./visits";

/**
 * Free space (bytes) under which the write probe fails: the file system is as good as full (a
 * session can be hundreds of KB; a commit also needs room for its WAL frames).
 */
export const MIN_FREE_BYTES = 1024 * 1024;
const PROBE_BYTE = Buffer.from([0]);

export class SqliteEngine implements SessionStore {
  readonly kind = "sqlite";
  /** The file the write probe writes to (see probeWrite), opened on first use. */
  private probeFd: number | undefined;
  private closed = false;

  private readonly changes: ChangeLog;
  private readonly visits: Visits;
  private readonly batch: GroupCommit;
  private readonly queries: Queries;
  private readonly statsReader: Stats;
  private readonly counts: StatsCounts;
  private readonly checkpointer: Checkpointer;
  private readonly erasure: SqliteErasure;
  private readonly commitListeners = new CommitListeners();

  private readonly selectByIdStmt: Database.Statement<[string], DocRow>;
  private readonly selectByRequestIdStmt: Database.Statement<[string], DocRow>;
  private readonly insertStmt: Database.Statement<unknown[]>;
  private readonly updateStmt: Database.Statement<unknown[]>;
  private readonly deleteStmt: Database.Statement<[string]>;
  private readonly pingStmt: Database.Statement<[], number>;

  /** Creates the file if needed and brings its schema up to date, then closes it again. */
  static setUp(file: string): void {
    SqliteEngine.openFile(file).db.close();
  }

  /** Opens (creating if needed) the database file, with its schema up to date. */
  static openFile(file: string): SqliteEngine {
    let db: Database.Database | undefined;
    try {
      db = openReadWrite(file);
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
      db = openReadOnly(file);
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
    this.selectByIdStmt = db.prepare<[string], DocRow>("SELECT doc, revision FROM sessions WHERE id = ?");
    this.selectByRequestIdStmt = db.prepare<[string], DocRow>("SELECT doc, revision FROM sessions WHERE request_id = ?");
    this.insertStmt = db.prepare(
      `INSERT INTO sessions (id, doc, revision, profile_id, status, channel, insert_ms, request_id, active_ms, channel_group)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
    );
    this.updateStmt = db.prepare(
      "UPDATE sessions SET doc = ?, revision = ?, profile_id = ?, status = ?, channel = ?, insert_ms = ?, active_ms = ?, channel_group = ? WHERE id = ?",
    );
    this.deleteStmt = db.prepare<[string]>("DELETE FROM sessions WHERE id = ?");
    this.pingStmt = db.prepare<[], number>("SELECT 1").pluck();
    this.changes = new ChangeLog(db);
    this.visits = new Visits(db);
    this.queries = new Queries(db);
    this.statsReader = new Stats(db);
    this.counts = new StatsCounts(db);
    this.checkpointer = new Checkpointer(db, file);
    this.batch = new GroupCommit(db, this.changes, this.visits, this.counts, {
      committed: () => this.commitListeners.notify(),
      ran: () => this.checkpointer.afterBatch(),
    });
    this.erasure = new SqliteErasure(db, this.batch, this.counts);
  }

  async create(doc: SessionDoc, options?: CreateOptions): Promise<CreateResult> {
    // Our own copy, taken now: the write runs later, in the next group commit.
    const session = cloneDoc(doc);
    const visitIn = options?.numberVisitIn;
    // With visit numbering the document is only complete inside the write.
    let json = visitIn === undefined ? toJson(session) : "";
    const requestId = options?.requestId ?? null;
    // The replayed session when requestId repeats an earlier create, else the new revision.
    const outcome = await this.write<SessionDoc | number>(
      options,
      () => {
        if (requestId !== null) {
          const replayed = this.selectByRequestIdStmt.get(requestId);
          if (replayed) return fromRow(replayed);
        }
        const revision = this.batch.revision + 1;
        if (visitIn !== undefined) {
          this.visits.number(session, visitIn);
          json = toJson(session);
        }
        const m = session.metadata;
        const t = m.time;
        const inserted = this.insertStmt.run(
          session.id,
          json,
          revision,
          session.profile?.id ?? null,
          m.status,
          m.channel,
          t.insert.getTime(),
          requestId,
          activeMs(session),
          session.traffic?.channel_group ?? null,
        );
        if (inserted.changes === 0) throw new AlreadyExistsError(session.id);
        this.batch.modified = true;
        this.counts.created(session);
        // Both rows go in with the batch's (see batch.ts). The change row has doc = '': the
        // document is the session row's until the session changes again (see changes.ts).
        if (visitIn !== undefined) this.visits.defer(visitIn, session.session_index, session.id);
        this.changes.deferCreated(revision, session.id, Date.now());
        return (this.batch.revision = revision);
      },
      true,
    );
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
      if (visitIn !== undefined) this.visits.number(doc, visitIn);
      const json = toJson(doc);
      const revision = this.batch.revision + 1;
      const m = doc.metadata;
      const bm = before.metadata;
      this.changes.keepDoc(row.doc, row.revision);
      this.batch.modified = true;
      const group = doc.traffic?.channel_group ?? null;
      this.updateStmt.run(json, revision, doc.profile?.id ?? null, m.status, m.channel, m.time.insert.getTime(), activeMs(doc), group, id);
      const beforeGroup = before.traffic?.channel_group ?? null;
      this.changes.insert(revision, id, "updated", "", Date.now(), before.profile?.id ?? null, bm.status, bm.channel, beforeGroup);
      this.counts.updated(before, doc);
      if (visitIn !== undefined) this.visits.insert(visitIn, doc.session_index, id);
      doc.revision = this.batch.revision = revision;
      return doc;
    });
  }

  async delete(id: string, options?: ConditionalOptions): Promise<{ revision: number }> {
    const expected = options?.expectedRevision;
    return this.write(options, () => {
      const row = this.selectByIdStmt.get(id);
      if (row === undefined) throw new NotFoundError(id);
      if (expected !== undefined && expected !== row.revision) throw new RevisionConflictError(id, expected, row.revision);
      const revision = this.batch.revision + 1;
      const last = fromRow(row);
      const lm = last.metadata;
      this.changes.keepDoc(row.doc, row.revision);
      this.batch.modified = true;
      this.deleteStmt.run(id);
      const lastGroup = last.traffic?.channel_group ?? null;
      this.changes.insert(revision, id, "deleted", row.doc, Date.now(), last.profile?.id ?? null, lm.status, lm.channel, lastGroup);
      this.counts.deleted(last);
      this.batch.revision = revision;
      return { revision };
    });
  }

  async eraseSessions(profileId: string, limit: number, options?: CallOptions): Promise<EraseSessionsResult> {
    return this.write(options, () => this.erasure.eraseSessions(profileId, limit));
  }

  async eraseTraces(profileId: string, limit: number, options?: CallOptions): Promise<EraseTracesResult> {
    return this.write(options, () => this.erasure.eraseTraces(profileId, limit));
  }

  async list(query: ListQuery, options?: CallOptions): Promise<SessionDoc[]> {
    return this.read(options, () => this.queries.list(query));
  }

  async findExpired(query: ExpiryQuery, options?: CallOptions): Promise<SessionDoc[]> {
    return this.read(options, () => this.queries.findExpired(query));
  }

  async stats(query: StatsQuery, options?: CallOptions): Promise<StatsResult> {
    return this.read(options, () => this.statsReader.stats(query));
  }

  async readChanges(after: number, limit: number, options?: CallOptions): Promise<ChangeBatch> {
    return this.read(options, () => this.changes.read(after, limit));
  }

  async headRevision(options?: CallOptions): Promise<number> {
    return this.read(options, () => this.changes.head());
  }

  /**
   * A read sees only committed writes, and each commits together with its revision in `meta`:
   * the head read after the snapshot's reads is at or above every write they could have seen.
   */
  async snapshotRevision(options?: CallOptions): Promise<number> {
    return this.headRevision(options);
  }

  async trimChanges(before: Date, options?: CallOptions): Promise<number> {
    return this.read(options, () => this.changes.trim(before.getTime()));
  }

  onCommit(listener: () => void): () => void {
    return this.commitListeners.add(listener);
  }

  async ping(options?: CallOptions): Promise<void> {
    this.read(options, () => this.pingStmt.get());
  }

  /**
   * The write check of health: takes the write lock (BEGIN IMMEDIATE), waiting for it at most
   * until the deadline, and lets it go. While writes are failing (see GroupCommit.writeFailed)
   * it commits a no-op write instead, so that only a write that reached the file ends the
   * failure. And it fails while the file system has less than MIN_FREE_BYTES free: on a full
   * disk taking the lock works, and even a one-page commit may fit in WAL space a failed write
   * left allocated, while real writes fail. Last, it writes one byte to `<file>-probe`: taking
   * the lock only touches shared memory, so on a frozen file system (fsfreeze, a hung network
   * disk) it would succeed while every commit hangs; the write blocks there too (this thread,
   * not the event loop), so the probe does not answer in time. Throws StoreUnavailableError
   * when it cannot.
   */
  probeWrite(options?: CallOptions): void {
    this.checkCallable(options);
    const remaining = (options?.deadline?.getTime() ?? Infinity) - Date.now();
    const bounded = remaining < BUSY_TIMEOUT_MS;
    if (bounded) this.db.pragma(`busy_timeout = ${Math.max(0, Math.ceil(remaining))}`);
    try {
      this.db.exec("BEGIN IMMEDIATE");
      if (this.batch.writeFailed) {
        this.db.exec("UPDATE meta SET revision = revision WHERE id = 1");
        this.db.exec("COMMIT");
        this.batch.writeFailed = false;
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
    this.batch.flush();
    this.closed = true;
    // The checkpointer closes its connection first, so that closing the last one (ours)
    // checkpoints and removes the WAL.
    await this.checkpointer.close();
    this.db.close();
    if (this.probeFd !== undefined) fs.closeSync(this.probeFd);
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
    return this.batch.add(options?.deadline?.getTime() ?? Infinity, run, create);
  }

  private checkCallable(options: CallOptions | undefined): void {
    if (this.closed) throw new StoreUnavailableError("the SQLite store is closed");
    if (options?.deadline !== undefined && options.deadline.getTime() <= Date.now()) throw deadlineExceeded();
  }
}
