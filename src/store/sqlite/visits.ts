// Visit numbering inside write batches. A write that numbers a visit reads the profile's top
// number before it changes anything. A create leaves its visit row to the batch (inserted with
// the others in one multi-row INSERT, see batch.ts); an update inserts its row at once. The
// numbers a batch hands out are remembered per profile for the rest of the batch (the deferred
// rows are not in the table yet); the batch holds the write lock, so nobody else can take a
// number in between.

import type Database from "better-sqlite3";

import type { SessionDoc } from "../../domain/session";

interface TopVisit {
  idx: number;
  session_id: string;
}

export class Visits {
  /** During a batch: the visit rows of its creates not inserted yet, 3 values each (profile_id, idx, session_id). */
  private deferred: (number | string)[] = [];
  /** During a batch: the last visit number it handed out per profile, and to which session. */
  private readonly batchVisits = new Map<string, TopVisit>();
  private readonly topVisitStmt: Database.Statement<[string], TopVisit>;
  private readonly insertVisitStmt: Database.Statement<[string, number, string]>;

  constructor(db: Database.Database) {
    this.topVisitStmt = db.prepare<[string], TopVisit>("SELECT idx, session_id FROM visits WHERE profile_id = ? ORDER BY idx DESC LIMIT 1");
    this.insertVisitStmt = db.prepare<[string, number, string]>("INSERT INTO visits (profile_id, idx, session_id) VALUES (?, ?, ?)");
  }

  /** A batch begins: nothing deferred, no number handed out yet. */
  startBatch(): void {
    this.deferred = [];
    this.batchVisits.clear();
  }

  /** The batch has inserted its deferred rows: the table holds every number again. */
  endBatch(): void {
    this.batchVisits.clear();
  }

  /** Inside a write: gives `doc` the next visit number of `profileId` (read before any change). */
  number(doc: SessionDoc, profileId: string): void {
    const top = this.batchVisits.get(profileId) ?? this.topVisitStmt.get(profileId);
    doc.session_index = (top?.idx ?? 0) + 1;
    doc.previous_session_id = top?.session_id ?? null;
  }

  /** Inside a create: its visit row goes in with the batch's; later writes of the batch see its number. */
  defer(profileId: string, idx: number, sessionId: string): void {
    this.deferred.push(profileId, idx, sessionId);
    this.batchVisits.set(profileId, { idx, session_id: sessionId });
  }

  /** Inside an update: inserts its visit row now; later writes of the batch see its number. */
  insert(profileId: string, idx: number, sessionId: string): void {
    this.insertVisitStmt.run(profileId, idx, sessionId);
    this.batchVisits.set(profileId, { idx, session_id: sessionId });
  }

  /** The deferred rows so far (3 values each), handed over for insertion. */
  takeDeferred(): (number | string)[] {
    const rows = this.deferred;
    this.deferred = [];
    return rows;
  }
}
