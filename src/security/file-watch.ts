// Tells a caller "these files may have changed" so it can re-read them (the API keys file, the
// TLS certificate, key and CA). Used by keys.ts and tls.ts; it never reads the files itself.
//
// Why both fs.watch and a stat poll: fs.watch is immediate but unreliable across platforms,
// network file systems and container volumes, and a watch on a file follows its inode, so it goes
// deaf when the file is replaced by a rename (editors, `mv new old`) or when a Kubernetes secret
// swaps its `..data` symlink. So the *directories* are watched (any event there may concern our
// files) and every `pollMs` the files are stat'ed (following symlinks) as a fallback. Events are
// debounced: a certificate and its key are written one after the other, and one re-read after
// both is better than one that sees a new certificate with the old key.
// The caller compares what it reads with what it has, so a spurious event costs one read.

import { statSync, watch, type FSWatcher } from "node:fs";
import { dirname } from "node:path";

export interface FileWatchOptions {
  /** Quiet time after the last event before `onChange` runs. */
  debounceMs: number;
  /** Interval of the stat poll (the fallback when fs.watch misses a change); 0 turns it off. */
  pollMs: number;
}

export interface FileWatch {
  close(): void;
}

/**
 * A file's identity and version as seen through symlinks; "missing" when it cannot be stat'ed.
 * Synchronous: one stat of at most three small local files every few seconds, and the first
 * signature is then taken when the watch starts (a change right after start is not missed).
 */
function signature(path: string): string {
  try {
    const s = statSync(path, { bigint: true });
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch (err) {
    return `missing:${(err as NodeJS.ErrnoException).code ?? "?"}`;
  }
}

/**
 * Calls `onChange` (debounced, never concurrently with itself) after any of `paths` may have
 * changed. Timers and watchers are unref'ed: watching never keeps the process alive.
 */
export function watchFiles(paths: string[], onChange: () => Promise<unknown> | void, options: FileWatchOptions): FileWatch {
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let again = false;

  const run = async (): Promise<void> => {
    if (closed) return;
    if (running) {
      again = true; // an event arrived while re-reading: read once more afterwards
      return;
    }
    running = true;
    try {
      await onChange();
    } catch {
      // The callers report their own read errors; nothing may escape as an unhandled rejection.
    } finally {
      running = false;
      if (again && !closed) {
        again = false;
        schedule();
      }
    }
  };
  const schedule = (): void => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      void run();
    }, options.debounceMs);
    timer.unref();
  };

  const watchers: FSWatcher[] = [];
  for (const dir of new Set(paths.map((p) => dirname(p)))) {
    try {
      const w = watch(dir, { persistent: false }, () => schedule());
      // e.g. the directory is removed: the poll still covers the files.
      w.on("error", () => undefined);
      watchers.push(w);
    } catch {
      // fs.watch is unsupported here (some network file systems): the poll covers it.
    }
  }

  let poll: NodeJS.Timeout | undefined;
  if (options.pollMs > 0) {
    let last = paths.map(signature).join("|");
    poll = setInterval(() => {
      const now = paths.map(signature).join("|");
      if (now !== last) schedule();
      last = now;
    }, options.pollMs);
    poll.unref();
  }

  return {
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      if (poll) clearInterval(poll);
      for (const w of watchers) w.close();
    },
  };
}
