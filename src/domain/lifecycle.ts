// The session lifecycle: activity (TouchSession) and idle and maximum-length expiry. Plain
// functions over the store port, like src/domain/sessions.ts; every write goes through
// store.update, so each one is a change that watchers see. The timer that runs expiry passes is
// in src/domain/jobs.ts.
//
// Rules (docs/lifecycle.md has the whole picture):
// - Activity is metadata.time.update: UpdateSession and TouchSession set it; expiry and merges
//   do not (they are the server's bookkeeping, not the visitor's activity). duration is the whole
//   seconds from insert to it.
// - A session expires when it is "active" and either had no activity for idleMs (counted from
//   update, or from insert while update is null) or was inserted more than maxDurationMs ago.
//   Expiry sets status "ended" and activity.end_reason, with a conditional write on the revision
//   it read: when several replicas expire at once, or a touch lands in between, only one write
//   applies and the others skip the session.
// - A touch re-opens an ended session (status "active" again, end_reason cleared), as Tracardi
//   does on a new event, unless the session is older than maxDurationMs: then the visit is over
//   for good (SessionTooLongError) and the caller starts a new session.

import { InvalidArgumentError, NotFoundError, RevisionConflictError, SessionTooLongError } from "./errors";
import { END_IDLE, END_MAX_DURATION, STATUS_ACTIVE, STATUS_ENDED, type OperationFlags, type SessionDoc } from "./session";
import { durationSeconds, systemClock, type Clock } from "./time";
import { checkSessionSize, DEFAULT_LIMITS } from "./limits";
import { checkClientIp, DEFAULT_VISITOR_IP, visitorIpOnTouch, type VisitorIpOptions } from "./geo";
import { checkId, checkLength, checkPageUrl, fail } from "./validate";
import type { CallOptions, SessionPatch, SessionStore } from "./store";

export interface LifecycleOptions {
  /** A session without activity for this long ends (SESSION_IDLE_TIMEOUT). */
  idleMs: number;
  /** A session ends this long after its insert, whatever its activity (SESSION_MAX_DURATION). */
  maxDurationMs: number;
  /** Sessions read per expiry query. */
  expiryBatch: number;
  /** At most this many sessions are ended per pass; the next pass goes on. */
  maxPerPass: number;
  /** Largest stored document (MAX_SESSION_BYTES): a touch that would pass it is refused. */
  maxSessionBytes: number;
  /** Longest page_url (MAX_STRING_LENGTH). */
  maxStringLength: number;
  /** IP_ANONYMIZATION and the geo lookup of a touch's client_ip (src/domain/geo.ts). */
  visitorIp: VisitorIpOptions;
}

export const DEFAULT_LIFECYCLE: LifecycleOptions = {
  idleMs: 30 * 60_000,
  maxDurationMs: 24 * 3600_000,
  expiryBatch: 500,
  maxPerPass: 20_000,
  maxSessionBytes: DEFAULT_LIMITS.maxSessionBytes,
  maxStringLength: DEFAULT_LIMITS.maxStringLength,
  visitorIp: DEFAULT_VISITOR_IP,
};

/** How far in the future a touch's `at` may be (clock skew between client and server). */
export const MAX_CLOCK_SKEW_MS = 60_000;
/** Conditional writes of one session before giving up (each conflict is another writer's success). */
export const MAX_WRITE_ATTEMPTS = 20;
/** Expiry writes in flight at once (the SQLite store commits them together). */
const EXPIRY_CONCURRENCY = 64;

export interface TouchInput {
  id: string;
  pageUrl: string;
  at?: Date;
  /** The visitor's address at this activity ("" = not given): device.ip and empty geo fields. */
  clientIp?: string;
}

export interface ExpiryPass {
  /** Sessions this pass ended. */
  ended: number;
  /** Candidates another writer changed first (touched, expired by another replica, deleted). */
  skipped: number;
}

const touched = (): OperationFlags => ({ new: false, update: true, segment: false, merge: [] });

export class Lifecycle {
  private readonly options: LifecycleOptions;

  constructor(
    private readonly store: SessionStore,
    options: Partial<LifecycleOptions> = {},
    private readonly clock: Clock = systemClock,
  ) {
    this.options = { ...DEFAULT_LIFECYCLE, ...options };
  }

  /** The most sessions one expiry pass ends. */
  get maxPerPass(): number {
    return this.options.maxPerPass;
  }

  /** Records activity: see TouchSession in the contract. */
  async touch(input: TouchInput, options: CallOptions = {}): Promise<{ session: SessionDoc; operation: OperationFlags }> {
    const now = this.clock.now();
    const at = input.at ?? now;
    const clientIp = input.clientIp ?? "";
    fail([
      ...checkClientIp(clientIp),
      ...checkId("id", input.id, true),
      ...checkLength("page_url", input.pageUrl, this.options.maxStringLength),
      ...(input.pageUrl.length > this.options.maxStringLength ? [] : checkPageUrl("page_url", input.pageUrl)),
      ...(at.getTime() > now.getTime() + MAX_CLOCK_SKEW_MS
        ? [{ field: "at", description: "must not be more than a minute in the future" }]
        : []),
    ]);
    for (let attempt = 1; ; attempt++) {
      const current = await this.store.get(input.id, options);
      const t = current.metadata.time;
      if (at < t.insert) throw InvalidArgumentError.field("at", "must not be before the session's insert time");
      if (at.getTime() - t.insert.getTime() > this.options.maxDurationMs) {
        throw new SessionTooLongError(input.id, Math.floor(this.options.maxDurationMs / 1000));
      }
      const latest = t.update !== null && t.update > at ? t.update : at;
      const set: SessionPatch["set"] = [
        { path: ["metadata", "time", "update"], value: latest },
        { path: ["metadata", "time", "duration"], value: durationSeconds(t.insert, latest) },
      ];
      if (current.metadata.status !== STATUS_ACTIVE) set.push({ path: ["metadata", "status"], value: STATUS_ACTIVE });
      if (current.activity.end_reason !== "") set.push({ path: ["activity", "end_reason"], value: "" });
      if (input.pageUrl !== "") {
        const a = current.activity;
        set.push({ path: ["activity", "page_views"], value: a.page_views + 1 });
        if (a.entry_page === null) set.push({ path: ["activity", "entry_page"], value: input.pageUrl });
        // The exit page is the page of the latest activity; an older, late-arriving one only counts.
        if (latest === at || a.exit_page === null) set.push({ path: ["activity", "exit_page"], value: input.pageUrl });
        // The page URL is one thing a touch can grow a session by (entry and exit page):
        // the session as it would be stored must stay under the limit, or nothing is written.
        checkSessionSize(
          {
            ...current,
            activity: { ...a, page_views: a.page_views + 1, entry_page: a.entry_page ?? input.pageUrl, exit_page: input.pageUrl },
          },
          this.options.maxSessionBytes,
          "page_url",
        );
      }
      if (clientIp !== "") {
        // The other is the visitor's address and its location (bounded: a few short strings).
        const { ip, geo } = visitorIpOnTouch(current.device, clientIp, this.options.visitorIp);
        if (ip !== current.device.ip) set.push({ path: ["device", "ip"], value: ip });
        if (JSON.stringify(geo) !== JSON.stringify(current.device.geo)) set.push({ path: ["device", "geo"], value: geo });
        checkSessionSize({ ...current, device: { ...current.device, ip, geo } }, this.options.maxSessionBytes, "client_ip");
      }
      try {
        const session = await this.store.update(input.id, { set, unset: [] }, { ...options, expectedRevision: current.revision });
        return { session, operation: touched() };
      } catch (err) {
        if (!(err instanceof RevisionConflictError) || attempt >= MAX_WRITE_ATTEMPTS) throw err;
      }
    }
  }

  /**
   * One expiry pass at `now`: ends every due session, batch by batch, up to maxPerPass. The
   * cost follows the number of due sessions (the store reads them with an index).
   */
  async expire(now: Date = this.clock.now(), options: CallOptions = {}): Promise<ExpiryPass> {
    const idleBefore = new Date(now.getTime() - this.options.idleMs);
    const insertedBefore = new Date(now.getTime() - this.options.maxDurationMs);
    const pass: ExpiryPass = { ended: 0, skipped: 0 };
    while (pass.ended < this.options.maxPerPass) {
      const limit = Math.min(this.options.expiryBatch, this.options.maxPerPass - pass.ended);
      const due = await this.store.findExpired({ idleBefore, insertedBefore, limit }, options);
      let ended = 0;
      for (let i = 0; i < due.length; i += EXPIRY_CONCURRENCY) {
        const results = await Promise.all(due.slice(i, i + EXPIRY_CONCURRENCY).map((doc) => this.end(doc, insertedBefore, options)));
        ended += results.filter(Boolean).length;
      }
      pass.ended += ended;
      pass.skipped += due.length - ended;
      // A short batch was the last one; a batch of nothing but skips would come back the same.
      if (due.length < limit || ended === 0) break;
    }
    return pass;
  }

  /** Ends one due session unless another writer changed it since it was read. */
  private async end(doc: SessionDoc, insertedBefore: Date, options: CallOptions): Promise<boolean> {
    const reason = doc.metadata.time.insert < insertedBefore ? END_MAX_DURATION : END_IDLE;
    const patch: SessionPatch = {
      set: [
        { path: ["metadata", "status"], value: STATUS_ENDED },
        { path: ["activity", "end_reason"], value: reason },
      ],
      unset: [],
    };
    try {
      await this.store.update(doc.id, patch, { ...options, expectedRevision: doc.revision });
      return true;
    } catch (err) {
      if (err instanceof RevisionConflictError || err instanceof NotFoundError) return false;
      throw err;
    }
  }
}
