// The checkpointer: a worker thread with its own connection that runs a PASSIVE checkpoint every
// CHECKPOINT_INTERVAL_MS (checkpoint-worker.ts). A passive checkpoint never blocks the writer, nor
// the writer it, so the page copies and fsyncs of checkpoints leave the writer's thread. SQLite's
// automatic checkpoint (run by the writer inside COMMIT, every 1000 pages by default) stays on as
// a backstop at BACKSTOP_CHECKPOINT_PAGES, for when the thread falls behind or is gone. The
// thread starts after CHECKPOINTER_AFTER_COMMITS commits; until then the writer checkpoints at
// SQLite's default.

import type { Worker } from "node:worker_threads";
import type Database from "better-sqlite3";

import type { CheckpointerInit } from "./checkpoint-worker";
import { startScript } from "./spawn";

/** Commits after which the checkpointer thread starts (small stores, like tests, never need it). */
const CHECKPOINTER_AFTER_COMMITS = 200;
/** How often the checkpointer thread copies the WAL into the database file. */
const CHECKPOINT_INTERVAL_MS = 100;
/** WAL size (frames) from which the checkpointer catches up completely, so the WAL restarts. */
const RESTART_WAL_FRAMES = 4000;
/**
 * WAL size (frames) at which the writer checkpoints by itself after a commit: a backstop for
 * when the checkpointer thread falls behind or is gone (SQLite's default is 1000).
 */
const BACKSTOP_CHECKPOINT_PAGES = 16000;
/** How long close() lets the thread close its connection before ending it. */
const CLOSE_TIMEOUT_MS = 5000;

export class Checkpointer {
  private commits = 0;
  private closed = false;
  private thread: { worker: Worker; exited: Promise<void> } | undefined;

  /** `db` is the writer's connection (its automatic checkpoint is the backstop). */
  constructor(
    private readonly db: Database.Database,
    private readonly file: string,
  ) {}

  /** After each write batch: the thread starts after CHECKPOINTER_AFTER_COMMITS of them. */
  afterBatch(): void {
    if (++this.commits === CHECKPOINTER_AFTER_COMMITS) this.start();
  }

  /** Ends the thread, which closes its connection first, so that closing the writer's checkpoints and removes the WAL. */
  async close(): Promise<void> {
    this.closed = true;
    if (!this.thread) return;
    const { worker, exited } = this.thread;
    worker.postMessage("close");
    const timeout = setTimeout(() => void worker.terminate(), CLOSE_TIMEOUT_MS);
    await exited;
    clearTimeout(timeout);
  }

  private start(): void {
    let worker: Worker;
    try {
      const init: CheckpointerInit = { file: this.file, intervalMs: CHECKPOINT_INTERVAL_MS, restartFrames: RESTART_WAL_FRAMES };
      worker = startScript("checkpoint-worker", { checkpointer: init });
    } catch {
      return; // The writer keeps checkpointing by itself.
    }
    // The thread must neither keep the process alive nor take it down.
    worker.unref();
    const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
    worker.on("error", () => {
      // Without the thread, the writer checkpoints by itself at SQLite's default size again.
      if (!this.closed) this.db.pragma("wal_autocheckpoint = 1000");
    });
    this.thread = { worker, exited };
    this.db.pragma(`wal_autocheckpoint = ${BACKSTOP_CHECKPOINT_PAGES}`);
  }
}
