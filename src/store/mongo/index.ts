// MongoDB adapter of the store port (src/domain/store.ts). This class only composes the parts:
//   codec.ts        SessionDoc <-> stored document
//   errors.ts       driver errors -> the port's typed errors
//   call.ts         the budget of each call (AbortSignal + maxTimeMS)
//   collections.ts  collections and indexes
//   reservations.ts handing out revisions (insert-only reservations and claims)
//   changes.ts      the change log: outcomes, readChanges, headRevision, trimming, onCommit
//   writes.ts       update and delete (conditional writes, one revision at a time)
//   batch.ts        group commit of creates
//   visits.ts       visit numbering
//   queries.ts      list, findExpired, stats
//   erase.ts        erasure (eraseSessions, eraseTraces)
// Only inserts decide anything (reservations, claims, outcomes), so the same code is correct on a
// standalone MongoDB, a replica set and FerretDB, whose updates are not atomic. What is stored,
// and how FerretDB differs: docs/mongodb.md; the write and change-log protocol: docs/watch.md.

import { MongoClient, type Db, type WriteConcernSettings } from "mongodb";

import type { SessionDoc } from "../../domain/session";
import { NotFoundError } from "../../domain/errors";
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
import type { Logger } from "../../log";
import { CreateBatcher } from "./batch";
import { CallRunner } from "./call";
import { ChangeLog } from "./changes";
import { fromStoredDocument } from "./codec";
import { createIndexes, DEFAULT_WRITE_CONCERN, openCollections, type MongoCollections } from "./collections";
import { MongoErasure } from "./erase";
import { toStoreError } from "./errors";
import { findExpired, listSessions, sessionStats } from "./queries";
import { Reservations } from "./reservations";
import { VisitNumbers } from "./visits";
import { SessionWriter } from "./writes";

export { revId } from "./changes";
export { fromStoredDocument, patchToUpdate, toStoredDocument, unwrapNestedArrays, wrapNestedArrays, type StoredSession } from "./codec";
export { SESSION_INDEXES } from "./collections";
export { visitId } from "./visits";

export interface MongoStoreOptions {
  uri: string;
  database: string;
  /** Default { w: "majority", journal: true }. */
  writeConcern?: WriteConcernSettings;
  /** Budget of a call that has no deadline; default 5 s. */
  timeoutMs?: number;
  /** Upper bound of any call's budget, also with a later deadline; default 30 s. */
  maxCallMs?: number;
  /** Default 5 s; bounds connect(). */
  serverSelectionTimeoutMs?: number;
  maxPoolSize?: number;
  appName?: string;
  /** Receives the server kind and failures of background work. */
  log?: Logger;
}

export class MongoSessionStore implements SessionStore {
  readonly kind = "mongodb";
  private readonly calls: CallRunner;
  private readonly changeLog: ChangeLog;
  private readonly writer: SessionWriter;
  private readonly batcher: CreateBatcher;
  private readonly erasure: MongoErasure;

  private constructor(
    private readonly client: MongoClient,
    private readonly db: Db,
    private readonly collections: MongoCollections,
    /** The server is FerretDB: nested arrays are wrapped (see wrapNestedArrays). */
    readonly ferret: boolean,
    options: MongoStoreOptions,
  ) {
    this.calls = new CallRunner(options);
    const reservations = new Reservations(collections);
    const visitNumbers = new VisitNumbers(collections.visits);
    this.changeLog = new ChangeLog(collections, reservations, this.calls, options.log);
    this.writer = new SessionWriter(collections, reservations, this.changeLog, visitNumbers, ferret);
    this.batcher = new CreateBatcher(collections, reservations, this.changeLog, visitNumbers, this.calls, ferret, options.log);
    this.erasure = new MongoErasure(collections, this.calls, this.writer, visitNumbers);
  }

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
      const collections = openCollections(db, options.writeConcern ?? DEFAULT_WRITE_CONCERN);
      const info = await db.admin().command({ buildInfo: 1 });
      const ferret = typeof info["ferretdbVersion"] === "string";
      await createIndexes(collections);
      const server = ferret ? `FerretDB ${String(info["ferretdbVersion"])}` : `MongoDB ${String(info["version"])}`;
      options.log?.info("mongodb store ready", { database: options.database, server });
      return new MongoSessionStore(client, db, collections, ferret, options);
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
    return this.calls.run(options, true, (call) => this.batcher.create(doc, options, call));
  }

  async get(id: string, options: CallOptions = {}): Promise<SessionDoc> {
    return this.calls.run(options, async (call) => {
      const raw = await this.collections.sessions.findOne({ _id: id }, call.opts);
      if (!raw) throw new NotFoundError(id);
      return fromStoredDocument(raw);
    });
  }

  async update(id: string, patch: SessionPatch, options: UpdateOptions = {}): Promise<SessionDoc> {
    const visitIn = options.numberVisitIn;
    return this.calls.run(options, true, (call) => this.writer.update(id, patch, options.expectedRevision, visitIn, call));
  }

  async delete(id: string, options: ConditionalOptions = {}): Promise<{ revision: number }> {
    return this.calls.run(options, true, (call) => this.writer.delete(id, options.expectedRevision, call));
  }

  async eraseSessions(profileId: string, limit: number, options: CallOptions = {}): Promise<EraseSessionsResult> {
    return this.erasure.eraseSessions(profileId, limit, options);
  }

  async eraseTraces(profileId: string, limit: number, options: CallOptions = {}): Promise<EraseTracesResult> {
    return this.erasure.eraseTraces(profileId, limit, options);
  }

  async list(query: ListQuery, options: CallOptions = {}): Promise<SessionDoc[]> {
    return this.calls.run(options, (call) => listSessions(this.collections.sessions, query, call));
  }

  async findExpired(query: ExpiryQuery, options: CallOptions = {}): Promise<SessionDoc[]> {
    return this.calls.run(options, (call) => findExpired(this.collections.sessions, query, call));
  }

  async stats(query: StatsQuery, options: CallOptions = {}): Promise<StatsResult> {
    return this.calls.run(options, (call) => sessionStats(this.collections.sessions, query, call));
  }

  async readChanges(after: number, limit: number, options: CallOptions = {}): Promise<ChangeBatch> {
    return this.calls.run(options, (call) => this.changeLog.readChanges(after, limit, call));
  }

  async headRevision(options: CallOptions = {}): Promise<number> {
    return this.calls.run(options, (call) => this.changeLog.head(call));
  }

  async snapshotRevision(options: CallOptions = {}): Promise<number> {
    return this.calls.run(options, (call) => this.changeLog.snapshotRevision(call));
  }

  async trimChanges(before: Date, options: CallOptions = {}): Promise<number> {
    return this.calls.run(options, (call) => this.changeLog.trimChanges(before, call));
  }

  onCommit(listener: () => void): () => void {
    return this.changeLog.onCommit(listener);
  }

  async ping(options: CallOptions = {}): Promise<void> {
    await this.calls.run(options, async (call) => {
      await this.db.command({ ping: 1 }, { signal: call.signal });
    });
  }

  async close(): Promise<void> {
    if (this.calls.closed) return;
    this.calls.closed = true;
    this.changeLog.close();
    await this.client.close();
  }
}
