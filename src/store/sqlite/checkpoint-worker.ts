// The checkpointer thread's script (started by checkpoint.ts on the writer thread): its own
// connection runs a PASSIVE checkpoint every `intervalMs` until the writer posts a message.

import { parentPort, workerData, type MessagePort } from "node:worker_threads";
import Database from "better-sqlite3";

export interface CheckpointerInit {
  file: string;
  intervalMs: number;
  /** WAL size (frames) from which a tick catches up completely, so the WAL restarts. */
  restartFrames: number;
}

interface CheckpointResult {
  busy: number;
  log: number;
  checkpointed: number;
}

function run(init: CheckpointerInit, port: MessagePort): void {
  const db = new Database(init.file, { fileMustExist: true });
  const checkpoint = (): void => {
    try {
      let { log } = (db.pragma("wal_checkpoint(PASSIVE)") as CheckpointResult[])[0];
      // The WAL starts over (instead of growing) when a write begins with every frame copied,
      // but the writer usually commits more while a checkpoint runs. From a certain size, copy
      // those too, in a few quick rounds, until a round finds nothing new.
      for (let i = 0; i < 5 && log >= init.restartFrames; i++) {
        const next = (db.pragma("wal_checkpoint(PASSIVE)") as CheckpointResult[])[0].log;
        if (next === log) break;
        log = next;
      }
    } catch {
      // Busy or failing: the next tick tries again, the writer's backstop covers the rest.
    }
  };
  const timer = setInterval(checkpoint, init.intervalMs);
  port.once("message", () => {
    clearInterval(timer);
    db.close();
    port.close();
  });
}

const init = (workerData as { checkpointer?: CheckpointerInit } | undefined)?.checkpointer;
if (parentPort && init) run(init, parentPort);
