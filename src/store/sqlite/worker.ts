// The script of the embedded store's worker threads (see index.ts for the design), started by
// threads.ts, and the messages it exchanges with the main thread.
//
// Each thread owns one SqliteEngine: the writer's opened read-write (group commit, trimming, the
// write probe), a reader's read-only. Calls arrive as messages and are answered by id; errors
// travel as plain data (errors.ts) and are rebuilt as the same classes on the main thread.
//
// Messages go in batches both ways (each costs a wake-up and an event of the other thread):
// the main thread posts the calls of one event-loop turn as one array; this thread answers in
// one message per turn, which also says whether it committed (onCommit). Writes that arrive
// together share one group commit: the engine commits on setImmediate, after this thread has
// handled every message waiting for it.

import { parentPort, workerData } from "node:worker_threads";

import type { SessionDoc } from "../../domain/session";
import type { CreateResult } from "../../domain/store";
import { SqliteEngine } from "./engine";
import { encodeError, type EncodedError } from "./errors";

export type WorkerRole = "writer" | "reader";

export interface WorkerInit {
  role: WorkerRole;
  file: string;
}

/** One call, main -> worker (posted in arrays). `close` commits what was received and ends the thread. */
export interface WorkerRequest {
  id: number;
  op: string;
  args: unknown[];
}

export type WorkerAnswer = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: EncodedError };

/** worker -> main: the answers of one turn; `commit` when this thread committed since the last. */
export interface WorkerMessage {
  answers: WorkerAnswer[];
  commit: boolean;
}

/**
 * What the writer answers to a create that wrote: only what the store added to the document
 * (the caller has the rest), which spares the main thread decoding the whole document again.
 * A replayed create answers the stored session in full.
 */
export type CreateAnswer =
  { created: true; revision: number; session_index: number; previous_session_id: string | null } | { created: false; session: SessionDoc };

function createAnswer(result: CreateResult): CreateAnswer {
  if (!result.created) return { created: false, session: result.session };
  const { revision, session_index, previous_session_id } = result.session;
  return { created: true, revision, session_index, previous_session_id };
}

function serve(init: WorkerInit): void {
  const port = parentPort!;
  const engine = init.role === "writer" ? SqliteEngine.openFile(init.file) : SqliteEngine.attach(init.file);
  const methods = engine as unknown as Record<string, (...args: unknown[]) => unknown>;

  let answers: WorkerAnswer[] = [];
  let committed = false;
  let scheduled = false;
  const send = (): void => {
    scheduled = false;
    const message: WorkerMessage = { answers, commit: committed };
    answers = [];
    committed = false;
    port.postMessage(message);
  };
  const schedule = (): void => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(send);
  };
  const answer = (a: WorkerAnswer): void => {
    answers.push(a);
    schedule();
  };
  if (init.role === "writer") {
    engine.onCommit(() => {
      committed = true;
      schedule();
    });
  }

  const run = (req: WorkerRequest): void => {
    if (req.op === "close") {
      void engine.close().finally(() => {
        if (scheduled) send();
        port.postMessage({ answers: [{ id: req.id, ok: true, value: undefined }], commit: false } satisfies WorkerMessage);
        port.close();
      });
      return;
    }
    let result: unknown;
    try {
      const method = methods[req.op];
      if (typeof method !== "function") throw new Error(`unknown store operation "${req.op}"`);
      result = method.apply(engine, req.args);
    } catch (err) {
      answer({ id: req.id, ok: false, error: encodeError(err) });
      return;
    }
    Promise.resolve(result).then(
      (value) => answer({ id: req.id, ok: true, value: req.op === "create" ? createAnswer(value as CreateResult) : value }),
      (err: unknown) => answer({ id: req.id, ok: false, error: encodeError(err) }),
    );
  };
  port.on("message", (batch: WorkerRequest[]) => {
    for (const req of batch) run(req);
  });
}

if (parentPort && (workerData as { sqliteStore?: WorkerInit } | undefined)?.sqliteStore) {
  serve((workerData as { sqliteStore: WorkerInit }).sqliteStore);
}
