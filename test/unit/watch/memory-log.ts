// An in-memory change log standing in for the store, and helpers to run watchers over a
// ChangeFeed, for the tests of src/domain/watch/ without a server or a database.

import { ChangesTrimmedError } from "../../../src/domain/errors";
import { createLogger } from "../../../src/log";
import type { SessionDoc } from "../../../src/domain/session";
import type { ChangeBatch, ChangeKind, ChangeRecord, FilterFields, ListQuery, SessionStore } from "../../../src/domain/store";
import { ChangeFeed } from "../../../src/domain/watch/feed";
import type { WatchFilter } from "../../../src/domain/watch/filter";
import { watchSessions, type WatchEvent, type WatchRequest } from "../../../src/domain/watch/stream";

export interface Fields {
  profileId: string | null;
  status: string;
  channel: string;
  /** traffic.channel_group; unset: a session without traffic. */
  channelGroup?: string;
}

function doc(id: string, f: Fields, revision: number): SessionDoc {
  return {
    id,
    profile: f.profileId === null ? null : { id: f.profileId },
    metadata: { status: f.status, channel: f.channel, time: { insert: new Date(1_700_000_000_000 + revision) } },
    traffic: f.channelGroup === undefined ? null : { channel_group: f.channelGroup },
    revision,
  } as unknown as SessionDoc;
}

/** The parts of SessionStore the feed and watchSessions use, over an in-memory change log. */
export class MemoryLog {
  changes: ChangeRecord[] = [];
  head = 0;
  trimmedThrough = 0;
  docs = new Map<string, SessionDoc>();
  /** `after` of every readChanges call, in order. */
  reads: number[] = [];
  /** Like the stores' CHANGES_READ_BYTES cut: a read stops after the change whose `bytes` reach this. */
  readBytes = Number.POSITIVE_INFINITY;
  /** `bytes` of each change written (its size as a store would have read it), when set. */
  changeBytes: number | undefined;
  /** While true, writes do not tell the onCommit listeners. */
  muted = false;
  private readonly listeners = new Set<() => void>();

  get store(): SessionStore {
    return this as unknown as SessionStore;
  }

  readChanges(after: number, limit: number): Promise<ChangeBatch> {
    this.reads.push(after);
    if (after < this.trimmedThrough) return Promise.reject(new ChangesTrimmedError(after, this.trimmedThrough));
    const out = this.changes.filter((c) => c.revision > after).slice(0, limit);
    let bytes = 0;
    const cut = out.findIndex((c) => (bytes += c.bytes ?? 0) >= this.readBytes);
    if (cut >= 0 && cut < out.length - 1) out.length = cut + 1;
    const full = out.length === limit || cut >= 0;
    return Promise.resolve({
      changes: out,
      safeRevision: full && out.length > 0 ? out[out.length - 1].revision : Math.max(after, this.head),
    });
  }
  headRevision(): Promise<number> {
    return Promise.resolve(this.head);
  }
  snapshotRevision(): Promise<number> {
    return Promise.resolve(this.head);
  }
  onCommit(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  get(id: string): Promise<SessionDoc> {
    const d = this.docs.get(id);
    return d ? Promise.resolve(d) : Promise.reject(Object.assign(new Error("not found"), { reason: "SESSION_NOT_FOUND" }));
  }
  list(q: ListQuery): Promise<SessionDoc[]> {
    const all = [...this.docs.values()].filter(
      (d) =>
        (!q.profileId || d.profile?.id === q.profileId) &&
        (!q.status || d.metadata.status === q.status) &&
        (!q.channel || d.metadata.channel === q.channel),
    );
    return Promise.resolve(q.after ? [] : all);
  }

  /** Commits one change. `repaired`: the log does not know the before-state (before = null). */
  write(kind: ChangeKind, id: string, f?: Fields, repaired = false): ChangeRecord {
    const revision = ++this.head;
    const old = this.docs.get(id);
    const before: FilterFields | null =
      kind === "created" || repaired || !old
        ? null
        : {
            profileId: old.profile?.id ?? null,
            status: old.metadata.status,
            channel: old.metadata.channel,
            channelGroup: old.traffic?.channel_group ?? null,
          };
    const after =
      kind === "deleted"
        ? doc(
            id,
            {
              profileId: old!.profile?.id ?? null,
              status: old!.metadata.status,
              channel: old!.metadata.channel,
              channelGroup: old!.traffic?.channel_group,
            },
            revision,
          )
        : doc(id, f!, revision);
    if (kind === "deleted") this.docs.delete(id);
    else this.docs.set(id, after);
    const change: ChangeRecord = {
      revision,
      kind,
      id,
      doc: after,
      before,
      ...(this.changeBytes === undefined ? {} : { bytes: this.changeBytes }),
    };
    this.changes.push(change);
    if (!this.muted) for (const l of this.listeners) l();
    return change;
  }
}

const silent = createLogger("silent");
export const filter = (f: Partial<WatchFilter>): WatchFilter => ({
  profileId: "",
  ids: [],
  status: "",
  channel: "",
  channelGroup: "",
  ...f,
});
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not reached in time");
    await sleep(2);
  }
}

/** A watcher that records everything it receives, optionally pausing after each message. */
export function consume(feed: ChangeFeed, log: MemoryLog, req: Partial<WatchRequest>, pauseMs = 0) {
  const abort = new AbortController();
  const events: WatchEvent[] = [];
  const state: { error?: unknown; ended: boolean } = { ended: false };
  const full: WatchRequest = { filter: filter({}), sendInitial: false, heartbeatMs: 15_000, ...req };
  const done = (async () => {
    try {
      for await (const ev of watchSessions(feed, log.store, full, abort.signal)) {
        events.push(ev);
        if (pauseMs > 0) await sleep(Math.random() * pauseMs);
      }
    } catch (err) {
      state.error = err;
    } finally {
      state.ended = true;
    }
  })();
  return { events, state, done, abort, changes: () => events.filter((e) => e.type === "change") };
}

export function newFeed(log: MemoryLog, bufferSize = 4096, bufferBytes = Number.POSITIVE_INFINITY): ChangeFeed {
  return new ChangeFeed(log.store, silent, { pollIntervalMs: 20, bufferSize, bufferBytes, maxWatchers: 10_000, stallTimeoutMs: 30_000 });
}
