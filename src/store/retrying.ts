// A store that is opened in the background: the service starts and answers at once, and until
// the real store could be opened (e.g. MongoDB is unreachable at start) every call fails with
// StoreUnavailableError and health reports NOT_SERVING. Opening is retried with exponential
// backoff (capped) until it succeeds or the store is closed. Once open, calls go straight
// through; the real store's driver handles later outages itself.

import { StoreUnavailableError } from "../domain/errors";
import type { Logger } from "../log";
import type { SessionStore } from "../domain/store";

const MIN_DELAY_MS = 250;
const MAX_DELAY_MS = 10_000;

/** Resolves once the first attempt to open has succeeded or failed; later attempts run in the background. */
export async function openInBackground(kind: string, open: () => Promise<SessionStore>, log: Logger): Promise<SessionStore> {
  let firstAttempt!: () => void;
  const firstAttemptDone = new Promise<void>((resolve) => (firstAttempt = resolve));
  let store: SessionStore | undefined;
  let closed = false;
  let wake: (() => void) | undefined;
  const listeners = new Set<() => void>();
  const unsubscribers = new Map<() => void, () => void>();

  void (async () => {
    for (let attempt = 1, delay = MIN_DELAY_MS; !closed; attempt++, delay = Math.min(delay * 2, MAX_DELAY_MS)) {
      try {
        const opened = await open();
        if (closed) {
          await opened.close();
          return;
        }
        store = opened;
        for (const l of listeners) unsubscribers.set(l, opened.onCommit(l));
        if (attempt > 1) log.info("store opened", { kind, attempts: attempt });
        firstAttempt();
        return;
      } catch (err) {
        firstAttempt();
        log.warn("store unavailable, retrying", {
          kind,
          attempt,
          retry_ms: delay,
          error: err instanceof Error ? err.message : String(err),
        });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    }
  })();

  await firstAttemptDone;

  const ready = (): SessionStore => {
    if (closed) throw new StoreUnavailableError("the store is closed");
    if (!store) throw new StoreUnavailableError(`the ${kind} store is not reachable yet`);
    return store;
  };

  return {
    kind,
    create: async (doc, options) => ready().create(doc, options),
    get: async (id, options) => ready().get(id, options),
    update: async (id, patch, options) => ready().update(id, patch, options),
    delete: async (id, options) => ready().delete(id, options),
    list: async (query, options) => ready().list(query, options),
    findExpired: async (query, options) => ready().findExpired(query, options),
    stats: async (query, options) => ready().stats(query, options),
    readChanges: async (after, limit, options) => ready().readChanges(after, limit, options),
    headRevision: async (options) => ready().headRevision(options),
    snapshotRevision: async (options) => ready().snapshotRevision(options),
    trimChanges: async (before, options) => ready().trimChanges(before, options),
    ping: async (options) => ready().ping(options),
    eraseSessions: async (profileId, limit, options) => ready().eraseSessions(profileId, limit, options),
    eraseTraces: async (profileId, limit, options) => ready().eraseTraces(profileId, limit, options),
    onCommit(listener) {
      listeners.add(listener);
      if (store) unsubscribers.set(listener, store.onCommit(listener));
      return () => {
        listeners.delete(listener);
        unsubscribers.get(listener)?.();
        unsubscribers.delete(listener);
      };
    },
    async close() {
      closed = true;
      wake?.();
      await store?.close();
    },
  };
}
