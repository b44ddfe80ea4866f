// The embedded default store: one SQLite file (better-sqlite3) in the data directory, worked on
// by worker threads so that no query ever runs on the service's event loop.
//
// Why threads. better-sqlite3 is synchronous: on the event loop, statistics over 300,000
// sessions held every other call (health included) for 3 s, and a frozen file system or another
// process's write lock held them for as long as it lasted. Chunking the queries would bound the
// CPU slices but not a stall in the file system or a lock wait, and would rewrite every query;
// an asynchronous driver does not exist for SQLite in this dependency set. Threads keep the
// well-tested synchronous engine (src/store/sqlite/engine.ts: schema, group commit, revisions,
// change log) as it is and move all of it off the loop:
// - one writer thread owns the read-write connection: every write (group commit as before: the
//   writes posted in one burst arrive together and share a transaction), trimming, the
//   checkpointer (its own thread, started by the engine) and the write probe of `ping`;
// - up to `readers` reader threads, started on demand, each with a read-only connection: get,
//   list, stats, findExpired, readChanges, headRevision. WAL lets them read while the writer
//   writes or waits for a lock, so a stalled writer does not stall reads. The first reader is
//   kept for the short reads (get, readChanges, the revisions); the long ones (stats, list,
//   findExpired) use the others, so that statistics over a million sessions never hold up a
//   GetSession or a watch (with `readers` = 1 they share the one thread).
// This class is the main-thread side: it implements the SessionStore port by posting calls and
// awaiting the answers (typed errors are rebuilt as the same classes with their fields).
//
// Queueing. Each thread takes a bounded number of calls at a time (a reader READER_IN_FLIGHT, the
// writer WRITER_IN_FLIGHT, enough for group commit); the rest wait here, in queues (writes, short
// reads, long reads) bounded together by `queueLimit` (a call beyond it fails at once with
// StoreUnavailableError). A call that waits
// here leaves the queue as soon as its signal aborts or its deadline passes (deadline:
// StoreUnavailableError). Once handed to a thread: a read is abandoned on abort or deadline (it
// rejects at once, its late answer is dropped); a write is never abandoned: it is reported as
// the writer reports it (the engine itself refuses a write whose deadline passed before its
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
// the calls of one event-loop turn posted as one message (and answered likewise). A create
// costs the event loop less than before (7 us instead of 19 us), the process more (37 us of CPU
// instead of 24 us); see bench/store-bench.ts for the figures, and the report of issue 10 for
// the end-to-end CreateSession throughput.

import fs from "node:fs";
import path from "node:path";
import { isDate } from "node:util/types";
import { MessageChannel, receiveMessageOnPort, Worker } from "node:worker_threads";

import * as errors from "../../domain/errors";
import { StoreUnavailableError } from "../../domain/errors";
import type { SessionDoc } from "../../domain/session";
import { SqliteEngine } from "./engine";
import { cloneDoc } from "../patch";
import type { CreateAnswer, EncodedError, WorkerAnswer, WorkerInit, WorkerMessage, WorkerRequest, WorkerRole } from "./worker";
import type {
  CallOptions,
  ChangeBatch,
  ConditionalOptions,
  CreateOptions,
  CreateResult,
  ExpiryQuery,
  ListQuery,
  SessionPatch,
  SessionStore,
  StatsQuery,
  StatsResult,
  UpdateOptions,
} from "../../domain/store";

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

/** Which queue and threads a call uses (see the header). */
type Lane = "write" | "short" | "long";

export const DEFAULT_SQLITE_READERS = 2;
export const DEFAULT_SQLITE_QUEUE_LIMIT = 10_000;

/** Calls a reader holds at once: one running, one ready, so that a reader never idles between calls. */
const READER_IN_FLIGHT = 2;
/** Writes the writer holds at once: enough for the group commit of a burst of concurrent writes. */
const WRITER_IN_FLIGHT = 256;
/** How long close() lets a thread finish its calls and close its connection before ending it. */
const CLOSE_TIMEOUT_MS = 10_000;
/** The longest delay setTimeout takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;

// Under ts-jest the sources run as TypeScript, which a worker thread cannot load by itself: the
// thread then registers a loader that transpiles each .ts file once (cached on disk by content)
// before loading the worker script. The built service (dist/) loads the compiled script directly.
const TS_BOOTSTRAP = `
const { workerData, threadId } = require("node:worker_threads");
const fs = require("node:fs");
const path = require("node:path");
const crypto = require("node:crypto");
const cacheDir = path.join(require("node:os").tmpdir(), "session-service-ts-cache");
let ts;
require.extensions[".ts"] = (module, filename) => {
  const source = fs.readFileSync(filename, "utf8");
  const key = crypto.createHash("sha256").update(filename).update("\\0").update(source).digest("hex");
  const cached = path.join(cacheDir, key + ".js");
  let js;
  try {
    js = fs.readFileSync(cached, "utf8");
  } catch {
    ts ??= require(workerData.typescript);
    js = ts.transpileModule(source, {
      fileName: filename,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, sourceMap: false },
    }).outputText;
    fs.mkdirSync(cacheDir, { recursive: true });
    const tmp = cached + "." + process.pid + "." + threadId;
    fs.writeFileSync(tmp, js);
    fs.renameSync(tmp, cached);
  }
  module._compile(js, filename);
};
require(workerData.script);
`;

function startWorker(init: WorkerInit): Worker {
  const workerData = { sqliteStore: init };
  if (__filename.endsWith(".js")) return new Worker(path.join(__dirname, "worker.js"), { workerData });
  return new Worker(TS_BOOTSTRAP, {
    eval: true,
    workerData: { ...workerData, script: path.join(__dirname, "worker.ts"), typescript: require.resolve("typescript") },
  });
}

interface Call {
  id: number;
  op: string;
  args: unknown[];
  lane: Lane;
  settled: boolean;
  /** Handed to a thread (no longer in the queue). */
  sent: boolean;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  timer?: NodeJS.Timeout;
  signal?: AbortSignal;
  onAbort?: () => void;
}

class Thread {
  worker: Worker | undefined;
  /** Set once close() has asked it to stop: its exit is then expected. */
  stopping = false;
  readonly inFlight = new Map<number, Call>();
  /** Calls of this turn not posted yet: they go in one message (see sqlite/worker.ts). */
  outbox: WorkerRequest[] = [];
  constructor(readonly role: WorkerRole) {}
}

export class SqliteSessionStore implements SessionStore {
  readonly kind = "sqlite";

  private closed = false;
  private nextId = 1;
  private readonly writer = new Thread("writer");
  private readonly readers: Thread[] = [];
  /**
   * Calls waiting for a thread, by lane. A call that gives up stays in its array, settled, until
   * pump() reaches it (no search on every cancellation: a reset burst stays linear); `waiting`
   * counts the live ones.
   */
  private queues: Record<Lane, Call[]> = { write: [], short: [], long: [] };
  /** Where each lane's queue starts (entries before it are sent or given up). */
  private readonly heads: Record<Lane, number> = { write: 0, short: 0, long: 0 };
  private waiting = 0;
  private abandoned = 0;
  private readonly commitListeners = new Set<() => void>();
  private readonly maxReaders: number;
  private readonly queueLimit: number;
  private readonly writerInFlight: number;
  private readonly readerInFlight: number;
  /** Resolved by pump() when close() waits for every call to settle. */
  private drained: (() => void) | undefined;

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

  private constructor(
    private readonly file: string,
    options: SqliteStoreOptions,
  ) {
    this.maxReaders = Math.max(1, options.readers ?? DEFAULT_SQLITE_READERS);
    this.queueLimit = Math.max(1, options.queueLimit ?? DEFAULT_SQLITE_QUEUE_LIMIT);
    this.writerInFlight = Math.max(1, options.writerInFlight ?? WRITER_IN_FLIGHT);
    this.readerInFlight = Math.max(1, options.readerInFlight ?? READER_IN_FLIGHT);
    this.spawn(this.writer);
  }

  async create(doc: SessionDoc, options?: CreateOptions): Promise<CreateResult> {
    // Our own copy, taken now (the call may wait in the queue); the writer answers only what it
    // added (see CreateAnswer).
    const session = cloneDoc(doc);
    const answer = (await this.call("create", [session, plain(options)], options, "write")) as CreateAnswer;
    if (!answer.created) return { session: answer.session, created: false };
    session.revision = answer.revision;
    session.session_index = answer.session_index;
    session.previous_session_id = answer.previous_session_id;
    return { session, created: true };
  }

  async get(id: string, options?: CallOptions): Promise<SessionDoc> {
    return this.call("get", [id, plain(options)], options, "short") as Promise<SessionDoc>;
  }

  async update(id: string, patch: SessionPatch, options?: UpdateOptions): Promise<SessionDoc> {
    return this.call("update", [id, patch, plain(options)], options, "write") as Promise<SessionDoc>;
  }

  async delete(id: string, options?: ConditionalOptions): Promise<{ revision: number }> {
    return this.call("delete", [id, plain(options)], options, "write") as Promise<{ revision: number }>;
  }

  async list(query: ListQuery, options?: CallOptions): Promise<SessionDoc[]> {
    return this.call("list", [query, plain(options)], options, "long") as Promise<SessionDoc[]>;
  }

  async findExpired(query: ExpiryQuery, options?: CallOptions): Promise<SessionDoc[]> {
    return this.call("findExpired", [query, plain(options)], options, "long") as Promise<SessionDoc[]>;
  }

  async stats(query: StatsQuery, options?: CallOptions): Promise<StatsResult> {
    return this.call("stats", [query, plain(options)], options, "long") as Promise<StatsResult>;
  }

  async readChanges(after: number, limit: number, options?: CallOptions): Promise<ChangeBatch> {
    return this.call("readChanges", [after, limit, plain(options)], options, "short") as Promise<ChangeBatch>;
  }

  async headRevision(options?: CallOptions): Promise<number> {
    return this.call("headRevision", [plain(options)], options, "short") as Promise<number>;
  }

  async snapshotRevision(options?: CallOptions): Promise<number> {
    // A reader sees every commit made before it starts a statement, so any reader will do.
    return this.call("snapshotRevision", [plain(options)], options, "short") as Promise<number>;
  }

  async trimChanges(before: Date, options?: CallOptions): Promise<number> {
    // It deletes: the writer's connection runs it.
    return this.call("trimChanges", [before, plain(options)], options, "write") as Promise<number>;
  }

  onCommit(listener: () => void): () => void {
    this.commitListeners.add(listener);
    return () => this.commitListeners.delete(listener);
  }

  /** The write probe (see the header): resolves when the writer could take the write lock in time. */
  async ping(options?: CallOptions): Promise<void> {
    await this.call("probeWrite", [plain(options)], options, "write");
  }

  /** Lets every call already made finish (writes commit), then closes the threads. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const drained = new Promise<void>((resolve) => (this.drained = resolve));
    this.pump();
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, CLOSE_TIMEOUT_MS).unref());
    await Promise.race([drained, timeout]);
    // Readers first: the writer's connection, closed last, then checkpoints and removes the WAL.
    await Promise.all(this.threads().slice(1).map((t) => this.stop(t)));
    await this.stop(this.writer);
  }

  private call(op: string, args: unknown[], options: CallOptions | undefined, lane: Lane): Promise<unknown> {
    if (this.closed) return Promise.reject(new StoreUnavailableError("the SQLite store is closed"));
    const deadlineMs = options?.deadline?.getTime();
    if (deadlineMs !== undefined && deadlineMs <= Date.now()) return Promise.reject(deadlineExceeded());
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(cancelled());
    if (this.waiting >= this.queueLimit) {
      return Promise.reject(new StoreUnavailableError(`the SQLite store is overloaded: ${this.queueLimit} calls are waiting (SQLITE_QUEUE_LIMIT)`));
    }
    return new Promise((resolve, reject) => {
      const call: Call = { id: this.nextId++, op, args, lane, settled: false, sent: false, resolve, reject };
      // (A deadline beyond setTimeout's range, about 24 days, is as good as none.)
      if (deadlineMs !== undefined && deadlineMs - Date.now() < MAX_TIMER_MS) {
        call.timer = setTimeout(() => this.giveUp(call, deadlineExceeded()), deadlineMs - Date.now());
      }
      if (signal) {
        call.signal = signal;
        call.onAbort = () => this.giveUp(call, cancelled());
        signal.addEventListener("abort", call.onAbort, { once: true });
      }
      this.queues[lane].push(call);
      this.waiting++;
      this.pump();
    });
  }

  /** The caller stopped waiting: a queued call leaves the queue, a read in flight is abandoned. */
  private giveUp(call: Call, error: Error): void {
    if (call.settled) return;
    if (!call.sent) {
      this.settle(call, false, error);
      this.waiting--;
      // Dead entries are dropped as pump() reaches them; while no thread takes calls (a stalled
      // writer), sweep them once they outnumber the live ones.
      if (++this.abandoned > 1000 && this.abandoned > this.waiting) {
        for (const lane of ["write", "short", "long"] as const) {
          this.queues[lane] = this.queues[lane].slice(this.heads[lane]).filter((c) => !c.settled);
          this.heads[lane] = 0;
        }
        this.abandoned = 0;
      }
    } else if (call.lane !== "write") {
      // Its thread keeps the slot until it answers; the answer is then dropped.
      this.settle(call, false, error);
    }
    // A write in flight is reported as the writer reports it.
  }

  private settle(call: Call, ok: boolean, value: unknown): void {
    if (call.settled) return;
    call.settled = true;
    clearTimeout(call.timer);
    if (call.onAbort) call.signal!.removeEventListener("abort", call.onAbort);
    if (ok) call.resolve(value);
    else call.reject(value);
  }

  /** Every thread object (a reader's slot may be empty: readers start on demand, by lane). */
  private threads(): Thread[] {
    return [this.writer, ...this.readers.filter((r): r is Thread => r !== undefined)];
  }

  /** Hands queued calls to threads with room, starting threads as needed. */
  private pump(): void {
    this.dispatch("write", () => (this.writer.inFlight.size < this.writerInFlight ? this.writer : undefined));
    this.dispatch("short", () => this.pickReader("short"));
    this.dispatch("long", () => this.pickReader("long"));
    if (this.drained && this.waiting === 0 && this.threads().every((t) => t.inFlight.size === 0)) {
      this.drained();
      this.drained = undefined;
    }
  }

  /** Sends the live calls of a lane's queue, in order, while `pick` finds a thread with room. */
  private dispatch(lane: Lane, pick: () => Thread | undefined): void {
    const queue = this.queues[lane];
    let head = this.heads[lane];
    while (head < queue.length) {
      const call = queue[head];
      if (call.settled) {
        head++;
        this.abandoned = Math.max(0, this.abandoned - 1);
        continue;
      }
      const thread = pick();
      if (!thread) break;
      head++;
      this.waiting--;
      this.send(thread, call);
    }
    // Drop the consumed front now and then, not on every call (that would be quadratic).
    if (head === queue.length) {
      queue.length = 0;
      head = 0;
    } else if (head > 1024 && head * 2 > queue.length) {
      queue.splice(0, head);
      head = 0;
    }
    this.heads[lane] = head;
  }

  /**
   * A reader with room for a call of `lane`: the first reader takes short reads (and long ones
   * when it is the only one allowed); the others take long reads, and short ones when idle.
   * Readers start on demand, up to maxReaders.
   */
  private pickReader(lane: "short" | "long"): Thread | undefined {
    const ensure = (i: number): Thread => (this.readers[i] ??= new Thread("reader"));
    if (lane === "short" || this.maxReaders === 1) {
      const first = ensure(0);
      if (first.inFlight.size < this.readerInFlight) return first;
      if (lane === "long") return undefined;
      return this.readers.slice(1).find((r) => r !== undefined && r.inFlight.size === 0);
    }
    let best: Thread | undefined;
    for (let i = 1; i < this.maxReaders; i++) {
      const existing = this.readers[i];
      if (!existing || existing.inFlight.size === 0) return ensure(i);
      if (existing.inFlight.size < this.readerInFlight && (!best || existing.inFlight.size < best.inFlight.size)) best = existing;
    }
    return best;
  }

  private send(thread: Thread, call: Call): void {
    call.sent = true;
    if (!thread.worker) this.spawn(thread);
    thread.inFlight.set(call.id, call);
    if (thread.inFlight.size === 1) thread.worker!.ref();
    // Posted at the end of this loop turn, with the other calls of the turn for this thread.
    if (thread.outbox.length === 0) {
      const worker = thread.worker!;
      setImmediate(() => {
        // A thread that died meanwhile has failed these calls already (see spawn).
        if (thread.worker !== worker) return;
        const batch = thread.outbox;
        thread.outbox = [];
        worker.postMessage(batch);
      });
    }
    thread.outbox.push({ id: call.id, op: call.op, args: call.args });
  }

  private spawn(thread: Thread): void {
    const worker = startWorker({ role: thread.role, file: this.file });
    thread.worker = worker;
    // An idle store must not keep the process alive; a thread holding calls does (see send).
    worker.unref();
    let failure: Error | undefined;
    worker.on("message", (msg: WorkerMessage) => {
      for (const answer of msg.answers) this.answered(thread, answer);
      if (thread.inFlight.size === 0) worker.unref();
      if (msg.commit) for (const listener of this.commitListeners) listener();
      this.pump();
    });
    worker.on("error", (err) => (failure = err));
    worker.on("exit", (code) => {
      if (thread.worker !== worker) return;
      thread.worker = undefined;
      const expected = thread.stopping && failure === undefined;
      const reason = failure?.message ?? `exit code ${code}`;
      for (const call of thread.inFlight.values()) {
        // After close, only calls close() gave up on are left (or a thread that could not open
        // the file); either way their outcome is unknown.
        this.settle(call, false, new StoreUnavailableError(`the SQLite store's ${thread.role} thread stopped (${expected ? "closed" : reason}); the outcome of this call is unknown`));
      }
      thread.inFlight.clear();
      thread.outbox = [];
      // The next call that needs the thread starts it again (and close() sees the drain).
      this.pump();
    });
  }

  private answered(thread: Thread, answer: WorkerAnswer): void {
    const call = thread.inFlight.get(answer.id);
    if (!call) return;
    thread.inFlight.delete(answer.id);
    if (answer.ok) this.settle(call, true, FOREIGN_DATES ? reviveDates(answer.value) : answer.value);
    else this.settle(call, false, decodeError(answer.error));
  }

  /** Asks a thread to commit what it holds and close its connection; ends it after CLOSE_TIMEOUT_MS. */
  private async stop(thread: Thread): Promise<void> {
    const worker = thread.worker;
    if (!worker) return;
    thread.stopping = true;
    const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
    worker.ref();
    worker.postMessage([{ id: 0, op: "close", args: [] }] satisfies WorkerRequest[]);
    const timer = setTimeout(() => void worker.terminate(), CLOSE_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * Whether Dates that arrive from a thread are of another realm than this module's Date. Never so
 * in the service; it is so under jest, whose test sandbox has its own globals while messages are
 * decoded in the host's (and `instanceof Date` then fails).
 */
const FOREIGN_DATES = ((): boolean => {
  const { port1, port2 } = new MessageChannel();
  port1.postMessage(new Date(0));
  const received = receiveMessageOnPort(port2)?.message as unknown;
  port1.close();
  return !(received instanceof Date);
})();

/** Replaces every Date in a decoded value by one of this realm (see FOREIGN_DATES). */
function reviveDates(value: unknown): unknown {
  if (value === null || typeof value !== "object") return value;
  if (isDate(value)) return new Date(value.getTime());
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = reviveDates(value[i]);
    return value;
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) record[key] = reviveDates(record[key]);
  return value;
}

/** Call options as they cross to a thread: an AbortSignal cannot (the queue here handles it). */
function plain<T extends CallOptions>(options: T | undefined): Omit<T, "signal"> | undefined {
  if (options === undefined || options.signal === undefined) return options;
  const { signal: _signal, ...rest } = options;
  return rest;
}

function deadlineExceeded(): StoreUnavailableError {
  return new StoreUnavailableError("the deadline passed before the store could run the call");
}

function cancelled(): StoreUnavailableError {
  return new StoreUnavailableError("the call was cancelled before the store ran it");
}

/** Rebuilds an error of the worker as the same class (typed errors keep their fields). */
function decodeError(encoded: EncodedError): Error {
  const known = (errors as unknown as Record<string, unknown>)[encoded.name];
  const proto = typeof known === "function" && (known as { prototype: unknown }).prototype instanceof Error ? (known as { prototype: Error }).prototype : Error.prototype;
  const err = Object.create(proto) as Error;
  Object.assign(err, encoded.fields);
  Object.defineProperty(err, "message", { value: encoded.message, writable: true, configurable: true });
  Object.defineProperty(err, "stack", { value: encoded.stack, writable: true, configurable: true });
  if (proto === Error.prototype && !("name" in encoded.fields)) err.name = encoded.name;
  return err;
}
