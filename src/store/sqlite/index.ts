// The embedded default store: one SQLite file (better-sqlite3) in the data directory, worked on
// by worker threads so that no query ever runs on the service's event loop (docs/reliability.md,
// "Nothing blocks the process").
//
// Why threads. better-sqlite3 is synchronous: on the event loop, a statistics query over a large
// store would hold every other call (health included), and a frozen file system or another
// process's write lock would hold them for as long as it lasted. Chunking the queries would bound
// the CPU slices but not a stall in the file system or a lock wait; an asynchronous driver for
// SQLite does not exist in this dependency set. Threads keep the synchronous engine (engine.ts)
// and move all of it off the loop:
// - one writer thread owns the read-write connection: every write (group commit: the writes
//   posted in one burst arrive together and share a transaction), trimming, the checkpointer
//   (its own thread, started by the engine) and the write probe of `ping`;
// - up to `readers` reader threads, started on demand, each with a read-only connection: get,
//   list, stats, findExpired, readChanges, headRevision. WAL lets them read while the writer
//   writes or waits for a lock, so a stalled writer does not stall reads. The first reader is
//   kept for the short reads (get, readChanges, the revisions); the long ones (stats, list,
//   findExpired) use the others, so that statistics over a million sessions never hold up a
//   GetSession or a watch (with `readers` = 1 they share the one thread).
// This class implements the SessionStore port on the main thread by posting each call to a
// thread and awaiting its answer (threads.ts); typed errors are rebuilt as the same classes with
// their fields (errors.ts).
//
// Queueing. Calls wait for a thread in bounded queues (a call beyond `queueLimit` fails at once
// with StoreUnavailableError). A queued call leaves as soon as its signal aborts or its deadline
// passes (StoreUnavailableError). Once handed to a thread, a read is abandoned on abort or
// deadline (it rejects at once, its late answer is dropped); a write is never abandoned: it is
// reported as the writer reports it (the engine refuses a write whose deadline passed before its
// batch ran, and bounds its wait for another process's lock by the latest deadline), so a write
// is never reported failed yet applied.
//
// Failures. A thread that dies (a crash, a driver abort) fails the calls it held with
// StoreUnavailableError (their outcome is unknown: a write may have committed) and is started
// again by the next call that needs it. `ping` is the writer's write probe (BEGIN IMMEDIATE,
// ROLLBACK, bounded by the deadline; after a failed write batch it commits a no-op write; then
// one byte written to `sessions.db-probe` and a free-space check, see SqliteEngine.probeWrite),
// so it fails while the store cannot write: another process holds the write lock, the disk is
// frozen or full. Health relies on that (src/rpc/health.ts).
//
// Cost: a structured clone of each call's arguments and result and a thread hop each way, with
// the calls of one event-loop turn posted as one message (and answered likewise): less CPU on
// the event loop per call, more in the whole process (bench/store-bench.ts measures both).

import fs from "node:fs";
import path from "node:path";

import { StoreUnavailableError } from "../../domain/errors";
import type { SessionDoc } from "../../domain/session";
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
import { cloneDoc } from "../patch";
import { CommitListeners } from "./changes";
import { SqliteEngine } from "./engine";
import { READER_IN_FLIGHT, ThreadPool, WRITER_IN_FLIGHT } from "./threads";
import type { CreateAnswer } from "./worker";

export { MIN_FREE_BYTES } from "./engine";

export interface SqliteStoreOptions {
  /** Reader threads at most (started on demand); default 2. */
  readers?: number;
  /** Calls waiting for a thread at most; more fail with StoreUnavailableError. Default 10,000. */
  queueLimit?: number;
  /** Calls the writer holds at once (default WRITER_IN_FLIGHT); for tests and benchmarks. */
  writerInFlight?: number;
  /** Calls a reader holds at once (default READER_IN_FLIGHT); for tests and benchmarks. */
  readerInFlight?: number;
}

export const DEFAULT_SQLITE_READERS = 2;
export const DEFAULT_SQLITE_QUEUE_LIMIT = 10_000;

export class SqliteSessionStore implements SessionStore {
  readonly kind = "sqlite";

  private readonly pool: ThreadPool;
  private readonly commitListeners = new CommitListeners();

  /** Opens (creating if needed) `<dataDir>/sessions.db`. */
  static open(dataDir: string, options: SqliteStoreOptions = {}): SqliteSessionStore {
    const file = path.join(dataDir, "sessions.db");
    // Once, at start, on this thread: so that a file that cannot be opened fails the start
    // with its reason, and the threads find the schema in place.
    try {
      fs.mkdirSync(dataDir, { recursive: true });
    } catch (err) {
      throw new StoreUnavailableError(`cannot open the SQLite store at ${file}: ${(err as Error).message}`, { cause: err });
    }
    SqliteEngine.setUp(file);
    return new SqliteSessionStore(file, options);
  }

  private constructor(file: string, options: SqliteStoreOptions) {
    this.pool = new ThreadPool(file, {
      readers: Math.max(1, options.readers ?? DEFAULT_SQLITE_READERS),
      queueLimit: Math.max(1, options.queueLimit ?? DEFAULT_SQLITE_QUEUE_LIMIT),
      writerInFlight: Math.max(1, options.writerInFlight ?? WRITER_IN_FLIGHT),
      readerInFlight: Math.max(1, options.readerInFlight ?? READER_IN_FLIGHT),
      committed: () => this.commitListeners.notify(),
    });
  }

  async create(doc: SessionDoc, options?: CreateOptions): Promise<CreateResult> {
    // Our own copy, taken now (the call may wait in the queue); the writer answers only what it
    // added (see CreateAnswer).
    const session = cloneDoc(doc);
    const answer = (await this.pool.call("create", [session, plain(options)], options, "write")) as CreateAnswer;
    if (!answer.created) return { session: answer.session, created: false };
    session.revision = answer.revision;
    session.session_index = answer.session_index;
    session.previous_session_id = answer.previous_session_id;
    return { session, created: true };
  }

  async get(id: string, options?: CallOptions): Promise<SessionDoc> {
    return this.pool.call("get", [id, plain(options)], options, "short") as Promise<SessionDoc>;
  }

  async update(id: string, patch: SessionPatch, options?: UpdateOptions): Promise<SessionDoc> {
    return this.pool.call("update", [id, patch, plain(options)], options, "write") as Promise<SessionDoc>;
  }

  async delete(id: string, options?: ConditionalOptions): Promise<{ revision: number }> {
    return this.pool.call("delete", [id, plain(options)], options, "write") as Promise<{ revision: number }>;
  }

  async eraseSessions(profileId: string, limit: number, options?: CallOptions): Promise<EraseSessionsResult> {
    return this.pool.call("eraseSessions", [profileId, limit, plain(options)], options, "write") as Promise<EraseSessionsResult>;
  }

  async eraseTraces(profileId: string, limit: number, options?: CallOptions): Promise<EraseTracesResult> {
    return this.pool.call("eraseTraces", [profileId, limit, plain(options)], options, "write") as Promise<EraseTracesResult>;
  }

  async list(query: ListQuery, options?: CallOptions): Promise<SessionDoc[]> {
    return this.pool.call("list", [query, plain(options)], options, "long") as Promise<SessionDoc[]>;
  }

  async findExpired(query: ExpiryQuery, options?: CallOptions): Promise<SessionDoc[]> {
    return this.pool.call("findExpired", [query, plain(options)], options, "long") as Promise<SessionDoc[]>;
  }

  async stats(query: StatsQuery, options?: CallOptions): Promise<StatsResult> {
    return this.pool.call("stats", [query, plain(options)], options, "long") as Promise<StatsResult>;
  }

  async readChanges(after: number, limit: number, options?: CallOptions): Promise<ChangeBatch> {
    return this.pool.call("readChanges", [after, limit, plain(options)], options, "short") as Promise<ChangeBatch>;
  }

  async headRevision(options?: CallOptions): Promise<number> {
    return this.pool.call("headRevision", [plain(options)], options, "short") as Promise<number>;
  }

  async snapshotRevision(options?: CallOptions): Promise<number> {
    // A reader sees every commit made before it starts a statement, so any reader will do.
    return this.pool.call("snapshotRevision", [plain(options)], options, "short") as Promise<number>;
  }

  async trimChanges(before: Date, options?: CallOptions): Promise<number> {
    // It deletes: the writer's connection runs it.
    return this.pool.call("trimChanges", [before, plain(options)], options, "write") as Promise<number>;
  }

  onCommit(listener: () => void): () => void {
    return this.commitListeners.add(listener);
  }

  /** The write probe (see the header): resolves when the writer could take the write lock in time. */
  async ping(options?: CallOptions): Promise<void> {
    await this.pool.call("probeWrite", [plain(options)], options, "write");
  }

  /** Lets every call already made finish (writes commit), then closes the threads. Idempotent. */
  async close(): Promise<void> {
    await this.pool.close();
  }
}

/** Call options as they cross to a thread: an AbortSignal cannot (the queue in threads.ts handles it). */
function plain<T extends CallOptions>(options: T | undefined): Omit<T, "signal"> | undefined {
  if (options === undefined || options.signal === undefined) return options;
  const { signal: _signal, ...rest } = options;
  return rest;
}
