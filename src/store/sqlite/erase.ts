// Erasure on the embedded store (EraseProfile; the contract: "Erasure" in src/domain/store.ts).
// Both steps are writes of the group commit (batch.ts): each runs inside one write transaction
// and is bounded by its `limit`, so a profile with 100k sessions is erased in many short
// transactions and never holds the writer for long; a crash loses at most the step under way.
//
// Where a session's personal data lives, and what eraseSessions does with it, in the same
// transaction:
// - its row in `sessions` (with its idempotency key, request_id): deleted;
// - its change rows (documents, before-fields): found by the changes_by_id index and turned into
//   tombstones (kind 'deleted', erased = 1, doc '-', no before-fields), those after the last
//   plain delete of the id only (an earlier session with the same id is someone else's);
// - its visit row: deleted.
// Then it logs the erasure as a change row of its own (erased = 1, with the before-fields, so
// that live watchers filtered by the profile see it) and notes that row in `erasures`, the
// work list of eraseTraces: it clears those before-fields, and removes the profile's other
// visit rows (numbers taken by sessions that moved to other profiles), once no session of the
// profile is left.

import type Database from "better-sqlite3";

import type { SessionDoc } from "../../domain/session";
import type { EraseSessionsResult, EraseTracesResult } from "../../domain/store";
import type { GroupCommit } from "./batch";
import { fromRow, type DocRow } from "./codec";
import type { StatsCounts } from "./counts";

interface SessionRow extends DocRow {
  id: string;
}

export class SqliteErasure {
  private readonly selectSessionsStmt: Database.Statement<[string, number], SessionRow>;
  private readonly scrubHistoryStmt: Database.Statement<[{ id: string }]>;
  private readonly deleteSessionStmt: Database.Statement<[string]>;
  private readonly insertErasedStmt: Database.Statement<[number, string, number, string | null, string, string, string | null]>;
  private readonly noteErasureStmt: Database.Statement<[string, number]>;
  private readonly deleteVisitStmt: Database.Statement<[string, number, string]>;
  private readonly anySessionStmt: Database.Statement<[string], number>;
  private readonly pendingStmt: Database.Statement<[string, number], number>;
  private readonly clearBeforeStmt: Database.Statement<[number]>;
  private readonly doneErasureStmt: Database.Statement<[string, number]>;
  private readonly deleteVisitsStmt: Database.Statement<[string, string, number]>;

  constructor(
    db: Database.Database,
    private readonly batch: GroupCommit,
    private readonly counts: StatsCounts,
  ) {
    // Oldest first, by the sessions_by_profile index.
    this.selectSessionsStmt = db.prepare("SELECT id, doc, revision FROM sessions WHERE profile_id = ? ORDER BY insert_ms, id LIMIT ?");
    this.scrubHistoryStmt = db.prepare(
      `UPDATE changes SET kind = 'deleted', doc = '-', erased = 1, before_profile_id = NULL, before_status = NULL, before_channel = NULL,
         before_channel_group = NULL
       WHERE id = @id AND erased = 0
         AND revision > coalesce((SELECT max(revision) FROM changes WHERE id = @id AND kind = 'deleted' AND erased = 0), 0)`,
    );
    this.deleteSessionStmt = db.prepare("DELETE FROM sessions WHERE id = ?");
    this.insertErasedStmt = db.prepare(
      `INSERT INTO changes (revision, id, kind, doc, at_ms, before_profile_id, before_status, before_channel, before_channel_group, erased)
       VALUES (?, ?, 'deleted', '-', ?, ?, ?, ?, ?, 1)`,
    );
    this.noteErasureStmt = db.prepare("INSERT OR IGNORE INTO erasures (profile_id, revision) VALUES (?, ?)");
    this.deleteVisitStmt = db.prepare("DELETE FROM visits WHERE profile_id = ? AND idx = ? AND session_id = ?");
    this.anySessionStmt = db
      .prepare<[string], number>("SELECT count(*) FROM (SELECT 1 FROM sessions WHERE profile_id = ? LIMIT 1)")
      .pluck();
    this.pendingStmt = db.prepare<[string, number], number>("SELECT revision FROM erasures WHERE profile_id = ? LIMIT ?").pluck();
    this.clearBeforeStmt = db.prepare(
      "UPDATE changes SET before_profile_id = NULL, before_status = NULL, before_channel = NULL, before_channel_group = NULL WHERE revision = ? AND erased = 1",
    );
    this.doneErasureStmt = db.prepare("DELETE FROM erasures WHERE profile_id = ? AND revision = ?");
    this.deleteVisitsStmt = db.prepare(
      "DELETE FROM visits WHERE profile_id = ? AND idx IN (SELECT idx FROM visits WHERE profile_id = ? LIMIT ?)",
    );
  }

  /** Inside a write: the first step (see the header). */
  eraseSessions(profileId: string, limit: number): EraseSessionsResult {
    // Every check and read before the first modification (batch.ts).
    const rows = this.selectSessionsStmt.all(profileId, Math.max(1, limit));
    const docs: SessionDoc[] = rows.map(fromRow);
    if (docs.length === 0) return { erased: 0, revision: 0, more: false };
    const atMs = Date.now();
    this.batch.modified = true;
    let revision = this.batch.revision;
    for (const doc of docs) {
      revision++;
      this.scrubHistoryStmt.run({ id: doc.id });
      this.deleteSessionStmt.run(doc.id);
      const group = doc.traffic?.channel_group ?? null;
      this.insertErasedStmt.run(revision, doc.id, atMs, profileId, doc.metadata.status, doc.metadata.channel, group);
      this.noteErasureStmt.run(profileId, revision);
      if (doc.session_index > 0) this.deleteVisitStmt.run(profileId, doc.session_index, doc.id);
      this.counts.deleted(doc);
    }
    this.batch.revision = revision;
    return { erased: docs.length, revision, more: docs.length >= Math.max(1, limit) };
  }

  /** Inside a write: the second step (see the header). */
  eraseTraces(profileId: string, limit: number): EraseTracesResult {
    if (this.anySessionStmt.get(profileId) !== 0) return { done: false, sessionsLeft: true };
    const n = Math.max(1, limit);
    const pending = this.pendingStmt.all(profileId, n);
    this.batch.modified = true;
    for (const revision of pending) {
      this.clearBeforeStmt.run(revision);
      this.doneErasureStmt.run(profileId, revision);
    }
    const visits = this.deleteVisitsStmt.run(profileId, profileId, n).changes;
    return { done: pending.length < n && visits < n, sessionsLeft: false };
  }
}
