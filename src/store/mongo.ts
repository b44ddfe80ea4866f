// MongoDB adapter of the store port (src/store/port.ts).
//
// Layout, in the database given to connect():
//   sessions   one document per session: `_id` = session id, every other field exactly the
//              SessionDoc shape (snake_case, Dates as BSON dates, embedded documents, nulls kept),
//              plus `revision`, plus `request_id` only when the create carried a requestId (the
//              idempotency key; internal, never returned).
//   counters   { _id: "revision", value }: the store-wide revision counter.
//   revisions  only in "claims" mode (below): { _id: revision, at, key? }.
//
// Writes: every create/update/delete takes the next revision first, then writes conditionally on
// the revision it read ({_id, revision}), so a stale writer changes nothing and a session's
// revision only grows. Revisions are taken before the write they stamp, so under concurrency two
// writes can commit in the other order than their revisions (no transactions are used); a reader
// that follows revisions must allow for that.
//
// Running on FerretDB (v1.x, the test database) instead of MongoDB. The code is the same; what
// differs is detected at connect (buildInfo.ferretdbVersion) and documented here:
// - No change streams and no multi-document transactions: nothing here uses them.
// - FerretDB applies update, findAndModify and delete as read-modify-write without isolation: two
//   concurrent `$inc`s can return the same value, and two conditional updates of one document can
//   both "match" (measured: 200 concurrent $inc gave 22 distinct values). Only inserts are atomic
//   (unique indexes hold). So on FerretDB the adapter runs in "claims" mode: a revision is taken by
//   inserting { _id: revision } into `revisions`, and a write of session X from revision R first
//   inserts the claim key "X@R" (unique index), so exactly one writer moves X away from R; the
//   claim is released after the write. A claim left by a crashed process expires after
//   CLAIM_LEASE_MS. On MongoDB ("atomic" mode) the counter's $inc and the conditional writes are
//   atomic and `revisions` is not used.
// - Index options `partialFilterExpression` and `expireAfterSeconds` are not implemented (error
//   238 NotImplemented) and `sparse` is accepted but ignored; a missing field never collides in a
//   FerretDB unique index, so `request_id` is a unique sparse index (never written as null).
//   Retention is therefore a sweep (purgeExpired), not a TTL index.
// - Duplicate-key errors (11000) carry no keyPattern/keyValue; the adapter re-reads to tell which
//   key collided instead.
// - writeConcern is accepted and ignored; maxTimeMS is honoured by find/findAndModify only.
// Deadlines are enforced on the client with an AbortSignal per call (the driver's timeoutMS is a
// no-op in driver 7), plus maxTimeMS so a real MongoDB stops the work too.

import { setTimeout as sleep } from "node:timers/promises";
import {
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
  DomainError,
  NotFoundError,
  RevisionConflictError,
  StoreUnavailableError,
} from "../domain/errors";
import type { Logger } from "../log";
import { emptySessionDoc, type JsonObject, type SessionDoc } from "../domain/session";
import type {
  CallOptions,
  ConditionalOptions,
  CreateOptions,
  CreateResult,
  ListQuery,
  SessionPatch,
  SessionStore,
} from "./port";

/** How writes are made safe under concurrency; see the header. "auto" detects FerretDB. */
export type WriteMode = "auto" | "atomic" | "claims";

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
  writeMode?: WriteMode;
  appName?: string;
  /** Receives the detected write mode and failures of background sweeps. */
  log?: Logger;
}

/** A stored session: SessionDoc without `id`, plus `_id`, `revision` and maybe `request_id`. */
export type StoredSession = Omit<SessionDoc, "id"> & { _id: string; request_id?: string };

interface CounterDoc {
  _id: string;
  value: number;
}

interface RevisionDoc {
  _id: number;
  at: Date;
  /** "<session id>@<revision it moves away from>" while the write is in flight. */
  key?: string;
}

const SESSIONS = "sessions";
const COUNTERS = "counters";
const REVISIONS = "revisions";
const REVISION_COUNTER = "revision";
const DEFAULT_WRITE_CONCERN: WriteConcernSettings = { w: "majority", journal: true };
const DEFAULT_CALL_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_CALL_MS = 30_000;
const DEFAULT_RETENTION_SWEEP_MS = 3_600_000;
/** A claim older than this is abandoned (its writer gave up long ago: calls are capped). */
const CLAIM_LEASE_MS = 120_000;
const DAY_MS = 86_400_000;

const INSERT = "metadata.time.insert";

/** Every query of the adapter has an index; names are stable so creation is idempotent. */
export const SESSION_INDEXES: IndexDescription[] = [
  { name: "profile_insert", key: { "profile.id": 1, [INSERT]: -1, _id: -1 } },
  { name: "status_insert", key: { "metadata.status": 1, [INSERT]: -1, _id: -1 } },
  { name: "channel_insert", key: { "metadata.channel": 1, [INSERT]: -1, _id: -1 } },
  { name: "insert", key: { [INSERT]: -1, _id: -1 } },
  { name: "revision", key: { revision: 1 } },
  // Sparse, not partial: FerretDB has no partialFilterExpression (see the header).
  { name: "request_id", key: { request_id: 1 }, unique: true, sparse: true },
];

const REVISION_INDEXES: IndexDescription[] = [
  { name: "key", key: { key: 1 }, unique: true, sparse: true },
  { name: "at", key: { at: 1 } },
];

type Raw = Record<string, unknown>;

/** A plain object from any realm (structuredClone and test runners make objects of another). */
function isPlainObject(value: unknown): value is Raw {
  if (typeof value !== "object" || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === null || Object.getPrototypeOf(proto) === null;
}
const isObject = isPlainObject;

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
  return isObject(value) ? value : {};
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
    profile: isObject(profile)
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
  private readonly end: number;
  constructor(budgetMs: number) {
    this.end = Date.now() + budgetMs;
    this.timer = setTimeout(() => this.controller.abort(new Error("deadline exceeded")), budgetMs);
    this.timer.unref();
  }
  get signal(): AbortSignal {
    return this.controller.signal;
  }
  /** Options for a driver call; `signal` is honoured by every operation in driver 7. */
  get opts(): { signal: AbortSignal; maxTimeMS: number } {
    return { signal: this.controller.signal, maxTimeMS: Math.max(1, Math.ceil(this.end - Date.now())) };
  }
  done(): void {
    clearTimeout(this.timer);
  }
}

// --- the store ---

export class MongoSessionStore implements SessionStore {
  readonly kind = "mongodb";
  private closed = false;
  private readonly timers: NodeJS.Timeout[] = [];

  private constructor(
    private readonly client: MongoClient,
    private readonly db: Db,
    private readonly sessions: Collection<StoredSession>,
    private readonly counters: Collection<CounterDoc>,
    private readonly revisions: Collection<RevisionDoc>,
    /** "atomic" on MongoDB, "claims" on FerretDB (see the header). */
    readonly writeMode: "atomic" | "claims",
    /** The server is FerretDB: nested arrays are wrapped (see wrapNestedArrays). */
    private readonly ferret: boolean,
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
      const counters = db.collection<CounterDoc>(COUNTERS, { writeConcern });
      const revisions = db.collection<RevisionDoc>(REVISIONS, { writeConcern });

      const info = await db.admin().command({ buildInfo: 1 });
      const ferret = typeof info["ferretdbVersion"] === "string";
      let mode = options.writeMode ?? "auto";
      if (mode === "auto") mode = ferret ? "claims" : "atomic";
      await sessions.createIndexes(SESSION_INDEXES);
      if (mode === "claims") await revisions.createIndexes(REVISION_INDEXES);

      options.log?.info("mongodb store ready", { database: options.database, server: ferret ? `FerretDB ${String(info["ferretdbVersion"])}` : `MongoDB ${String(info["version"])}`, write_mode: mode });
      const store = new MongoSessionStore(client, db, sessions, counters, revisions, mode, ferret, options);
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
    return this.run(options, async (call) => {
      const requestId = options.requestId;
      if (requestId !== undefined) {
        const replay = await this.findByRequestId(requestId, call);
        if (replay) return replay;
      }
      const revision = await this.nextRevision(call, 0);
      const stored = toStoredDocument(doc, revision, requestId, this.ferret);
      try {
        await this.sessions.insertOne(stored, call.opts);
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
        // FerretDB does not say which key collided: the request_id (a concurrent replay) or _id.
        if (requestId !== undefined) {
          const replay = await this.findByRequestId(requestId, call);
          if (replay) return replay;
        }
        throw new AlreadyExistsError(doc.id);
      }
      return { session: fromStoredDocument(stored), created: true };
    });
  }

  async get(id: string, options: CallOptions = {}): Promise<SessionDoc> {
    return this.run(options, async (call) => {
      const raw = await this.sessions.findOne({ _id: id }, call.opts);
      if (!raw) throw new NotFoundError(id);
      return fromStoredDocument(raw);
    });
  }

  async update(id: string, patch: SessionPatch, options: ConditionalOptions = {}): Promise<SessionDoc> {
    return this.run(options, (call) =>
      this.conditionalWrite(id, options.expectedRevision, call, async (from, revision) => {
        const after = await this.sessions.findOneAndUpdate({ _id: id, revision: from }, patchToUpdate(patch, revision, this.ferret), {
          ...call.opts,
          returnDocument: "after",
        });
        return after ? fromStoredDocument(after) : null;
      }),
    );
  }

  async delete(id: string, options: ConditionalOptions = {}): Promise<{ revision: number }> {
    return this.run(options, (call) =>
      this.conditionalWrite(id, options.expectedRevision, call, async (from, revision) => {
        const res = await this.sessions.deleteOne({ _id: id, revision: from }, call.opts);
        return res.deletedCount === 1 ? { revision } : null;
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

  async ping(options: CallOptions = {}): Promise<void> {
    await this.run(options, async (call) => {
      await this.db.command({ ping: 1 }, { signal: call.signal });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    await this.client.close();
  }

  /**
   * Deletes the sessions whose metadata.time.insert is before now - retentionDays, each like
   * delete() (so each deletion takes a revision). Returns how many were deleted; 0 without
   * retentionDays.
   */
  async purgeExpired(now: Date = new Date(), options: CallOptions = {}): Promise<number> {
    const days = this.options.retentionDays;
    if (days === undefined) return 0;
    const before = new Date(now.getTime() - days * DAY_MS);
    const expired = await this.run(options, (call) =>
      this.sessions
        .find({ [INSERT]: { $lt: before } }, { ...call.opts, projection: { _id: 1, revision: 1 } })
        .toArray(),
    );
    let deleted = 0;
    for (const { _id, revision } of expired) {
      try {
        await this.delete(_id, { ...options, expectedRevision: revision });
        deleted++;
      } catch (err) {
        // Changed or deleted meanwhile: the next sweep sees it again if still expired.
        if (!(err instanceof NotFoundError || err instanceof RevisionConflictError)) throw err;
      }
    }
    return deleted;
  }

  // --- internals ---

  private startTimers(): void {
    if (this.options.retentionDays !== undefined) {
      const t = setInterval(() => {
        this.purgeExpired().catch((err: unknown) => {
          this.options.log?.warn("retention sweep failed; retried on the next tick", { error: String(err) });
        });
      }, this.options.retentionSweepMs ?? DEFAULT_RETENTION_SWEEP_MS);
      t.unref();
      this.timers.push(t);
    }
    if (this.writeMode === "claims") {
      // Forget revisions (and abandoned claims) older than the lease; keep the newest.
      const t = setInterval(() => {
        this.pruneRevisions().catch((err: unknown) => {
          this.options.log?.warn("pruning old revisions failed; retried on the next tick", { error: String(err) });
        });
      }, CLAIM_LEASE_MS / 2);
      t.unref();
      this.timers.push(t);
    }
  }

  private async pruneRevisions(): Promise<void> {
    const newest = await this.revisions.find({}, { projection: { _id: 1 } }).sort({ _id: -1 }).limit(1).next();
    if (!newest) return;
    await this.revisions.deleteMany({ _id: { $lt: newest._id }, at: { $lt: new Date(Date.now() - CLAIM_LEASE_MS) } });
  }

  /** Runs one port call inside its budget and maps every error to the port's errors. */
  private async run<T>(options: CallOptions, body: (call: Call) => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreUnavailableError("the session store is closed");
    const max = this.options.maxCallMs ?? DEFAULT_MAX_CALL_MS;
    let budget = this.options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    if (options.deadline !== undefined) budget = Math.min(options.deadline.getTime() - Date.now(), max);
    if (budget <= 0) throw new StoreUnavailableError("the deadline has passed");
    const call = new Call(budget);
    try {
      return await body(call);
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

  private async currentRevision(id: string, call: Call): Promise<number | null> {
    const raw = await this.sessions.findOne({ _id: id }, { ...call.opts, projection: { revision: 1 } });
    return raw ? raw.revision : null;
  }

  /**
   * Moves session `id` from revision `from` to a new revision with `write`, which must write
   * conditionally on {_id: id, revision: from} and return null when nothing matched.
   * With `expected`, from = expected and a mismatch is a RevisionConflictError; without it, from
   * is the revision read just before, and the write is retried until it applies.
   */
  private async conditionalWrite<T>(
    id: string,
    expected: number | undefined,
    call: Call,
    write: (from: number, revision: number) => Promise<T | null>,
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const current = await this.currentRevision(id, call);
      if (current === null) throw new NotFoundError(id);
      if (expected !== undefined && current !== expected) throw new RevisionConflictError(id, expected, current);
      const from = current;

      const revision = this.writeMode === "claims" ? await this.claim(id, from, call) : await this.nextRevision(call, from);
      if (revision === null) {
        // Another writer holds the claim on `from` and is about to move the session on: wait
        // for it, then re-read (a conditional caller then gets the conflict with the new revision).
        await backoff(attempt, call);
        continue;
      }
      let result: T | null;
      try {
        result = await write(from, revision);
      } catch (err) {
        // Free the claim without waiting (the store may be down; then the lease frees it).
        if (this.writeMode === "claims") void this.release(revision);
        throw err;
      }
      if (this.writeMode === "claims") await this.release(revision);
      if (result !== null) return result;

      const now = await this.currentRevision(id, call);
      if (now === null) throw new NotFoundError(id);
      if (expected !== undefined) throw new RevisionConflictError(id, expected, now);
      await backoff(attempt, call);
    }
  }

  /** The next revision, greater than `floor`. */
  private async nextRevision(call: Call, floor: number): Promise<number> {
    if (this.writeMode === "claims") return (await this.insertRevision(call, floor, undefined)) as number;
    for (;;) {
      try {
        const doc = await this.counters.findOneAndUpdate(
          { _id: REVISION_COUNTER },
          { $inc: { value: 1 } },
          { ...call.opts, upsert: true, returnDocument: "after" },
        );
        return doc!.value;
      } catch (err) {
        if (!isDuplicateKey(err)) throw err; // two first upserts raced: the counter exists now
      }
    }
  }

  /** Claims mode: a new revision that also holds the claim "id@from"; null when taken. */
  private async claim(id: string, from: number, call: Call): Promise<number | null> {
    return this.insertRevision(call, from, `${id}@${from}`);
  }

  /**
   * Claims mode: takes a revision by inserting it into `revisions` (inserts are atomic on
   * FerretDB, updates are not). The counter only gives a starting point. With `key`, the same
   * insert takes the claim; returns null when someone else holds it.
   */
  private async insertRevision(call: Call, floor: number, key: string | undefined): Promise<number | null> {
    const counter = await this.counters.findOne({ _id: REVISION_COUNTER }, call.opts);
    let candidate = Math.max(counter?.value ?? 0, floor) + 1;
    for (;;) {
      const doc: RevisionDoc = { _id: candidate, at: new Date() };
      if (key !== undefined) doc.key = key;
      try {
        await this.revisions.insertOne(doc, call.opts);
        break;
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
      }
      if (key !== undefined) {
        const holder = await this.revisions.findOne({ key }, call.opts);
        if (holder) {
          if (holder.at.getTime() > Date.now() - CLAIM_LEASE_MS) return null;
          // Abandoned by a writer that died: free it and try again.
          await this.revisions.deleteOne({ _id: holder._id, key }, call.opts);
          continue;
        }
      }
      candidate++;
    }
    // A hint only: lost or reordered updates of it cost extra attempts, never a duplicate.
    await this.counters
      .updateOne({ _id: REVISION_COUNTER }, { $max: { value: candidate } }, { ...call.opts, upsert: true })
      .catch((err: unknown) => {
        if (!isDuplicateKey(err)) throw err;
      });
    return candidate;
  }

  /** Claims mode: frees the claim after the write (the revision itself stays taken). */
  private async release(revision: number): Promise<void> {
    // Not bound to the call's signal: it must happen even when the call just ran out of time.
    await this.revisions.updateOne({ _id: revision }, { $unset: { key: "" } }).catch(() => undefined);
  }
}

async function backoff(attempt: number, call: Call): Promise<void> {
  const ms = Math.random() * Math.min(50, 2 ** attempt);
  await sleep(ms, undefined, { signal: call.signal });
}
