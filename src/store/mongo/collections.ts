// The collections of the database and their indexes (what each holds: docs/mongodb.md). Indexes
// are created at connect, idempotently (stable names), one per createIndexes command because
// FerretDB drops the connection when one command names several existing indexes (docs/mongodb.md).

import type { Collection, Db, IndexDescription, WriteConcernSettings } from "mongodb";

import type { TrimMark, Outcome } from "./changes";
import type { StoredSession } from "./codec";
import type { Reservation } from "./reservations";
import type { VisitClaim } from "./visits";

const SESSIONS = "sessions";
const REVISIONS = "revisions";
const CHANGES = "changes";
const TRIMS = "change_trims";
const VISITS = "visits";
export const DEFAULT_WRITE_CONCERN: WriteConcernSettings = { w: "majority", journal: true };

/** The field path of the insert time (listing order, ranges, retention). */
export const INSERT = "metadata.time.insert";

/** Every query of the adapter has an index; names are stable so creation is idempotent. */
export const SESSION_INDEXES: IndexDescription[] = [
  { name: "profile_insert", key: { "profile.id": 1, [INSERT]: -1, _id: -1 } },
  { name: "status_insert", key: { "metadata.status": 1, [INSERT]: -1, _id: -1 } },
  { name: "channel_insert", key: { "metadata.channel": 1, [INSERT]: -1, _id: -1 } },
  { name: "channel_group_insert", key: { "traffic.channel_group": 1, [INSERT]: -1, _id: -1 } },
  { name: "insert", key: { [INSERT]: -1, _id: -1 } },
  { name: "revision", key: { revision: 1 } },
  // Lifecycle: idle expiry and "online now" ($or on update, or insert while update is null).
  { name: "status_activity", key: { "metadata.status": 1, "metadata.time.update": 1, [INSERT]: 1 } },
  // Sparse, not partial: FerretDB has no partialFilterExpression (docs/mongodb.md).
  { name: "request_id", key: { request_id: 1 }, unique: true, sparse: true },
];
// By session id: erasure turns a session's entries into tombstones (erase.ts).
const REVISION_INDEXES: IndexDescription[] = [
  { name: "key", key: { key: 1 }, unique: true, sparse: true },
  { name: "id", key: { id: 1 } },
];
const CHANGE_INDEXES: IndexDescription[] = [
  { name: "at", key: { at: 1 } },
  { name: "id", key: { id: 1 } },
];

/** The adapter's collections, with the configured write concern. */
export interface MongoCollections {
  sessions: Collection<StoredSession>;
  /** One reservation per revision handed out (reservations.ts). */
  revisions: Collection<Reservation>;
  /** The change log: one outcome per reservation (changes.ts). */
  changes: Collection<Outcome>;
  /** How far the change log has been trimmed. */
  trims: Collection<TrimMark>;
  /** Visit numbering: one claim per number taken (visits.ts). */
  visits: Collection<VisitClaim>;
}

export function openCollections(db: Db, writeConcern: WriteConcernSettings): MongoCollections {
  return {
    sessions: db.collection<StoredSession>(SESSIONS, { writeConcern }),
    revisions: db.collection<Reservation>(REVISIONS, { writeConcern }),
    changes: db.collection<Outcome>(CHANGES, { writeConcern }),
    trims: db.collection<TrimMark>(TRIMS, { writeConcern }),
    visits: db.collection<VisitClaim>(VISITS, { writeConcern }),
  };
}

/** Creates the indexes that do not exist yet, one per command (see the header). */
export async function createIndexes(collections: MongoCollections): Promise<void> {
  for (const index of SESSION_INDEXES) await collections.sessions.createIndexes([index]);
  for (const index of REVISION_INDEXES) await collections.revisions.createIndexes([index]);
  for (const index of CHANGE_INDEXES) await collections.changes.createIndexes([index]);
}
