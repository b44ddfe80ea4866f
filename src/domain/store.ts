// The store port: everything the domain needs from a place that keeps sessions.
//
// Two adapters implement it: the embedded SQLite store (src/store/sqlite/index.ts, the default) and
// the MongoDB store (src/store/mongo/index.ts). One conformance suite (test/store/conformance.ts)
// states this contract as tests and runs against every adapter; any difference between the
// adapters is a bug in one of them.
//
// Rules every adapter follows:
// - Documents go in and come out as SessionDoc (src/domain/session.ts): snake_case fields,
//   Dates as Date, null for "not set". What `get` returns after `create` or `update` is
//   deep-equal to what the domain wrote, with `revision` set by the store.
// - Revisions: one counter for the whole store. Every successful create, update and delete
//   takes the next value, so revisions are unique and strictly increasing in commit order,
//   also when several service processes share one database. A document's `revision` is the
//   revision of its latest change.
// - Atomicity: a write either happens completely or not at all; no half-written document is
//   ever visible.
// - Errors: only the typed errors of src/domain/errors.ts leave an adapter:
//   NotFoundError, AlreadyExistsError, RevisionConflictError, StoreUnavailableError (the store
//   could not be reached or did not answer within `deadline`). Anything else is a bug.
// - Keys of free-form objects are validated by the domain before they reach the store
//   (no "$" prefix, no ".", no NUL); adapters may rely on that.

import type { SessionDoc } from "./session";

/** A value a patch can write: a JSON value, a Date, or a plain object of those. */
export type PatchValue = unknown;

/**
 * A partial update, in document paths (["device", "geo", "city"]).
 * No path in `set` or `unset` is a prefix of another, and every parent of a path exists as an
 * object in the current document (the domain guarantees both), so the patch maps directly to
 * MongoDB's $set / $unset.
 */
export interface SessionPatch {
  /** Fields to write. */
  set: Array<{ path: string[]; value: PatchValue }>;
  /** Keys to remove (only keys inside the free-form objects). */
  unset: string[][];
}

/** Options every call accepts. */
export interface CallOptions {
  /** Give up with StoreUnavailableError after this instant (the RPC's deadline). */
  deadline?: Date;
  /**
   * Aborted when the caller no longer wants the answer (the client cancelled, the deadline
   * passed). A call still waiting in a queue leaves it and rejects; a write already under way
   * completes or fails as a whole (never reported failed yet applied).
   */
  signal?: AbortSignal;
}

export interface CreateOptions extends CallOptions {
  /**
   * Idempotency key. When a session created with the same key exists, `create` returns that
   * session (as stored now) with `created: false` instead of writing anything.
   */
  requestId?: string;
  /**
   * Visit numbering: number the new session as the next visit of this profile (the session's
   * profile.id). See "Visit numbering" below.
   */
  numberVisitIn?: string;
}

// Visit numbering. With `numberVisitIn: P`, a create (or an update that moves the session to
// profile P) sets the document's `session_index` to P's next visit number and
// `previous_session_id` to the id of the session that took the number before it (null for 1),
// in the same atomic write. Numbers of one profile are unique and increasing in the order they
// are taken, also when several processes share the store: two writes never get the same number.
// Numbers are contiguous unless a write fails after taking its number (a duplicate id, the
// store lost mid-write, a crash): then that number may stay unused (a gap), and
// previous_session_id skips it. A replayed requestId takes no number.

export interface CreateResult {
  session: SessionDoc;
  /** False when an earlier create with the same requestId is being replayed. */
  created: boolean;
}

export interface ConditionalOptions extends CallOptions {
  /** Apply only if the stored revision equals this one, else RevisionConflictError. */
  expectedRevision?: number;
}

export interface UpdateOptions extends ConditionalOptions {
  /**
   * Number the session as the next visit of this profile, which the patch makes its
   * profile.id (see "Visit numbering"); the patch must not set session_index or
   * previous_session_id itself.
   */
  numberVisitIn?: string;
}

/** Position after which a listing continues: the last (insert, id) of the previous page. */
export interface ListCursor {
  insert: Date;
  id: string;
}

export interface ListQuery {
  profileId?: string;
  status?: string;
  channel?: string;
  /** traffic.channel_group (sessions without traffic never match). */
  channelGroup?: string;
  /** Inclusive lower bound on metadata.time.insert. */
  insertFrom?: Date;
  /** Exclusive upper bound on metadata.time.insert. */
  insertTo?: Date;
  /** Return only sessions strictly after this position in the listing order. */
  after?: ListCursor;
  /** Maximum number of sessions to return (at least 1). */
  limit: number;
  /**
   * When set, the read also stops after the session that brings the documents' size (stored
   * JSON on the embedded store, BSON on MongoDB) to this many bytes; it returns at least one.
   */
  maxBytes?: number;
}

/**
 * Sessions to end (lifecycle expiry): status "active" and either no activity since
 * `idleBefore` (metadata.time.update, or metadata.time.insert while update is null) or inserted
 * before `insertedBefore`.
 */
export interface ExpiryQuery {
  idleBefore: Date;
  insertedBefore: Date;
  /** At most this many (at least 1); which ones come first is up to the adapter. */
  limit: number;
}

/** The fields GetSessionStats can group by, as names of document paths (see STATS_PATHS). */
export type StatsField =
  "channel" | "status" | "device_type" | "os_name" | "app_name" | "country_code" | "utm_source" | "channel_group" | "source";

/** Where each StatsField is in the document. */
export const STATS_PATHS: Record<StatsField, readonly string[]> = {
  channel: ["metadata", "channel"],
  status: ["metadata", "status"],
  device_type: ["device", "type"],
  os_name: ["os", "name"],
  app_name: ["app", "name"],
  country_code: ["device", "geo", "country", "code"],
  utm_source: ["utm", "source"],
  channel_group: ["traffic", "channel_group"],
  source: ["traffic", "source"],
};

export interface StatsQuery {
  profileId?: string;
  status?: string;
  channel?: string;
  /** Inclusive lower bound on metadata.time.insert. */
  insertFrom?: Date;
  groupBy?: StatsField;
  /** More fields to group the same sessions by, in the same snapshot (no repeats). */
  breakdowns?: StatsField[];
  /**
   * Count the matching sessions inserted in each of `minutes` consecutive minutes from `from`:
   * entry i covers metadata.time.insert in [from + i min, from + (i + 1) min). The cost
   * follows the sessions inserted in that range, not the store's size.
   */
  startedPerMinute?: { from: Date; minutes: number };
  /** "Online": status "active" and latest activity (update, else insert) at or after this. */
  onlineSince: Date;
}

/** The counts of one value of a grouped field (key null for null or missing). */
export interface StatsGroupCount {
  key: string | null;
  count: number;
}

export interface StatsResult {
  /** Sessions matching the filters. */
  total: number;
  /** With groupBy: one entry per distinct value (null for null or missing), any order. */
  groups: StatsGroupCount[];
  /** One entry per StatsQuery.breakdowns field, in that order; groups as `groups`. Else []. */
  breakdowns: Array<{ field: StatsField; groups: StatsGroupCount[] }>;
  /** With StatsQuery.startedPerMinute: `minutes` counts, oldest first. Else []. */
  startedPerMinute: number[];
  /** Matching sessions that are online (see StatsQuery.onlineSince). */
  online: number;
}

export const MINUTE_MS = 60_000;

/**
 * About the most one readChanges call returns, in bytes of documents (the stored JSON on the
 * embedded store, BSON on MongoDB): a read stops after the change that reaches it. So a read
 * holds at most this plus one session, whatever its `limit`: 256 changes of sessions at the
 * 256 KB MAX_SESSION_BYTES would be 64 MB, for each watcher catching up at the same time.
 */
export const CHANGES_READ_BYTES = 4 * 1024 * 1024;

/** What a change did, as recorded in the store's change log. */
export type ChangeKind = "created" | "updated" | "deleted";

/** The fields watch filters look at, as they were before a change. */
export interface FilterFields {
  profileId: string | null;
  status: string;
  channel: string;
  /** traffic.channel_group; null for a session without traffic. */
  channelGroup: string | null;
}

/** One committed change, as kept in the change log. */
export interface ChangeRecord {
  revision: number;
  kind: ChangeKind;
  id: string;
  /**
   * The session after the change, with `revision` = this change's; for "deleted", its last state.
   * For an erased change, a tombstone (erasedDoc in src/domain/erasure.ts): the id, and the
   * profile id while the erasure that wrote it is under way, nothing else.
   */
  doc: SessionDoc;
  /**
   * The filter fields before the change; null for "created", or when the log could not know.
   * An erased change has them (profile id, status, channel) while its erasure is under way,
   * then null.
   */
  before: FilterFields | null;
  /** A tombstone of an erased session (see "Erasure"): kind "deleted", nothing but the id kept. */
  erased?: boolean;
  /**
   * The document's size as the store read it (stored JSON, BSON), when it measured it for the
   * CHANGES_READ_BYTES cut: the feed's buffer counts it rather than measure the document again.
   */
  bytes?: number;
}

// Erasure (EraseProfile). Two steps, each bounded by `limit`, run by src/domain/erasure.ts:
// - eraseSessions deletes up to `limit` sessions of the profile, oldest first (one atomic
//   write per batch on the embedded store, one per session on MongoDB). Each deletion takes the
//   next revision and is logged as an erased "deleted" change whose doc is the tombstone of the
//   id and profile id, with the filter fields before it. With the session go its idempotency
//   record (request_id) and its visit claim.
// - eraseTraces removes up to `limit` of what is left once no session of the profile exists:
//   every earlier change-log entry of the erased sessions becomes a tombstone (kind "deleted",
//   erased, the id and its revision only; entries of an earlier session with the same id that
//   ended in a plain delete are left alone: the embedded store already does this in
//   eraseSessions' write), the erased changes lose the profile id and filter fields (they then
//   read back as id-only tombstones), and the profile's visit claims go (its numbering starts
//   again at 1). It does nothing and answers `sessionsLeft` while a session of the profile
//   exists (one created during the erasure): erase those first.
// Both are idempotent: a step interrupted by a crash has either happened or not, and running
// the steps again finishes the job. After both report nothing left, no read of the port
// (get, list, stats, readChanges from any revision) returns data of the profile's erased
// sessions. Sessions of other profiles are not touched, also when their
// merged_from_profile_ids name the profile.

export interface EraseSessionsResult {
  /** Sessions this call deleted. */
  erased: number;
  /** The revision of the last erased change this call logged (0 when none). */
  revision: number;
  /** The call found `limit` sessions: more may be left. False: none was left when it looked. */
  more: boolean;
}

export interface EraseTracesResult {
  /** Nothing of the profile is left to remove. */
  done: boolean;
  /** A session of the profile exists (nothing was removed): call eraseSessions again. */
  sessionsLeft: boolean;
}

export interface ChangeBatch {
  /** Changes with revision > `after`, ascending, with no committed change left out between. */
  changes: ChangeRecord[];
  /**
   * Every change with a revision up to this one is in `changes` or before `after`: no change
   * with a revision <= safeRevision can still appear. Never below `after`.
   */
  safeRevision: number;
}

export interface SessionStore {
  /** A short name for logs ("sqlite", "mongodb"). */
  readonly kind: string;

  /**
   * Stores a new session with the next revision and returns it as stored.
   * Throws AlreadyExistsError when the id is taken (unless options.requestId replays, see
   * CreateOptions). The `revision` of the input is ignored.
   */
  create(doc: SessionDoc, options?: CreateOptions): Promise<CreateResult>;

  /** Returns the session, or throws NotFoundError. */
  get(id: string, options?: CallOptions): Promise<SessionDoc>;

  /**
   * Applies the patch and stamps the next revision, atomically; returns the document after the
   * change. Throws NotFoundError when absent, RevisionConflictError when
   * options.expectedRevision is given and differs from the stored revision (nothing written).
   * Fields the patch does not name keep the values they have in the store at the time of the
   * write, so concurrent patches of different fields both survive.
   */
  update(id: string, patch: SessionPatch, options?: UpdateOptions): Promise<SessionDoc>;

  /**
   * Deletes the session and returns the revision stamped on the deletion.
   * Throws NotFoundError when absent, RevisionConflictError on a stale expectedRevision.
   */
  delete(id: string, options?: ConditionalOptions): Promise<{ revision: number }>;

  /**
   * Lists sessions matching every given filter, newest first: metadata.time.insert descending,
   * then id descending. Paging with `after` is stable under concurrent inserts: a session is
   * never returned twice nor skipped among those that existed when the first page was read.
   */
  list(query: ListQuery, options?: CallOptions): Promise<SessionDoc[]>;

  /**
   * Sessions due to end (see ExpiryQuery), read with an index: the cost follows the number of
   * sessions returned, not the number stored. The caller ends each with a conditional update.
   */
  findExpired(query: ExpiryQuery, options?: CallOptions): Promise<SessionDoc[]>;

  /**
   * Counts the sessions matching the filters, grouped by one field and by each breakdown field,
   * plus how many are online and, when asked, how many were inserted per minute. All figures of
   * one call come from one snapshot where the store has them (SQLite: one read transaction).
   */
  stats(query: StatsQuery, options?: CallOptions): Promise<StatsResult>;

  /**
   * Reads the change log after revision `after`, at most `limit` changes (the WatchSessions
   * feed), and stops early after the change that brings their documents to
   * CHANGES_READ_BYTES (at least one change is read). The result is gap-free: a revision that
   * was handed out but whose write has not committed yet is never skipped; reading stops before
   * it (safeRevision says how far the log is complete). Throws ChangesTrimmedError when `after`
   * is older than the retention window.
   */
  readChanges(after: number, limit: number, options?: CallOptions): Promise<ChangeBatch>;

  /** The revision a watch "from now" starts after: every change up to it is in the log. */
  headRevision(options?: CallOptions): Promise<number>;

  /**
   * The end of a snapshot (WatchSessions `send_initial`), read after the snapshot's reads: at
   * or above the revision of every write whose effect a read that ended before this call could
   * have seen. So the reads show the state at this revision, up to the changes in between,
   * which the log has. May be above headRevision (writes still under way); never below it.
   */
  snapshotRevision(options?: CallOptions): Promise<number>;

  /**
   * Removes change-log entries committed before `before` (retention); afterwards older
   * cursors get ChangesTrimmedError. Returns the oldest revision still resumable.
   */
  trimChanges(before: Date, options?: CallOptions): Promise<number>;

  /** Erasure, first step (see "Erasure"): deletes up to `limit` (at least 1) sessions of the profile. */
  eraseSessions(profileId: string, limit: number, options?: CallOptions): Promise<EraseSessionsResult>;

  /** Erasure, second step (see "Erasure"): removes up to `limit` remaining traces of the profile. */
  eraseTraces(profileId: string, limit: number, options?: CallOptions): Promise<EraseTracesResult>;

  /**
   * Calls `listener` soon after each change this process committed (a hint to read the log
   * now rather than at the next poll; other processes' changes are only found by polling).
   * Returns the function that removes the listener.
   */
  onCommit(listener: () => void): () => void;

  /** Resolves when the store answers; throws StoreUnavailableError otherwise. */
  ping(options?: CallOptions): Promise<void>;

  /** Releases connections and files. Calls after close fail. */
  close(): Promise<void>;
}
