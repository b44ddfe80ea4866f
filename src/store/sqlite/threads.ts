// The main-thread side of the worker threads: one writer thread and up to `readers` reader
// threads started on demand (each runs worker.ts, started by spawn.ts), and the queues of calls
// waiting for them. See index.ts for the design.
//
// Each thread takes a bounded number of calls at a time (a reader READER_IN_FLIGHT, the writer
// WRITER_IN_FLIGHT, enough for group commit); the rest wait here, in one queue per lane (writes,
// short reads, long reads) bounded together by `queueLimit`. A call that waits here leaves its
// queue as soon as its signal aborts or its deadline passes. Once handed to a thread, a read is
// abandoned on abort or deadline (its late answer is dropped); a write is reported as the writer
// reports it. A thread that dies fails the calls it held and is started again by the next call
// that needs it.

import { isDate } from "node:util/types";
import { MessageChannel, receiveMessageOnPort, type Worker } from "node:worker_threads";

import { StoreUnavailableError } from "../../domain/errors";
import type { CallOptions } from "../../domain/store";
import { cancelled, deadlineExceeded, decodeError } from "./errors";
import { startScript } from "./spawn";
import type { WorkerAnswer, WorkerInit, WorkerMessage, WorkerRequest, WorkerRole } from "./worker";

/** Which queue and threads a call uses (see the header). */
export type Lane = "write" | "short" | "long";

/** Calls a reader holds at once: one running, one ready, so that a reader never idles between calls. */
export const READER_IN_FLIGHT = 2;
/** Writes the writer holds at once: enough for the group commit of a burst of concurrent writes. */
export const WRITER_IN_FLIGHT = 256;
/** How long close() lets a thread finish its calls and close its connection before ending it. */
const CLOSE_TIMEOUT_MS = 10_000;
/** The longest delay setTimeout takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;

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
  /** Calls of this turn not posted yet: they go in one message (see worker.ts). */
  outbox: WorkerRequest[] = [];
  constructor(readonly role: WorkerRole) {}
}

export interface PoolOptions {
  /** Reader threads at most. */
  readers: number;
  /** Calls waiting for a thread at most. */
  queueLimit: number;
  writerInFlight: number;
  readerInFlight: number;
  /** Called when the writer reports a commit (for onCommit). */
  committed: () => void;
}

export class ThreadPool {
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
  private readonly maxReaders: number;
  private readonly queueLimit: number;
  private readonly writerInFlight: number;
  private readonly readerInFlight: number;
  private readonly committed: () => void;
  /** Resolved by pump() when close() waits for every call to settle. */
  private drained: (() => void) | undefined;

  constructor(
    private readonly file: string,
    options: PoolOptions,
  ) {
    this.maxReaders = options.readers;
    this.queueLimit = options.queueLimit;
    this.writerInFlight = options.writerInFlight;
    this.readerInFlight = options.readerInFlight;
    this.committed = options.committed;
    this.spawn(this.writer);
  }

  /** Runs the engine's method `op` on a thread of `lane`; `deadline` and `signal` bound the wait. */
  call(op: string, args: unknown[], options: CallOptions | undefined, lane: Lane): Promise<unknown> {
    if (this.closed) return Promise.reject(new StoreUnavailableError("the SQLite store is closed"));
    const deadlineMs = options?.deadline?.getTime();
    if (deadlineMs !== undefined && deadlineMs <= Date.now()) return Promise.reject(deadlineExceeded());
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(cancelled());
    if (this.waiting >= this.queueLimit) {
      return Promise.reject(
        new StoreUnavailableError(`the SQLite store is overloaded: ${this.queueLimit} calls are waiting (SQLITE_QUEUE_LIMIT)`),
      );
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

  /** Lets every call already made finish (writes commit), then closes the threads. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const drained = new Promise<void>((resolve) => (this.drained = resolve));
    this.pump();
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, CLOSE_TIMEOUT_MS).unref());
    await Promise.race([drained, timeout]);
    // Readers first: the writer's connection, closed last, then checkpoints and removes the WAL.
    await Promise.all(
      this.threads()
        .slice(1)
        .map((t) => this.stop(t)),
    );
    await this.stop(this.writer);
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
    const init: WorkerInit = { role: thread.role, file: this.file };
    const worker = startScript("worker", { sqliteStore: init });
    thread.worker = worker;
    // An idle store must not keep the process alive; a thread holding calls does (see send).
    worker.unref();
    let failure: Error | undefined;
    worker.on("message", (msg: WorkerMessage) => {
      for (const answer of msg.answers) this.answered(thread, answer);
      if (thread.inFlight.size === 0) worker.unref();
      if (msg.commit) this.committed();
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
        this.settle(
          call,
          false,
          new StoreUnavailableError(
            `the SQLite store's ${thread.role} thread stopped (${expected ? "closed" : reason}); the outcome of this call is unknown`,
          ),
        );
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
