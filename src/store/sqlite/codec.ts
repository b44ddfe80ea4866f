// SessionDoc <-> rows. The document is stored as JSON; its three Dates (metadata.time.insert,
// create, update) are written as epoch milliseconds and revived on read. Everything else is JSON
// already. The revision lives in its own column and is not part of the JSON.

import { erasedDoc } from "../../domain/erasure";
import { emptyActivity, type SessionDoc } from "../../domain/session";
import type { ChangeKind, ChangeRecord, FilterFields } from "../../domain/store";

/** A session row as the reads select it. */
export interface DocRow {
  doc: string;
  revision: number;
}

/** A change row joined with its session row (see ChangeLog). */
export interface ChangeRow {
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
  before_channel_group: string | null;
  /** 1: a tombstone of an erased session (erase.ts). */
  erased: number;
}

export function toJson(doc: SessionDoc): string {
  const m = doc.metadata;
  const t = m.time;
  return JSON.stringify({
    ...doc,
    metadata: { ...m, time: { ...t, insert: toMs(t.insert), create: toMs(t.create), update: toMs(t.update) } },
    revision: undefined, // JSON.stringify drops undefined members
  });
}

export function fromRow(row: DocRow): SessionDoc {
  const doc = JSON.parse(row.doc) as SessionDoc;
  const t = doc.metadata.time;
  t.insert = fromMs(t.insert)!;
  t.create = fromMs(t.create);
  t.update = fromMs(t.update);
  doc.revision = row.revision;
  // Documents written before the lifecycle fields existed get their empty values.
  if (doc.activity === undefined) {
    doc.session_index = 0;
    doc.previous_session_id = null;
    doc.activity = emptyActivity();
    doc.merged_from_profile_ids = [];
  }
  // Sessions stored before traffic was classified have none.
  doc.traffic ??= null;
  return doc;
}

/** The latest activity: metadata.time.update, else insert (epoch ms). */
export function activeMs(doc: SessionDoc): number {
  const t = doc.metadata.time;
  return (t.update ?? t.insert).getTime();
}

export function fromChangeRow(row: ChangeRow): ChangeRecord {
  if (row.erased === 1) {
    const profileId = row.before_profile_id;
    const before =
      row.before_status === null
        ? null
        : { profileId, status: row.before_status, channel: row.before_channel ?? "", channelGroup: row.before_channel_group };
    return { revision: row.revision, kind: "deleted", id: row.id, doc: erasedDoc(row.id, profileId, row.revision), before, erased: true };
  }
  // A change row without a document points at its session row, which must still be at it.
  if (row.session_revision !== null && row.session_revision !== row.revision) {
    throw new Error(
      `change log: change ${row.revision} of session "${row.id}" has no document (the session is at ${row.session_revision})`,
    );
  }
  if (row.doc === null) throw new Error(`change log: change ${row.revision} of session "${row.id}" has no document (the session is gone)`);
  const before: FilterFields | null =
    row.before_status === null
      ? null
      : {
          profileId: row.before_profile_id,
          status: row.before_status,
          channel: row.before_channel ?? "",
          channelGroup: row.before_channel_group,
        };
  const doc = fromRow({ doc: row.doc, revision: row.revision });
  return { revision: row.revision, kind: row.kind, id: row.id, doc, before, bytes: row.doc.length };
}

export function toMs(date: Date | null): number | null {
  return date === null ? null : date.getTime();
}

export function fromMs(ms: unknown): Date | null {
  return typeof ms === "number" ? new Date(ms) : null;
}
