// The change log read by WatchSessions: one row per committed write in `changes`, written in the
// same transaction as the write, with the revision handed out by the batch (batch.ts).
//
// A change row stores its document only when the sessions table no longer holds it: the row of a
// session's latest change has doc = '' and its post-image is the session row (same revision).
// The next update or delete of the session first copies the document into that row (keepDoc).
// So a create writes its JSON once, and trimming may drop any change row. Files in which every
// change row holds its document open as they are; code that writes every change row with its
// document must not write to a file shared with this code (it would overwrite a session without
// the copy).
//
// A reader reads the counter (`meta`) first and the rows up to it: every revision up to the
// counter is committed together with its change row, so it never skips a change that commits
// later. Trimming removes rows older than a time and records how far it went (trimmed_through),
// so that a reader asking for trimmed changes gets ChangesTrimmedError.

import type Database from "better-sqlite3";

import { ChangesTrimmedError } from "../../domain/errors";
import { CHANGES_READ_BYTES, type ChangeBatch, type ChangeKind } from "../../domain/store";
import { fromChangeRow, type ChangeRow } from "./codec";

interface Head {
  revision: number;
  trimmed_through: number;
}

export class ChangeLog {
  /** During a batch: the change rows of its creates not inserted yet, 3 values each (revision, id, at_ms). */
  private deferred: (number | string)[] = [];
  private readonly insertChangeStmt: Database.Statement<
    [number, string, ChangeKind, string, number, string | null, string | null, string | null, string | null]
  >;
  private readonly keepChangeDocStmt: Database.Statement<[string, number]>;
  private readonly headStmt: Database.Statement<[], Head>;
  private readonly changesStmt: Database.Statement<[number, number, number], ChangeRow>;
  private readonly trimStmt: Database.Transaction<(beforeMs: number) => number>;

  constructor(db: Database.Database) {
    this.insertChangeStmt = db.prepare(
      `INSERT INTO changes (revision, id, kind, doc, at_ms, before_profile_id, before_status, before_channel, before_channel_group)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    // Before a session row changes: its latest change row (if not trimmed) gets the document.
    this.keepChangeDocStmt = db.prepare<[string, number]>("UPDATE changes SET doc = ? WHERE revision = ? AND doc = ''");
    this.headStmt = db.prepare<[], Head>("SELECT revision, trimmed_through FROM meta WHERE id = 1");
    this.changesStmt = db.prepare<[number, number, number], ChangeRow>(
      `SELECT c.revision, c.id, c.kind, iif(c.doc = '', s.doc, c.doc) AS doc, s.revision AS session_revision,
              c.before_profile_id, c.before_status, c.before_channel, c.before_channel_group, c.erased
       FROM changes c LEFT JOIN sessions s ON c.doc = '' AND s.id = c.id
       WHERE c.revision > ? AND c.revision <= ? ORDER BY c.revision LIMIT ?`,
    );
    // The changes before the first one at or after the bound: a scan in revision order that
    // reads only the rows it is about to delete (plus one). Without such a row, all of them.
    const trimThrough = db
      .prepare<[number], number>(
        "SELECT coalesce((SELECT revision FROM changes WHERE at_ms >= ? ORDER BY revision LIMIT 1) - 1, (SELECT max(revision) FROM changes))",
      )
      .pluck();
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
  }

  /** Inside a write: the change row of an update or delete (doc '' while the session row holds it). */
  insert(
    revision: number,
    id: string,
    kind: ChangeKind,
    doc: string,
    atMs: number,
    beforeProfileId: string | null,
    beforeStatus: string | null,
    beforeChannel: string | null,
    beforeChannelGroup: string | null,
  ): void {
    this.insertChangeStmt.run(revision, id, kind, doc, atMs, beforeProfileId, beforeStatus, beforeChannel, beforeChannelGroup);
  }

  /** Inside a write, before the session row changes: its latest change row keeps the document `doc`. */
  keepDoc(doc: string, revision: number): void {
    this.keepChangeDocStmt.run(doc, revision);
  }

  /** A batch begins: no create's row is deferred. */
  startBatch(): void {
    this.deferred = [];
  }

  /** Inside a create: its change row ('created', doc '') goes in with the batch's (batch.ts). */
  deferCreated(revision: number, id: string, atMs: number): void {
    this.deferred.push(revision, id, atMs);
  }

  /** The deferred rows so far (3 values each), handed over for insertion. */
  takeDeferred(): (number | string)[] {
    const rows = this.deferred;
    this.deferred = [];
    return rows;
  }

  /** The changes after `after`, up to `limit` of them and about CHANGES_READ_BYTES of JSON (see the header). */
  read(after: number, limit: number): ChangeBatch {
    // The counter first: every revision up to it is committed together with its change row,
    // so reading up to it can never skip a change that commits later.
    const head = this.headStmt.get()!;
    if (after < head.trimmed_through) throw new ChangesTrimmedError(after, head.trimmed_through);
    const rows: ChangeRow[] = [];
    let bytes = 0;
    for (const row of this.changesStmt.iterate(after, head.revision, limit)) {
      rows.push(row);
      bytes += row.doc?.length ?? 0;
      if (bytes >= CHANGES_READ_BYTES) break;
    }
    const cut = rows.length === limit || bytes >= CHANGES_READ_BYTES;
    const safeRevision = cut && rows.length > 0 ? rows[rows.length - 1].revision : Math.max(after, head.revision);
    return { changes: rows.map(fromChangeRow), safeRevision };
  }

  /** The last revision handed out (and committed). */
  head(): number {
    return this.headStmt.get()!.revision;
  }

  /** Removes the changes made before `beforeMs`, in its own write transaction; answers trimmed_through. */
  trim(beforeMs: number): number {
    return this.trimStmt.immediate(beforeMs);
  }
}

/** The listeners of onCommit, told after each write transaction that committed a write. */
export class CommitListeners {
  private readonly listeners = new Set<() => void>();

  add(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  notify(): void {
    for (const listener of this.listeners) listener();
  }
}
