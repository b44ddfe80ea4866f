// Group commit: the writes issued in one event-loop turn of the writer thread commit together in
// one BEGIN IMMEDIATE transaction. A commit costs about as much as the pages it writes, and
// concurrent writes share most of their pages (table tails, index tails, the counter row). Every
// write call resolves only after its transaction has committed. BEGIN IMMEDIATE takes the write
// lock before reading, so with several processes on one file revisions are still handed out and
// committed in one serialized step and follow commit order.
//
// A failing write never affects the others, without savepoints: every write makes all its checks
// (reads, typed errors, patching, serializing) before its first modifying statement, and SQLite
// undoes a failed statement by itself. So a write that fails before or at its first modification
// has changed nothing (it sets `modified` right before), and the batch goes on. A failure after
// that (only I/O, disk full and the like) fails the whole batch: the transaction rolls back and
// every write of it rejects. (Savepoints cost a statement journal: temp-file writes per create.)
//
// Revisions: a batch reads the counter once, hands out the next values to its successful writes
// in order, and stores the last one with one UPDATE before COMMIT.
//
// A create inserts its session row at once (that statement is what can fail: a taken id), and
// leaves its change row and its visit row to the batch: they go in with one multi-row INSERT each,
// before the next update or delete of the batch runs (those read and amend change rows and
// visits) and before COMMIT, so every commit still holds them.

import type Database from "better-sqlite3";

import { StoreUnavailableError } from "../../domain/errors";
import type { ChangeLog } from "./changes";
import type { StatsCounts } from "./counts";
import { deadlineExceeded, toStoreError } from "./errors";
import { BUSY_TIMEOUT_MS } from "./schema";
import type { Visits } from "./visits";

/** Rows per multi-row INSERT of a batch's deferred change and visit rows (3 parameters each). */
const MULTI_INSERT_ROWS = 64;

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

export interface BatchEvents {
  /** After a batch in which at least one write committed. */
  committed(): void;
  /** After every batch whose transaction ran to its end (even if each of its writes failed). */
  ran(): void;
}

export class GroupCommit {
  /** During a batch: the last revision handed out (to a write that succeeded). */
  revision = 0;
  /** During a write of a batch: it has changed the database (a failure now fails the batch). */
  modified = false;
  /**
   * A write batch failed for a reason of the store (busy, I/O, disk full) and no write has
   * succeeded since: the write probe then commits for real (see SqliteEngine.probeWrite).
   */
  writeFailed = false;
  private pending: PendingWrite[] = [];
  /** Multi-row INSERTs of deferred rows, by table and row count. */
  private readonly multiInsertStatements = new Map<string, Database.Statement<unknown[]>>();
  private readonly readRevisionStmt: Database.Statement<[], number>;
  private readonly writeRevisionStmt: Database.Statement<[number]>;
  /** Runs a batch in one transaction (BEGIN IMMEDIATE when called as .immediate). */
  private readonly batchTx: Database.Transaction<(batch: PendingWrite[]) => Outcome[]>;

  constructor(
    private readonly db: Database.Database,
    private readonly changes: ChangeLog,
    private readonly visits: Visits,
    private readonly counts: StatsCounts,
    private readonly events: BatchEvents,
  ) {
    this.readRevisionStmt = db.prepare<[], number>("SELECT revision FROM meta WHERE id = 1").pluck();
    this.writeRevisionStmt = db.prepare<[number]>("UPDATE meta SET revision = ? WHERE id = 1");
    this.batchTx = db.transaction((batch: PendingWrite[]): Outcome[] => {
      const now = Date.now();
      // Under BEGIN IMMEDIATE: no other connection can hand out revisions until COMMIT.
      const first = (this.revision = this.readRevisionStmt.get() as number);
      this.changes.startBatch();
      this.visits.startBatch();
      this.counts.startBatch();
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
      this.visits.endBatch();
      // The statistics counts of the batch's writes (counts.ts), in the same transaction.
      this.counts.endBatch();
      if (this.revision !== first) this.writeRevisionStmt.run(this.revision);
      return outcomes;
    });
  }

  /** Queues a write for the next group commit; settles once that transaction has committed. */
  add<T>(deadlineMs: number, run: () => T, create: boolean): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ run, create, deadlineMs, resolve: resolve as (value: unknown) => void, reject });
      // setImmediate runs after the I/O callbacks of this loop turn, so the writes of all
      // requests that arrived together share the commit.
      if (this.pending.length === 1) setImmediate(() => this.flush());
    });
  }

  /** Runs the pending writes in one transaction and settles each. */
  flush(): void {
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
    if (outcomes.some((o) => o.ok)) this.events.committed();
    this.events.ran();
  }

  /** Inside a batch: inserts the deferred change and visit rows of its creates so far. */
  private insertDeferred(): void {
    const changes = this.changes.takeDeferred();
    if (changes.length > 0) {
      this.insertRows(
        "changes",
        changes,
        "(?, ?, 'created', '', ?, NULL, NULL, NULL)",
        "INSERT INTO changes (revision, id, kind, doc, at_ms, before_profile_id, before_status, before_channel) VALUES ",
      );
    }
    const visits = this.visits.takeDeferred();
    if (visits.length > 0) {
      this.insertRows("visits", visits, "(?, ?, ?)", "INSERT INTO visits (profile_id, idx, session_id) VALUES ");
    }
  }

  /** Multi-row INSERTs of `values` (3 per row), at most MULTI_INSERT_ROWS rows per statement. */
  private insertRows(table: string, values: (number | string)[], row: string, head: string): void {
    for (let at = 0; at < values.length; at += 3 * MULTI_INSERT_ROWS) {
      const chunk =
        values.length - at <= 3 * MULTI_INSERT_ROWS ? (at === 0 ? values : values.slice(at)) : values.slice(at, at + 3 * MULTI_INSERT_ROWS);
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
}
