// MongoDB adapter of the store port (src/domain/store.ts).
//
// Layout, in the database given to connect():
//   sessions       one document per session: `_id` = session id, every other field exactly the
//                  SessionDoc shape (snake_case, Dates as BSON dates, embedded documents, nulls
//                  kept), plus `revision`, plus `request_id` only when the create carried a
//                  requestId (the idempotency key; internal, never returned).
//   revisions      one reservation per revision handed out: { _id: revId(revision), at, id, kind,
//                  key?: "<id>@<revision the write moves the session away from>", before?, last? }.
//   changes        the change log: one outcome per reservation, inserted once:
//                  { _id: revId(revision), at, id, kind, doc, before } or { _id, at, id, kind,
//                  aborted }.
//   change_trims   { _id: revId(revision) }: the log was trimmed up to there (retention).
//   visits         visit numbering (see the port): one claim per number taken, inserted once:
//                  { _id: visitId(profile, n), profile_id, index: n, session_id, at, void? }.
//                  Numbers are taken like revisions: the first free one by `_id` lookups, an
//                  insert decides. A claim whose write failed is kept, marked void (so the
//                  numbers stay contiguous for the search) and skipped by previous_session_id.
//
// A write: (1) takes the next revision N by inserting the reservation {_id: N} (the number after
// the last one; on a duplicate, the first free one after it); for an update or delete of
// session X at revision R the same insert takes the claim key "X@R" (unique index), so exactly
// one writer can move X away from R. (2) Makes sure the change that produced R is in the log (see resolve()),
// so the post-image of every revision is known before the session moves on. (3) Writes the
// session conditionally on {_id: X, revision: R}. (4) Inserts the outcome of N: the change, or
// "aborted" when nothing was written. A reader of the log walks revisions in order and stops at
// the first reservation without an outcome whose write may still land (safeRevision), so it
// never skips a change that commits later; a reservation left by a process that died is
// resolved from the session's state (committed if the session is at N, else aborted once older
// than CLAIM_LEASE_MS). Revisions are unique (the reservation's _id), strictly increasing per
// session, and increasing in reservation order; two writes of different sessions can commit in
// the other order, which the log's outcome walk absorbs.
//
// Within one process, writers of the same session take turns and reservations are inserted one
// batch at a time, so claims and numbers only collide between processes.
//
// Creates are group-committed: those issued in the same event-loop turn take their visit
// numbers, revisions, documents and outcomes with one insertMany per collection (ordered for the
// numbers, so a collision with another process keeps the prefix that was taken; unordered for
// the documents, so a duplicate id fails alone). FerretDB commits every write on its own (about
// 5 ms each on the test machine), so this is what makes a create cost about one insert.
//
// Only inserts decide anything (reservations, claims, outcomes): that is what makes the same
// code correct on FerretDB, where updates are not atomic (below). No transactions, no change
// streams, so a standalone MongoDB, a replica set and FerretDB all work.
//
// FerretDB (v1.24, SQLite backend; the test database) differs from MongoDB in these ways:
// - update, findAndModify and delete run as read-modify-write without isolation: two concurrent
//   `$inc`s can return the same value and two conditional updates of one document can both
//   "match" (measured: 200 concurrent $inc gave 22 distinct values); inserts and unique indexes
//   are atomic. Hence the claims above instead of a $inc counter.
// - No change streams, no multi-document transactions (not used here).
// - Index options `partialFilterExpression` and `expireAfterSeconds` are not implemented (error
//   238: Index option "partialFilterExpression" is not implemented yet), `sparse` is accepted but
//   ignored; a missing field never collides in a FerretDB unique index, so `request_id` is a
//   unique sparse index and is never written as null. Retention is a sweep (purgeExpired).
// - createIndexes naming two or more indexes that all exist already panics inside FerretDB
//   ("runtime error: slice bounds out of range [:2:1]") and the connection is closed ("connection
//   1 to 127.0.0.1:PORT closed"); so indexes are created one per command.
// - Arrays directly inside arrays are rejected ("invalid value: { "list": [ [ 1, 2 ], [ 3 ] ] }
//   (nested arrays are not supported)"): on FerretDB they are stored wrapped (wrapNestedArrays).
// - Only a filter that is exactly {_id: <string or ObjectId>} is pushed down to SQLite; any other
//   query reads and filters the whole collection in FerretDB (secondary indexes only enforce
//   uniqueness). So revisions are fixed-width string `_id`s (revId) and the log is walked by
//   `_id` lookups, not by range queries.
// - Duplicate-key errors (11000) carry no keyPattern/keyValue; the adapter re-reads to tell which
//   key collided instead.
// - writeConcern is accepted and ignored; maxTimeMS is honoured by find/findAndModify only, and
//   its expiry comes back as code 1 InternalError ("... handler.handleMaxTimeMSError ...
//   interrupted (9)"), not 50 MaxTimeMSExpired; so maxTimeMS runs a little past the client's
//   own deadline, and that message counts as "unavailable" too.
// Deadlines are enforced on the client with an AbortSignal per call (timeoutMS is a no-op in
// driver 7), plus maxTimeMS so a real MongoDB stops the work too.

import { setMaxListeners } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import {
  MongoBulkWriteError,
  MongoClient,
  MongoError,
  MongoNetworkError,
  MongoServerError,
  type Collection,
  type Db,
  type Filter,
  type IndexDescription,
  type UpdateFilter,
  type WriteConcernSettings,
} from "mongodb";

import {
  AlreadyExistsError,
  ChangesTrimmedError,
  DomainError,
  NotFoundError,
  RevisionConflictError,
  StoreUnavailableError,
} from "../../domain/errors";
import type { Logger } from "../../log";
import { emptySessionDoc, STATUS_ACTIVE, type JsonObject, type SessionDoc } from "../../domain/session";
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
  StatsQuery,
  StatsResult,
  UpdateOptions,
} from "../../domain/store";
import { STATS_PATHS } from "../../domain/store";

export interface MongoStoreOptions {
  uri: string;
  database: string;
  /** Default { w: "majority", journal: true }. */
  writeConcern?: WriteConcernSettings;
  /**
   * Sessions whose metadata.time.insert is older than this many days are deleted by
   * purgeExpired(), which then also runs every retentionSweepMs. Unset: kept for ever.
   */
  retentionDays?: number;
  /** Interval of the retention sweep; default one hour. */
  retentionSweepMs?: number;
  /** Budget of a call that has no deadline; default 5 s. */
  timeoutMs?: number;
  /** Upper bound of any call's budget, also with a later deadline; default 30 s. */
  maxCallMs?: number;
  /** Default 5 s; bounds connect(). */
  serverSelectionTimeoutMs?: number;
  maxPoolSize?: number;
  appName?: string;
  /** Receives the server kind and failures of background sweeps. */
  log?: Logger;
}

/** A stored session: SessionDoc without `id`, plus `_id`, `revision` and maybe `request_id`. */
export type StoredSession = Omit<SessionDoc, "id"> & { _id: string; request_id?: string };

/** A revision handed out (see the header). */
interface Reservation {
  /** revId(revision) */
  _id: string;
  at: Date;
  id: string;
  kind: ChangeKind;
  /** Update and delete: "<id>@<revision moved away from>", the claim. */
  key?: string;
  /** Update and delete: the filter fields before the change. */
  before?: FilterFields;
  /** Delete: the session before the deletion. */
  last?: StoredSession;
}

/** The outcome of a reservation: the change log entry. */
interface Outcome {
  /** revId(revision) */
  _id: string;
  at: Date;
  id: string;
  kind: ChangeKind;
  doc?: StoredSession;
  before?: FilterFields | null;
  aborted?: true;
}

type Resolution = "committed" | "aborted" | "pending" | "none";

interface TrimMark {
  /** revId(revision): the log was trimmed up to there. */
  _id: string;
  at: Date;
}

/** A create waiting for the next group commit (flushCreates). */
interface PendingCreate {
  doc: SessionDoc;
  requestId?: string;
  visitIn?: string;
  call: Call;
  resolve(result: CreateResult): void;
  reject(error: unknown): void;
}

/** A visit number taken: its claim's `_id`, the number, the previous visit's session. */
interface VisitTaken {
  claim: string;
  index: number;
  previous: string | null;
}

/** A visit claim (see the header). */
interface VisitClaim {
  /** visitId(profile_id, index) */
  _id: string;
  profile_id: string;
  index: number;
  session_id: string;
  at: Date;
  void?: true;
}

/**
 * A visit claim's `_id`: the profile id, "|", the number in 10 digits. The part after the last
 * "|" is always the number, so two (profile, number) pairs never share an `_id`.
 */
export function visitId(profileId: string, index: number): string {
  return `${profileId}|${String(index).padStart(10, "0")}`;
}

/**
 * Revisions as `_id`: fixed-width decimal strings, so string order is numeric order, and so
 * FerretDB (which pushes down to SQLite only a filter on a string or ObjectId `_id`, and scans
 * the whole collection for anything else) finds one revision with an index lookup.
 */
export function revId(revision: number): string {
  return String(revision).padStart(16, "0");
}
function revNum(id: string): number {
  return Number(id);
}

const SESSIONS = "sessions";
const REVISIONS = "revisions";
const CHANGES = "changes";
const TRIMS = "change_trims";
const VISITS = "visits";
/** How far back previous_session_id looks past void claims. */
const MAX_VOID_SKIP = 20;
const MAX_VISIT_HINTS = 10_000;
const DEFAULT_WRITE_CONCERN: WriteConcernSettings = { w: "majority", journal: true };
const DEFAULT_CALL_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_CALL_MS = 30_000;
const DEFAULT_RETENTION_SWEEP_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** How much longer than a call's budget the server may work on it (maxTimeMS). */
const SERVER_TIME_MARGIN_MS = 1_000;
/**
 * The budget of a write call (create, update, delete) is capped here, whatever the deadline:
 * every operation of a write is issued within this of its reservation (taken inside the call).
 */
const MAX_WRITE_MS = 10_000;
/** Clock difference between processes the lease tolerates (a reservation's `at` is its writer's clock). */
const CLOCK_SKEW_MS = 2_000;
/**
 * A reservation without an outcome that is older than this belongs to a writer that died or
 * gave up: its write call has ended (MAX_WRITE_MS), and the server has stopped its operations
 * (maxTimeMS), so others may resolve it as aborted. This bounds how long a writer that died
 * mid-write holds the watchers of every replica: 13 s (it was 2 minutes; issue 10).
 */
const CLAIM_LEASE_MS = MAX_WRITE_MS + SERVER_TIME_MARGIN_MS + CLOCK_SKEW_MS;
const READ_BATCH = 500;
const PURGE_BATCH = 1000;

const INSERT = "metadata.time.insert";

/** Every query of the adapter has an index; names are stable so creation is idempotent. */
export const SESSION_INDEXES: IndexDescription[] = [
  { name: "profile_insert", key: { "profile.id": 1, [INSERT]: -1, _id: -1 } },
  { name: "status_insert", key: { "metadata.status": 1, [INSERT]: -1, _id: -1 } },
  { name: "channel_insert", key: { "metadata.channel": 1, [INSERT]: -1, _id: -1 } },
  { name: "insert", key: { [INSERT]: -1, _id: -1 } },
  { name: "revision", key: { revision: 1 } },
  // Lifecycle: idle expiry and "online now" ($or on update, or insert while update is null).
  { name: "status_activity", key: { "metadata.status": 1, "metadata.time.update": 1, [INSERT]: 1 } },
  // Sparse, not partial: FerretDB has no partialFilterExpression (see the header).
  { name: "request_id", key: { request_id: 1 }, unique: true, sparse: true },
];
const REVISION_INDEXES: IndexDescription[] = [{ name: "key", key: { key: 1 }, unique: true, sparse: true }];
const CHANGE_INDEXES: IndexDescription[] = [{ name: "at", key: { at: 1 } }];

type Raw = Record<string, unknown>;

/** A plain object from any realm (structuredClone and test runners make objects of another). */
function isPlainObject(value: unknown): value is Raw {
  if (typeof value !== "object" || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === null || Object.getPrototypeOf(proto) === null;
}

function isDate(value: unknown): value is Date {
  return Object.prototype.toString.call(value) === "[object Date]";
}

/** A deep copy of JSON values, Dates and plain objects (made here, not in another realm). */
function deepCopy<T>(value: T): T {
  if (Array.isArray(value)) return value.map(deepCopy) as T;
  if (isDate(value)) return new Date(value.getTime()) as T;
  if (isPlainObject(value)) {
    const out: Raw = {};
    for (const [k, v] of Object.entries(value)) out[k] = deepCopy(v);
    return out as T;
  }
  return value;
}

/**
 * FerretDB v1 rejects an array directly inside an array ("nested arrays are not supported").
 * There, each such inner array is stored as { "": [...] }: the empty key is one the domain never
 * accepts in free-form objects (validate.ts), so the wrapper cannot be mistaken for data.
 * MongoDB stores nested arrays as they are.
 */
export function wrapNestedArrays(value: unknown, inArray = false): unknown {
  if (Array.isArray(value)) {
    const items = value.map((item) => wrapNestedArrays(item, true));
    return inArray ? { "": items } : items;
  }
  if (isPlainObject(value)) {
    const out: Raw = {};
    for (const [k, v] of Object.entries(value)) out[k] = wrapNestedArrays(v);
    return out;
  }
  return value;
}

/** Undoes wrapNestedArrays; values without wrappers come back unchanged. */
export function unwrapNestedArrays(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(unwrapNestedArrays);
  if (isPlainObject(value)) {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === "" && Array.isArray(value[""])) return unwrapNestedArrays(value[""]);
    const out: Raw = {};
    for (const [k, v] of Object.entries(value)) out[k] = unwrapNestedArrays(v);
    return out;
  }
  return value;
}

/**
 * Maps a SessionDoc to the stored document (a copy: nothing is shared with `doc`).
 * `wrapArrays` applies wrapNestedArrays to the free-form objects (FerretDB).
 */
export function toStoredDocument(doc: SessionDoc, revision: number, requestId?: string, wrapArrays = false): StoredSession {
  const { id, ...fields } = deepCopy(doc);
  const stored: StoredSession = { _id: id, ...fields, revision };
  if (wrapArrays) {
    const w = <T>(v: T): T => wrapNestedArrays(v) as T;
    stored.metadata.aux = w(stored.metadata.aux);
    if (stored.profile) stored.profile.metadata = w(stored.profile.metadata);
    stored.context = w(stored.context);
    stored.properties = w(stored.properties);
    stored.traits = w(stored.traits);
    stored.aux = w(stored.aux);
  }
  if (requestId !== undefined) stored.request_id = requestId;
  return stored;
}

function obj(value: unknown): Raw {
  return isPlainObject(value) ? value : {};
}
function pick<T>(value: unknown, fallback: T): T {
  return value === undefined ? fallback : (value as T);
}
/** A free-form object as read: {} when missing or null, nested-array wrappers undone. */
function freeForm(value: unknown): JsonObject {
  return isPlainObject(value) ? (unwrapNestedArrays(value) as JsonObject) : {};
}
function date(value: unknown): Date | null {
  if (isDate(value)) return value;
  if (typeof value === "string" || typeof value === "number") {
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  return null;
}

/**
 * Maps a stored document (as written by this adapter or by hand in the same shape) to a
 * SessionDoc. Missing fields get their documented empty values (emptySessionDoc: null, "",
 * false, {}, "Other" for unknown names; timestamp and weekday derived from insert, revision 0);
 * fields outside the SessionDoc shape (request_id, anything else) are dropped.
 */
export function fromStoredDocument(raw: Raw): SessionDoc {
  const metadata = obj(raw["metadata"]);
  const time = obj(metadata["time"]);
  const insert = date(time["insert"]) ?? new Date(0);
  const empty = emptySessionDoc(String(raw["_id"]), insert);
  const device = obj(raw["device"]);
  const geo = obj(device["geo"]);
  const country = obj(geo["country"]);
  const os = obj(raw["os"]);
  const app = obj(raw["app"]);
  const utm = obj(raw["utm"]);
  const activity = obj(raw["activity"]);
  const profile = raw["profile"];

  const e = empty;
  return {
    id: e.id,
    metadata: {
      time: {
        insert,
        create: time["create"] === undefined ? null : date(time["create"]),
        update: time["update"] === undefined ? null : date(time["update"]),
        timestamp: pick(time["timestamp"], e.metadata.time.timestamp),
        duration: pick(time["duration"], e.metadata.time.duration),
        weekday: pick(time["weekday"], e.metadata.time.weekday),
      },
      channel: pick(metadata["channel"], e.metadata.channel),
      aux: freeForm(metadata["aux"]),
      status: pick(metadata["status"], e.metadata.status),
    },
    profile: isPlainObject(profile)
      ? {
          id: String(profile["id"] ?? ""),
          primary_id: pick(profile["primary_id"], null),
          metadata: isPlainObject(profile["metadata"]) ? freeForm(profile["metadata"]) : null,
        }
      : null,
    device: {
      name: pick(device["name"], e.device.name),
      brand: pick(device["brand"], null),
      model: pick(device["model"], null),
      type: pick(device["type"], null),
      touch: pick(device["touch"], false),
      ip: pick(device["ip"], null),
      resolution: pick(device["resolution"], null),
      geo: {
        country: { name: pick(country["name"], null), code: pick(country["code"], null) },
        city: pick(geo["city"], null),
        county: pick(geo["county"], null),
        postal: pick(geo["postal"], null),
        latitude: pick(geo["latitude"], null),
        longitude: pick(geo["longitude"], null),
        location: pick(geo["location"], null),
      },
      color_depth: pick(device["color_depth"], null),
      orientation: pick(device["orientation"], null),
    },
    os: { name: pick(os["name"], e.os.name), version: pick(os["version"], e.os.version) },
    app: {
      type: pick(app["type"], e.app.type),
      name: pick(app["name"], e.app.name),
      version: pick(app["version"], e.app.version),
      language: pick(app["language"], null),
      bot: pick(app["bot"], false),
      resolution: pick(app["resolution"], null),
    },
    utm: {
      source: pick(utm["source"], null),
      medium: pick(utm["medium"], null),
      campaign: pick(utm["campaign"], null),
      term: pick(utm["term"], null),
      content: pick(utm["content"], null),
    },
    context: freeForm(raw["context"]),
    properties: freeForm(raw["properties"]),
    traits: freeForm(raw["traits"]),
    aux: freeForm(raw["aux"]),
    revision: pick(raw["revision"], 0),
    session_index: pick(raw["session_index"], 0),
    previous_session_id: pick(raw["previous_session_id"], null),
    activity: {
      page_views: pick(activity["page_views"], 0),
      entry_page: pick(activity["entry_page"], null),
      exit_page: pick(activity["exit_page"], null),
      end_reason: pick(activity["end_reason"], ""),
    },
    merged_from_profile_ids: Array.isArray(raw["merged_from_profile_ids"]) ? raw["merged_from_profile_ids"].map(String) : [],
  };
}

/** The patch as $set / $unset, paths joined with "." (the domain validated every key). */
export function patchToUpdate(patch: SessionPatch, revision: number, wrapArrays = false): UpdateFilter<StoredSession> {
  const $set: Raw = {};
  for (const { path, value } of patch.set) $set[path.join(".")] = wrapArrays ? wrapNestedArrays(value) : value;
  $set["revision"] = revision;
  if (patch.unset.length === 0) return { $set };
  const $unset: Record<string, ""> = {};
  for (const path of patch.unset) $unset[path.join(".")] = "";
  return { $set, $unset };
}

// --- errors ---

const UNAVAILABLE_CODES = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  50, // MaxTimeMSExpired
  64, // WriteConcernFailed (wtimeout)
  89, // NetworkTimeout
  91, // ShutdownInProgress
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);
const UNAVAILABLE_NAMES = new Set([
  "MongoServerSelectionError",
  "MongoTopologyClosedError",
  "MongoNotConnectedError",
  "MongoClientClosedError",
  "MongoServerClosedError",
  "MongoOperationTimeoutError",
  "MongoWaitQueueTimeoutError",
  "MongoPoolClosedError",
  "AbortError",
  "TimeoutError",
]);
const UNAVAILABLE_LABELS = ["RetryableWriteError", "ResetPool", "SystemOverloadedError", "RetryableError"];

function isDuplicateKey(err: unknown): boolean {
  return err instanceof MongoServerError && err.code === 11000;
}

function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err instanceof MongoNetworkError || UNAVAILABLE_NAMES.has(err.name)) return true;
  // FerretDB answers an expired maxTimeMS with code 1 InternalError, "[msg_find.go:344
  // handler.handleMaxTimeMSError] [...] interrupted (9)", instead of 50 MaxTimeMSExpired, and
  // under load a statement can fail with "[...] fsql.(*DB).InTransaction] interrupted (9)"
  // (SQLite's SQLITE_INTERRUPT, after another connection was dropped): transient, nothing written.
  if (err instanceof MongoServerError && (err.message.includes("handleMaxTimeMSError") || err.message.endsWith("interrupted (9)"))) return true;
  if (err instanceof MongoServerError && typeof err.code === "number" && UNAVAILABLE_CODES.has(err.code)) return true;
  return err instanceof MongoError && UNAVAILABLE_LABELS.some((label) => err.hasErrorLabel(label));
}

/** Only typed errors leave the adapter; anything unexpected is rethrown as is (a bug). */
function toStoreError(err: unknown, call?: Call): unknown {
  if (err instanceof DomainError) return err;
  if (call && (err === call.signal.reason || call.signal.aborted)) {
    return new StoreUnavailableError("the session store did not answer before the deadline", { cause: err });
  }
  if (isUnavailable(err)) {
    return new StoreUnavailableError("the session store cannot be reached", { cause: err });
  }
  return err;
}

// --- per-call budget ---

/** The budget of one port call: an AbortSignal for the driver and maxTimeMS for the server. */
class Call {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  readonly end: number;
  private unfollow?: () => void;
  /** `follow`: the caller's signal (client cancelled, RPC deadline); the call aborts with it. */
  constructor(budgetMs: number, follow?: AbortSignal) {
    // Every driver operation of the call adds two listeners to the signal while it runs (measured
    // with driver 7), and a call may run many at once: 32 lookups in outcomesFrom, one visit
    // search per profile in a batch of creates. The signal is this call's own and every listener
    // goes when its operation ends, so there is no leak to warn about: no limit.
    setMaxListeners(0, this.controller.signal);
    this.end = Date.now() + budgetMs;
    this.timer = setTimeout(() => this.controller.abort(new Error("deadline exceeded")), budgetMs);
    this.timer.unref();
    if (follow?.aborted) this.controller.abort(follow.reason);
    else if (follow) {
      const onAbort = (): void => this.controller.abort(follow.reason);
      follow.addEventListener("abort", onAbort, { once: true });
      this.unfollow = () => follow.removeEventListener("abort", onAbort);
    }
  }
  get signal(): AbortSignal {
    return this.controller.signal;
  }
  /**
   * Options for a driver call; `signal` is honoured by every operation in driver 7. The server's
   * maxTimeMS runs a little longer than the budget, so the client gives up first and the
   * outcome is always the same error (FerretDB reports its own expiry as an InternalError).
   */
  get opts(): { signal: AbortSignal; maxTimeMS: number } {
    return { signal: this.controller.signal, maxTimeMS: Math.max(1, Math.ceil(this.end - Date.now())) + SERVER_TIME_MARGIN_MS };
  }
  done(): void {
    clearTimeout(this.timer);
    this.unfollow?.();
  }
}

function filterFields(s: StoredSession): FilterFields {
  return { profileId: s.profile?.id ?? null, status: s.metadata?.status ?? "", channel: s.metadata?.channel ?? "" };
}

/** The stored session as kept in the log: stamped with the change's revision, no request_id. */
function logDoc(s: StoredSession, revision: number): StoredSession {
  const { request_id: _ignored, ...rest } = s;
  return { ...rest, revision };
}

function toChangeRecord(o: Outcome): ChangeRecord {
  const revision = revNum(o._id);
  return {
    revision,
    kind: o.kind,
    id: o.id,
    doc: fromStoredDocument({ ...(o.doc as unknown as Raw), _id: o.id, revision }),
    before: o.before ?? null,
  };
}

/** A write error after which the write may or may not have happened. */
function isUncertain(err: unknown, call: Call): boolean {
  return call.signal.aborted || isUnavailable(err);
}

// --- the store ---

export class MongoSessionStore implements SessionStore {
  readonly kind = "mongodb";
  private closed = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly listeners = new Set<() => void>();
  /** Every revision up to this one has its outcome (only grows). */
  private frontier = 0;
  /** The last revision this process reserved, and the queue of reservations (see serially). */
  private lastReserved = 0;
  private reserving: Promise<unknown> = Promise.resolve();
  /** Per session, the end of the queue of this process's writers (see modify). */
  private readonly sessionTurns = new Map<string, Promise<void>>();
  /** Per profile, the last visit number this process took (a start for the next search; LRU). */
  private readonly visitHints = new Map<string, { index: number; sessionId: string }>();
  /** Creates waiting for the next group commit (flushCreates), and whether one is running. */
  private pendingCreates: PendingCreate[] = [];
  private creating = false;
  /** Recent revisions this process recorded as committed (their outcome exists). */
  private readonly committedHere = new Set<number>();

  private constructor(
    private readonly client: MongoClient,
    private readonly db: Db,
    private readonly sessions: Collection<StoredSession>,
    private readonly revisions: Collection<Reservation>,
    private readonly changes: Collection<Outcome>,
    private readonly trims: Collection<TrimMark>,
    private readonly visits: Collection<VisitClaim>,
    /** The server is FerretDB: nested arrays are wrapped (see wrapNestedArrays). */
    readonly ferret: boolean,
    private readonly options: MongoStoreOptions,
  ) {}

  /** Connects, detects the server, creates the indexes (idempotent). StoreUnavailableError if unreachable. */
  static async connect(options: MongoStoreOptions): Promise<MongoSessionStore> {
    const client = new MongoClient(options.uri, {
      appName: options.appName ?? "session-service",
      serverSelectionTimeoutMS: options.serverSelectionTimeoutMs ?? 5_000,
      connectTimeoutMS: options.serverSelectionTimeoutMs ?? 5_000,
      maxPoolSize: options.maxPoolSize ?? 100,
    });
    try {
      await client.connect();
      const db = client.db(options.database);
      const writeConcern = options.writeConcern ?? DEFAULT_WRITE_CONCERN;
      const sessions = db.collection<StoredSession>(SESSIONS, { writeConcern });
      const revisions = db.collection<Reservation>(REVISIONS, { writeConcern });
      const changes = db.collection<Outcome>(CHANGES, { writeConcern });
      const trims = db.collection<TrimMark>(TRIMS, { writeConcern });
      const visits = db.collection<VisitClaim>(VISITS, { writeConcern });

      const info = await db.admin().command({ buildInfo: 1 });
      const ferret = typeof info["ferretdbVersion"] === "string";
      // One index per command: FerretDB 1.24 panics and drops the connection when one
      // createIndexes names two or more indexes that exist already (see the header).
      for (const index of SESSION_INDEXES) await sessions.createIndexes([index]);
      for (const index of REVISION_INDEXES) await revisions.createIndexes([index]);
      for (const index of CHANGE_INDEXES) await changes.createIndexes([index]);

      const server = ferret ? `FerretDB ${String(info["ferretdbVersion"])}` : `MongoDB ${String(info["version"])}`;
      options.log?.info("mongodb store ready", { database: options.database, server });
      const store = new MongoSessionStore(client, db, sessions, revisions, changes, trims, visits, ferret, options);
      store.startTimers();
      return store;
    } catch (err) {
      await client.close().catch(() => undefined);
      throw toStoreError(err);
    }
  }

  /** The database handle (tests and tools). */
  get database(): Db {
    return this.db;
  }

  async create(doc: SessionDoc, options: CreateOptions = {}): Promise<CreateResult> {
    return this.run(options, true, async (call) => {
      const requestId = options.requestId;
      if (requestId !== undefined) {
        const replay = await this.findByRequestId(requestId, call);
        if (replay) return replay;
      }
      // Joins the creates issued in the same event-loop turn (see flushCreates); the caller
      // stops waiting at its own deadline, whatever the batch does.
      const created = new Promise<CreateResult>((resolve, reject) => {
        this.pendingCreates.push({ doc: deepCopy(doc), requestId, visitIn: options.numberVisitIn, call, resolve, reject });
        if (this.pendingCreates.length === 1 && !this.creating) setImmediate(() => void this.flushCreates());
      });
      return untilAborted(created, call.signal);
    });
  }

  /**
   * Group commit of creates: the creates queued in one event-loop turn take their visit numbers,
   * revisions, session documents and change-log outcomes with one insertMany each, instead of
   * one insert each (a database that commits every write on its own, like FerretDB, spends most
   * of a create's time per write, not per document). The steps and their guarantees are those of
   * a single create (see the header); a document that fails (duplicate id or request_id) fails
   * alone, an uncertain outcome (connection lost, deadline) fails the whole batch.
   */
  private async flushCreates(): Promise<void> {
    // One batch at a time: the creates that arrive meanwhile form the next one (the batch size
    // follows the load), and a profile's numbers are not contended by two batches of this process.
    if (this.creating) return;
    const batch = this.pendingCreates.filter((p) => !p.call.signal.aborted);
    this.pendingCreates = [];
    if (batch.length === 0) return;
    this.creating = true;
    try {
      await this.runCreateBatch(batch);
    } finally {
      this.creating = false;
      if (this.pendingCreates.length > 0) setImmediate(() => void this.flushCreates());
    }
  }

  private async runCreateBatch(batch: PendingCreate[]): Promise<void> {
    const budget = Math.max(...batch.map((p) => p.call.end - Date.now()));
    if (budget <= 0 || this.closed) {
      for (const p of batch) p.reject(new StoreUnavailableError("the deadline passed before the create could run"));
      return;
    }
    const call = new Call(budget);
    try {
      await this.createBatch(batch, call);
    } catch (err) {
      // Members already settled keep their result (a promise settles once).
      const error = toStoreError(err, call);
      for (const p of batch) p.reject(error);
    } finally {
      call.done();
    }
  }

  private async createBatch(batch: PendingCreate[], call: Call): Promise<void> {
    // 1. Visit numbers, per profile (a profile's creates take consecutive numbers).
    const visits = new Map<PendingCreate, VisitTaken>();
    const byProfile = new Map<string, PendingCreate[]>();
    for (const p of batch) if (p.visitIn !== undefined) byProfile.set(p.visitIn, [...(byProfile.get(p.visitIn) ?? []), p]);
    await Promise.all(
      [...byProfile].map(async ([profileId, members]) => {
        const taken = await this.claimVisits(profileId, members.map((m) => m.doc.id), call);
        members.forEach((m, i) => visits.set(m, taken[i]!));
      }),
    );
    // 2. Revisions, in batch order.
    const revisions = await this.serially(call, () => this.insertReservations(batch.map((p) => ({ id: p.doc.id, kind: "created" as const })), call));
    // 3. The sessions; one failing (a duplicate key) fails alone.
    const stored = batch.map((p, i) => {
      const v = visits.get(p);
      const doc = v ? { ...p.doc, session_index: v.index, previous_session_id: v.previous } : p.doc;
      return toStoredDocument(doc, revisions[i]!, p.requestId, this.ferret);
    });
    const failed = new Map<number, unknown>();
    try {
      await this.sessions.insertMany(stored, { ...call.opts, ordered: false });
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError) || isUncertain(err, call)) {
        for (const r of revisions) this.settleLater(r, call);
        throw err;
      }
      const errors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
      for (const we of errors) failed.set(we.index, we.code === 11000 ? "duplicate" : new Error(`insert failed: ${we.errmsg ?? we.code}`));
    }
    // 4. The outcomes: committed, or aborted for those not written.
    const outcomes: Outcome[] = batch.map((p, i) =>
      failed.has(i)
        ? { _id: revId(revisions[i]!), at: new Date(), id: p.doc.id, kind: "created", aborted: true }
        : { _id: revId(revisions[i]!), at: new Date(), id: p.doc.id, kind: "created", doc: logDoc(stored[i]!, revisions[i]!), before: null },
    );
    try {
      await this.changes.insertMany(outcomes, { ...call.opts, ordered: false });
    } catch (err) {
      // The sessions are written; a revision whose outcome is missing is resolved by readers
      // from the session's state (resolve()), as after a crash.
      this.options.log?.warn("recording created changes failed; they are resolved later", { error: String(err) });
    }
    let committed = false;
    for (let i = 0; i < batch.length; i++) {
      if (failed.has(i)) continue;
      this.committedHere.add(revisions[i]!);
      committed = true;
      batch[i]!.resolve({ session: fromStoredDocument(stored[i]!), created: true });
    }
    while (this.committedHere.size > 10_000) this.committedHere.delete(this.committedHere.values().next().value!);
    if (committed) this.notify();
    // 5. The failed ones: their numbers become void; a duplicate is a replay or ALREADY_EXISTS.
    for (const [i, why] of failed) {
      const p = batch[i]!;
      try {
        const v = visits.get(p);
        if (v) await this.voidVisit(v.claim, call);
        if (why !== "duplicate") throw why;
        // FerretDB does not say which key collided: the request_id (a concurrent replay) or _id.
        const replay = p.requestId === undefined ? null : await this.findByRequestId(p.requestId, call);
        if (replay) p.resolve(replay);
        else p.reject(new AlreadyExistsError(p.doc.id));
      } catch (err) {
        p.reject(toStoreError(err, call));
      }
    }
  }

  async get(id: string, options: CallOptions = {}): Promise<SessionDoc> {
    return this.run(options, async (call) => {
      const raw = await this.sessions.findOne({ _id: id }, call.opts);
      if (!raw) throw new NotFoundError(id);
      return fromStoredDocument(raw);
    });
  }

  async update(id: string, patch: SessionPatch, options: UpdateOptions = {}): Promise<SessionDoc> {
    const visitIn = options.numberVisitIn;
    return this.run(options, true, async (call) => {
      // Taken once, when the session is ours to write (reservation held), kept across retries.
      let visit: VisitTaken | undefined;
      try {
        return await this.modify(id, "updated", options.expectedRevision, call, async (from, revision) => {
          const update = patchToUpdate(patch, revision, this.ferret);
          if (visitIn !== undefined) {
            visit ??= await this.claimVisit(visitIn, id, call);
            Object.assign(update.$set!, { session_index: visit.index, previous_session_id: visit.previous });
          }
          const after = await this.sessions.findOneAndUpdate({ _id: id, revision: from }, update, { ...call.opts, returnDocument: "after" });
          return after ? { result: fromStoredDocument(after), doc: after } : null;
        });
      } catch (err) {
        // Not written (or not known to be): the number stays unused.
        if (visit && !isUncertain(err, call)) await this.voidVisit(visit.claim, call).catch(() => undefined);
        throw err;
      }
    });
  }

  async delete(id: string, options: ConditionalOptions = {}): Promise<{ revision: number }> {
    return this.run(options, true, (call) =>
      this.modify(id, "deleted", options.expectedRevision, call, async (from, revision, current) => {
        const res = await this.sessions.deleteOne({ _id: id, revision: from }, call.opts);
        return res.deletedCount === 1 ? { result: { revision }, doc: current } : null;
      }),
    );
  }

  async list(query: ListQuery, options: CallOptions = {}): Promise<SessionDoc[]> {
    return this.run(options, async (call) => {
      const and: Filter<StoredSession>[] = [];
      if (query.profileId !== undefined) and.push({ "profile.id": query.profileId });
      if (query.status !== undefined) and.push({ "metadata.status": query.status });
      if (query.channel !== undefined) and.push({ "metadata.channel": query.channel });
      if (query.insertFrom !== undefined) and.push({ [INSERT]: { $gte: query.insertFrom } });
      if (query.insertTo !== undefined) and.push({ [INSERT]: { $lt: query.insertTo } });
      if (query.after !== undefined) {
        const { insert, id } = query.after;
        and.push({ $or: [{ [INSERT]: { $lt: insert } }, { [INSERT]: insert, _id: { $lt: id } }] });
      }
      const filter: Filter<StoredSession> = and.length === 0 ? {} : and.length === 1 ? and[0]! : { $and: and };
      const docs = await this.sessions
        .find(filter, call.opts)
        .sort({ [INSERT]: -1, _id: -1 })
        .limit(Math.max(1, query.limit))
        .toArray();
      return docs.map((d) => fromStoredDocument(d));
    });
  }

  async findExpired(query: ExpiryQuery, options: CallOptions = {}): Promise<SessionDoc[]> {
    return this.run(options, async (call) => {
      const limit = Math.max(1, query.limit);
      const idle = await this.sessions
        .find({ "metadata.status": STATUS_ACTIVE, ...activeBefore(query.idleBefore) }, call.opts)
        .limit(limit)
        .toArray();
      const found = idle.map((d) => fromStoredDocument(d));
      if (found.length < limit) {
        const seen = new Set(found.map((d) => d.id));
        const tooLong = await this.sessions
          .find({ "metadata.status": STATUS_ACTIVE, [INSERT]: { $lt: query.insertedBefore } }, call.opts)
          .limit(limit)
          .toArray();
        for (const raw of tooLong) {
          if (found.length === limit) break;
          if (!seen.has(raw._id)) found.push(fromStoredDocument(raw));
        }
      }
      return found;
    });
  }

  async stats(query: StatsQuery, options: CallOptions = {}): Promise<StatsResult> {
    return this.run(options, async (call) => {
      const match: Filter<StoredSession> = {};
      if (query.profileId !== undefined) match["profile.id"] = query.profileId;
      if (query.status !== undefined) match["metadata.status"] = query.status;
      if (query.channel !== undefined) match["metadata.channel"] = query.channel;
      if (query.insertFrom !== undefined) match[INSERT] = { $gte: query.insertFrom };
      const online = await this.sessions.countDocuments(
        { $and: [match, { "metadata.status": STATUS_ACTIVE }, { $nor: [activeBefore(query.onlineSince)] }] },
        call.opts,
      );
      if (query.groupBy === undefined) {
        return { total: await this.sessions.countDocuments(match, call.opts), groups: [], online };
      }
      const field = "$" + STATS_PATHS[query.groupBy].join(".");
      const rows = await this.sessions
        .aggregate<{ _id: unknown; n: number }>([{ $match: match }, { $group: { _id: field, n: { $sum: 1 } } }], call.opts)
        .toArray();
      const groups = rows.map((r) => ({ key: r._id === null || r._id === undefined ? null : String(r._id), count: r.n }));
      return { total: groups.reduce((sum, g) => sum + g.count, 0), groups, online };
    });
  }

  async readChanges(after: number, limit: number, options: CallOptions = {}): Promise<ChangeBatch> {
    return this.run(options, async (call) => {
      const trimmed = await this.trimmedThrough(call);
      if (after < trimmed) throw new ChangesTrimmedError(after, trimmed);
      const changes: ChangeRecord[] = [];
      let safe = after;
      while (changes.length < limit) {
        const wanted = limit - changes.length;
        const batch = await this.outcomesFrom(safe + 1, wanted, call);
        for (const o of batch) {
          safe = revNum(o._id);
          if (!o.aborted) changes.push(toChangeRecord(o));
        }
        if (batch.length === wanted) continue; // all there (aborted ones take no room): read on
        // safe + 1 had no outcome just now: resolve it, or stop before it.
        const state = await this.resolve(safe + 1, call, CLAIM_LEASE_MS, true);
        if (state === "pending" || state === "none") break;
      }
      // Everything up to `safe` is resolved only when the read started at or below the
      // frontier: a caller's cursor beyond it (a resume from a future revision, a careless
      // client's 2^62) vouches for nothing, and must not move this process's head.
      if (after <= this.frontier) this.frontier = Math.max(this.frontier, safe);
      return { changes, safeRevision: safe };
    });
  }

  async headRevision(options: CallOptions = {}): Promise<number> {
    return this.run(options, (call) => this.head(call));
  }

  /**
   * The newest reservation: a write reserves its revision before it touches the session, and
   * reservations are taken contiguously in time, so any write a read has seen is at or below
   * it. Its outcome may not be known yet (the watcher waits for the log to get there).
   */
  async snapshotRevision(options: CallOptions = {}): Promise<number> {
    return this.run(options, async (call) => {
      const head = await this.head(call);
      return Math.max(head, (await this.firstFree(Math.max(head, this.lastReserved), call)) - 1);
    });
  }

  async trimChanges(before: Date, options: CallOptions = {}): Promise<number> {
    return this.run(options, async (call) => {
      const head = await this.head(call);
      const last = await this.changes
        .find({ _id: { $lte: revId(head) }, at: { $lt: before } }, { ...call.opts, projection: { _id: 1 } })
        .sort({ _id: -1 })
        .limit(1)
        .next();
      if (last) {
        const through = revNum(last._id);
        // Insert-only marker (FerretDB updates are not atomic); the largest one counts.
        await this.trims.insertOne({ _id: revId(through), at: new Date() }, call.opts).catch((err: unknown) => {
          if (!isDuplicateKey(err)) throw err;
        });
        await this.changes.deleteMany({ _id: { $lte: revId(through) } }, call.opts);
        // The newest reservation stays: the next revision is counted from it.
        const top = await this.topReservation(call);
        await this.revisions.deleteMany({ _id: { $lte: revId(Math.min(through, top - 1)) } }, call.opts);
      }
      return this.trimmedThrough(call);
    });
  }

  onCommit(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  async ping(options: CallOptions = {}): Promise<void> {
    await this.run(options, async (call) => {
      await this.db.command({ ping: 1 }, { signal: call.signal });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.listeners.clear();
    await this.client.close();
  }

  /**
   * Deletes the sessions whose metadata.time.insert is before now - retentionDays, each like
   * delete() (so each deletion takes a revision and is in the change log). Returns how many
   * were deleted; 0 without retentionDays.
   */
  async purgeExpired(now: Date = new Date(), options: CallOptions = {}): Promise<number> {
    const days = this.options.retentionDays;
    if (days === undefined) return 0;
    const before = new Date(now.getTime() - days * DAY_MS);
    let deleted = 0;
    // In batches (the `insert` index, oldest first), so a large backlog is never held in memory.
    for (;;) {
      const expired = await this.run(options, (call) =>
        this.sessions
          .find({ [INSERT]: { $lt: before } }, { ...call.opts, projection: { _id: 1, revision: 1 } })
          .sort({ [INSERT]: 1 })
          .limit(PURGE_BATCH)
          .toArray(),
      );
      let progressed = 0;
      for (const { _id, revision } of expired) {
        try {
          await this.delete(_id, { ...options, expectedRevision: revision });
          deleted++;
          progressed++;
        } catch (err) {
          // Changed or deleted meanwhile: the next sweep sees it again if still expired.
          if (!(err instanceof NotFoundError || err instanceof RevisionConflictError)) throw err;
        }
      }
      if (expired.length < PURGE_BATCH || progressed === 0) return deleted;
    }
  }

  // --- internals ---

  private startTimers(): void {
    if (this.options.retentionDays === undefined) return;
    const t = setInterval(() => {
      this.purgeExpired().catch((err: unknown) => {
        this.options.log?.warn("retention sweep failed; retried on the next tick", { error: String(err) });
      });
    }, this.options.retentionSweepMs ?? DEFAULT_RETENTION_SWEEP_MS);
    t.unref();
    this.timers.add(t);
  }

  /**
   * Runs one port call inside its budget and maps every error to the port's errors. A write's
   * budget is at most MAX_WRITE_MS (see CLAIM_LEASE_MS).
   */
  private async run<T>(options: CallOptions, write: boolean | ((call: Call) => Promise<T>), body?: (call: Call) => Promise<T>): Promise<T> {
    if (typeof write === "function") return this.run(options, false, write);
    if (this.closed) throw new StoreUnavailableError("the session store is closed");
    const max = this.options.maxCallMs ?? DEFAULT_MAX_CALL_MS;
    let budget = this.options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    if (options.deadline !== undefined) budget = Math.min(options.deadline.getTime() - Date.now(), max);
    if (write) budget = Math.min(budget, MAX_WRITE_MS);
    if (budget <= 0) throw new StoreUnavailableError("the deadline has passed");
    const call = new Call(budget, options.signal);
    try {
      return await body!(call);
    } catch (err) {
      throw toStoreError(err, call);
    } finally {
      call.done();
    }
  }

  private async findByRequestId(requestId: string, call: Call): Promise<CreateResult | null> {
    const raw = await this.sessions.findOne({ request_id: requestId }, call.opts);
    return raw ? { session: fromStoredDocument(raw), created: false } : null;
  }

  /**
   * Moves session `id` away from its current revision with `write`, which must write
   * conditionally on {_id: id, revision: from} and return null when nothing matched.
   * With `expected`, a different current revision is a RevisionConflictError; without it, the
   * write is retried on the revision read until it applies.
   */
  private async modify<T>(
    id: string,
    kind: "updated" | "deleted",
    expected: number | undefined,
    call: Call,
    write: (from: number, revision: number, current: StoredSession) => Promise<{ result: T; doc: StoredSession } | null>,
  ): Promise<T> {
    // Writers of one session in this process take turns (claims only arbitrate between
    // processes then); waiting for the turn counts against the call's budget.
    const previous = this.sessionTurns.get(id) ?? Promise.resolve();
    let done!: () => void;
    const turn = new Promise<void>((resolve) => (done = resolve));
    const queued = previous.then(() => turn);
    this.sessionTurns.set(id, queued);
    try {
      await untilAborted(previous, call.signal);
      return await this.modifyNow(id, kind, expected, call, write);
    } finally {
      done();
      if (this.sessionTurns.get(id) === queued) this.sessionTurns.delete(id);
    }
  }

  private async modifyNow<T>(
    id: string,
    kind: "updated" | "deleted",
    expected: number | undefined,
    call: Call,
    write: (from: number, revision: number, current: StoredSession) => Promise<{ result: T; doc: StoredSession } | null>,
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const current = await this.sessions.findOne({ _id: id }, call.opts);
      if (!current) throw new NotFoundError(id);
      if (expected !== undefined && current.revision !== expected) throw new RevisionConflictError(id, expected, current.revision);
      const from = current.revision;
      const reservation: Omit<Reservation, "_id" | "at"> = { id, kind, key: `${id}@${from}`, before: filterFields(current) };
      if (kind === "deleted") reservation.last = current;
      const revision = await this.reserve(call, reservation);
      if (revision === null) {
        // Another process is moving the session away from `from`: wait for it, then re-read.
        // When that takes long, its writer may have died: look at its reservation (a scan on
        // FerretDB, hence not on every attempt).
        if (attempt > 0 && attempt % 4 === 0) await this.recoverClaim(reservation.key!, call);
        await backoff(attempt, call);
        continue;
      }
      // The change that produced `from` must be in the log before the session moves on.
      if (!this.committedHere.has(from)) await this.resolve(from, call);
      let written: { result: T; doc: StoredSession } | null;
      try {
        written = await write(from, revision, current);
      } catch (err) {
        if (isUncertain(err, call)) this.settleLater(revision, call);
        else await this.abort(revision, call);
        throw err;
      }
      if (written) {
        await this.commit(revision, reservation, written.doc, reservation.before ?? null, call);
        return written.result;
      }
      // Unreachable while every writer claims; kept for sessions changed by other means.
      await this.abort(revision, call);
      await backoff(attempt, call);
    }
  }

  /** The largest reservation (0 for none). A scan on FerretDB: only at start and after collisions. */
  private async topReservation(call: Call): Promise<number> {
    const top = await this.revisions.find({}, { ...call.opts, projection: { _id: 1 } }).sort({ _id: -1 }).limit(1).next();
    return top ? revNum(top._id) : 0;
  }

  private async trimmedThrough(call: Call): Promise<number> {
    const top = await this.trims.find({}, { ...call.opts, projection: { _id: 1 } }).sort({ _id: -1 }).limit(1).next();
    return top ? revNum(top._id) : 0;
  }

  /**
   * Hands out the next revision by inserting its reservation (an insert decides, also on
   * FerretDB). With a claim key, returns null when another reservation holds that key.
   */
  private async reserve(call: Call, fields: Omit<Reservation, "_id" | "at">): Promise<number | null> {
    return this.serially(call, () => this.insertReservation(call, fields));
  }

  /**
   * One process's reservations are inserted one at a time: numbers are contiguous, so
   * concurrent inserts in one process would only collide on the same next number.
   */
  private serially<T>(call: Call, task: () => Promise<T>): Promise<T> {
    const previous = this.reserving;
    // Waiting for the turn ends with the call's budget; the next in line still waits for both.
    const result = untilAborted(previous, call.signal).then(task);
    this.reserving = Promise.allSettled([previous, result]);
    return result;
  }

  /**
   * Reservations without claim keys (creates) for several writes: one ordered insertMany of the
   * next numbers; those another process took first are taken one at a time.
   */
  private async insertReservations(fields: Array<Omit<Reservation, "_id" | "at" | "key">>, call: Call): Promise<number[]> {
    if (fields.length === 1) return [(await this.insertReservation(call, fields[0]!))!];
    const first = this.lastReserved > 0 ? this.lastReserved + 1 : await this.firstFree(await this.trimmedThrough(call), call);
    const docs: Reservation[] = fields.map((f, i) => ({ _id: revId(first + i), at: new Date(), ...f }));
    let inserted = docs.length;
    try {
      await this.revisions.insertMany(docs, { ...call.opts, ordered: true });
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError) || err.code !== 11000) throw err;
      inserted = err.result.insertedCount;
    }
    const numbers = docs.slice(0, inserted).map((_, i) => first + i);
    if (inserted > 0) this.lastReserved = first + inserted - 1;
    for (const f of fields.slice(inserted)) numbers.push((await this.insertReservation(call, f))!);
    return numbers;
  }

  /** Inserts the reservation with the next free number; null when its claim key is taken. */
  private async insertReservation(call: Call, fields: Omit<Reservation, "_id" | "at">): Promise<number | null> {
    let candidate = this.lastReserved > 0 ? this.lastReserved + 1 : await this.firstFree(await this.trimmedThrough(call), call);
    for (;;) {
      try {
        await this.revisions.insertOne({ _id: revId(candidate), at: new Date(), ...fields }, call.opts);
        this.lastReserved = candidate;
        return candidate;
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
      }
      // FerretDB does not say which key collided: the number (taken by another process) or the claim.
      if (fields.key !== undefined && !(await this.reserved(candidate, call))) return null;
      candidate = await this.firstFree(candidate, call);
    }
  }

  private async reserved(revision: number, call: Call): Promise<boolean> {
    return (await this.revisions.findOne({ _id: revId(revision) }, { ...call.opts, projection: { _id: 1 } })) !== null;
  }

  /**
   * The first revision after `taken` without a reservation. Reservations after the trimmed
   * prefix are contiguous, so an exponential then binary search by `_id` lookups finds it
   * (no sort: that would read the whole collection on FerretDB).
   */
  private async firstFree(taken: number, call: Call): Promise<number> {
    return firstFreeAfter(taken, (n) => this.reserved(n, call));
  }

  /**
   * Takes the next visit number of `profileId` for `sessionId` (see the header): the first
   * number without a claim, by `_id` lookups; a duplicate means another writer took it first.
   */
  private async claimVisit(profileId: string, sessionId: string, call: Call): Promise<VisitTaken> {
    const claimed = async (n: number) =>
      (await this.visits.findOne({ _id: visitId(profileId, n) }, { ...call.opts, projection: { _id: 1 } })) !== null;
    // The last number this process took for the profile: numbers are contiguous, so it is a
    // valid start, and usually the next one is free (one insert, no lookups). A profile with
    // many visits costs a few lookups, not 2·log2(n).
    const hint = this.visitHints.get(profileId);
    let index = hint ? hint.index + 1 : await firstFreeAfter(0, claimed);
    for (;;) {
      try {
        await this.visits.insertOne({ _id: visitId(profileId, index), profile_id: profileId, index, session_id: sessionId, at: new Date() }, call.opts);
        break;
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
        index = await firstFreeAfter(index, claimed);
      }
    }
    this.rememberVisit(profileId, index, sessionId);
    // The previous visit: known when this process took the number before (and kept it).
    if (hint && hint.index === index - 1) return { claim: visitId(profileId, index), index, previous: hint.sessionId };
    let previous: string | null = null;
    for (let n = index - 1; n >= 1 && n >= index - MAX_VOID_SKIP; n--) {
      const before = await this.visits.findOne({ _id: visitId(profileId, n) }, call.opts);
      if (before && !before.void) {
        previous = before.session_id;
        break;
      }
    }
    return { claim: visitId(profileId, index), index, previous };
  }

  /**
   * Takes consecutive visit numbers of `profileId` for `sessionIds`, in order: one ordered
   * insertMany from the number after this process's last one; whatever another process took
   * first is taken one at a time (claimVisit).
   */
  private async claimVisits(profileId: string, sessionIds: string[], call: Call): Promise<VisitTaken[]> {
    const hint = this.visitHints.get(profileId);
    if (!hint || sessionIds.length === 1) {
      const taken: VisitTaken[] = [];
      for (const id of sessionIds) taken.push(await this.claimVisit(profileId, id, call));
      return taken;
    }
    const first = hint.index + 1;
    const claims = sessionIds.map((id, i) => ({ _id: visitId(profileId, first + i), profile_id: profileId, index: first + i, session_id: id, at: new Date() }));
    let inserted = claims.length;
    try {
      await this.visits.insertMany(claims, { ...call.opts, ordered: true });
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError) || err.code !== 11000) throw err;
      inserted = err.result.insertedCount; // ordered: the claims before the duplicate
    }
    const taken: VisitTaken[] = claims.slice(0, inserted).map((c, i) => ({
      claim: c._id,
      index: c.index,
      previous: i === 0 ? hint.sessionId : claims[i - 1]!.session_id,
    }));
    if (inserted > 0) this.rememberVisit(profileId, claims[inserted - 1]!.index, claims[inserted - 1]!.session_id);
    for (const id of sessionIds.slice(inserted)) taken.push(await this.claimVisit(profileId, id, call));
    return taken;
  }

  private rememberVisit(profileId: string, index: number, sessionId: string): void {
    this.visitHints.delete(profileId);
    this.visitHints.set(profileId, { index, sessionId });
    if (this.visitHints.size > MAX_VISIT_HINTS) this.visitHints.delete(this.visitHints.keys().next().value!);
  }

  private async voidVisit(claim: string, call: Call): Promise<void> {
    // A void number is no one's previous visit: forget it as this process's last one.
    for (const [profileId, hint] of this.visitHints) if (visitId(profileId, hint.index) === claim) this.visitHints.delete(profileId);
    await this.visits.updateOne({ _id: claim }, { $set: { void: true } }, call.opts);
  }

  /** Resolves the reservation holding claim `key` and frees the claim if it was aborted. */
  private async recoverClaim(key: string, call: Call): Promise<void> {
    const holder = await this.revisions.findOne({ key }, { ...call.opts, projection: { _id: 1 } });
    if (!holder) return;
    const state = await this.resolve(revNum(holder._id), call);
    if (state === "aborted") await this.release(revNum(holder._id), call);
  }

  /**
   * The outcomes of revisions first, first + 1, ... up to the first one without an outcome, at
   * most `max`. Point lookups by `_id` (see revId), a growing number of them at a time.
   */
  private async outcomesFrom(first: number, max: number, call: Call, projection?: Record<string, 1>): Promise<Outcome[]> {
    const found: Outcome[] = [];
    let width = 1;
    while (found.length < max) {
      const n = Math.min(width, max - found.length);
      const next = first + found.length;
      const batch = await Promise.all(
        Array.from({ length: n }, (_, i) => this.changes.findOne({ _id: revId(next + i) }, projection ? { ...call.opts, projection } : call.opts)),
      );
      for (const o of batch) {
        if (!o) return found;
        found.push(o);
      }
      width = Math.min(width * 2, 32);
    }
    return found;
  }

  /**
   * Makes sure reservation `revision` has an outcome when that can be known: "committed" when
   * its write is visible in the session, "aborted" when it is not and the reservation is older
   * than `leaseMs`; "pending" otherwise, "none" when there is no such reservation.
   */
  private async resolve(revision: number, call: Call, leaseMs = CLAIM_LEASE_MS, outcomeChecked = false): Promise<Resolution> {
    if (!outcomeChecked) {
      const outcome = await this.changes.findOne({ _id: revId(revision) }, { ...call.opts, projection: { aborted: 1 } });
      if (outcome) return outcome.aborted ? "aborted" : "committed";
    }
    const res = await this.revisions.findOne({ _id: revId(revision) }, call.opts);
    if (!res) return "none";
    const session = await this.sessions.findOne({ _id: res.id }, call.opts);
    const from = res.key === undefined ? undefined : Number(res.key.slice(res.key.lastIndexOf("@") + 1));
    // Nobody moves a session away from a revision before that revision has its outcome, so a
    // session at `revision` shows the change's result, and a deleted one is gone from `from`.
    if (res.kind === "deleted" ? !session || session.revision !== from : session?.revision === revision) {
      const doc = res.kind === "deleted" ? res.last! : session!;
      return this.commit(revision, res, doc, res.before ?? null, call);
    }
    if (Date.now() - res.at.getTime() < leaseMs) return "pending";
    return this.abort(revision, call, res);
  }

  /** Records that `revision` changed the session; returns the outcome that stands. */
  private async commit(
    revision: number,
    res: Pick<Reservation, "id" | "kind">,
    doc: StoredSession,
    before: FilterFields | null,
    call: Call,
  ): Promise<Resolution> {
    const outcome: Outcome = { _id: revId(revision), at: new Date(), id: res.id, kind: res.kind, doc: logDoc(doc, revision), before };
    const state = await this.settle(outcome, call);
    if (state === "committed") {
      this.committedHere.add(revision);
      if (this.committedHere.size > 10_000) this.committedHere.delete(this.committedHere.values().next().value!);
      this.notify();
    }
    return state;
  }

  /** Records that `revision` changed nothing and frees its claim. */
  private async abort(revision: number, call: Call, res?: Reservation): Promise<Resolution> {
    const r = res ?? (await this.revisions.findOne({ _id: revId(revision) }, call.opts));
    const state = await this.settle({ _id: revId(revision), at: new Date(), id: r?.id ?? "", kind: r?.kind ?? "updated", aborted: true }, call);
    if (state === "aborted") await this.release(revision, call);
    return state;
  }

  /** Inserts an outcome; the first one inserted stands. Failures leave it to resolve(). */
  private async settle(outcome: Outcome, call: Call): Promise<Resolution> {
    try {
      await this.changes.insertOne(outcome, call.opts);
      return outcome.aborted ? "aborted" : "committed";
    } catch (err) {
      if (!isDuplicateKey(err)) {
        // The write itself is done; the outcome follows when someone resolves the revision.
        this.options.log?.warn("recording a change failed; it is resolved later", { revision: outcome._id, error: String(err) });
        return "pending";
      }
      const standing = await this.changes.findOne({ _id: outcome._id }, { ...call.opts, projection: { aborted: 1 } });
      return standing?.aborted ? "aborted" : "committed";
    }
  }

  private async release(revision: number, call: Call): Promise<void> {
    await this.revisions.updateOne({ _id: revId(revision) }, { $unset: { key: "" } }, call.opts);
  }

  /**
   * After a write whose result is unknown (deadline, lost connection): once the call's budget
   * is over, the server has finished or dropped the write (maxTimeMS), so the reservation can be
   * resolved without waiting for the lease. Best effort; the lease covers the rest.
   */
  private settleLater(revision: number, call: Call): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (this.closed) return;
      this.run({}, (c) => this.resolve(revision, c, 0)).catch((err: unknown) => {
        this.options.log?.warn("resolving an interrupted write failed; the lease resolves it", { revision, error: String(err) });
      });
    }, Math.max(0, call.end - Date.now()) + 2_000);
    t.unref();
    this.timers.add(t);
  }

  /** The end of the gap-free prefix of the log. */
  private async head(call: Call): Promise<number> {
    let safe = Math.max(this.frontier, await this.trimmedThrough(call));
    for (;;) {
      const batch = await this.outcomesFrom(safe + 1, READ_BATCH, call, { _id: 1 });
      if (batch.length > 0) safe = revNum(batch[batch.length - 1]!._id);
      if (batch.length === READ_BATCH) continue;
      const state = await this.resolve(safe + 1, call, CLAIM_LEASE_MS, true);
      if (state === "pending" || state === "none") break;
    }
    this.frontier = Math.max(this.frontier, safe);
    return safe;
  }

  private notify(): void {
    for (const listener of this.listeners) {
      try {
        listener();
      } catch (err) {
        this.options.log?.warn("an onCommit listener threw", { error: String(err) });
      }
    }
  }
}

/**
 * The first number after `taken` for which `exists` is false, for numbers taken contiguously
 * from 1 (every number up to the first free one exists): an exponential, then a binary search.
 */
async function firstFreeAfter(taken: number, exists: (n: number) => Promise<boolean>): Promise<number> {
  let low = taken; // taken (or 0)
  let step = 1;
  while (await exists(low + step)) {
    low += step;
    step *= 2;
  }
  let high = low + step; // free
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    if (await exists(mid)) low = mid;
    else high = mid;
  }
  return high;
}

/** Sessions whose latest activity (update, else insert) is before `instant`. */
function activeBefore(instant: Date): Filter<StoredSession> {
  return { $or: [{ "metadata.time.update": { $lt: instant } }, { "metadata.time.update": null, [INSERT]: { $lt: instant } }] };
}

/** Settles like `promise`, or rejects with the signal's reason when it aborts first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

async function backoff(attempt: number, call: Call): Promise<void> {
  const ms = 1 + Math.random() * Math.min(50, 2 ** attempt);
  await sleep(ms, undefined, { signal: call.signal });
}
