// The live log: one WatchSessions stream, newest change first, at most LIMIT entries.
//
// First load asks for the current state (send_initial) of the filtered sessions, then the
// changes after it; after a failure (server restart, network drop) the stream is reopened with
// after_revision = the last revision received (a change's, the initial state's end, or a
// heartbeat's), so nothing is missing or doubled. A resume point the server no longer has
// (OUT_OF_RANGE: older than its change-log retention) starts over from the current state.
//
// At high rates the page must stay responsive: messages only go into a queue, drawn every
// DRAW_INTERVAL_MS; a draw shows at most PER_DRAW entries, the newest, and counts the others as
// not drawn (the header says so). Up to PER_DRAW * 1000 / DRAW_INTERVAL_MS changes a second (500)
// every change is shown; above, the log samples the newest. The initial state is shown newest
// first up to LIMIT sessions.

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { Session } from "../../gen/session/v1/session_pb";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ChangeKind, type SessionChange, type WatchFilterSchema } from "../../gen/session/v1/session_service_pb";
import { Code, ConnectError, type Api } from "./client";
import { byId, clip, el, time } from "./render";

export const LIMIT = 500;
const DRAW_INTERVAL_MS = 200;
const PER_DRAW = 100;
/** Sessions remembered to tell a page view, an end or a merge from another update. */
const REMEMBERED = 5000;

export type EntryKind = "current" | "created" | "page_view" | "updated" | "ended" | "merged" | "deleted" | "left" | "entered";

interface Entry {
  kind: EntryKind;
  revision: bigint;
  session: Session;
}

export class LiveLog {
  /** The resume point: every change of the filter up to it has been received. */
  private cursor: bigint | undefined;
  private filter: MessageInitShape<typeof WatchFilterSchema> = { status: "active" };
  /** Live changes not drawn yet, oldest first. */
  private queue: Entry[] = [];
  /** Initial-state entries not drawn yet, in listing order (newest session first). */
  private initialQueue: Entry[] = [];
  private shownInitial = 0;
  private drawScheduled = false;
  private notDrawn = 0;
  private readonly seen = new Map<string, Session>();
  private readonly list = byId<HTMLOListElement>("log");
  private received = 0;
  private rateShownAt = Date.now();
  /** Aborts the stream of the previous filter when the filter changes. */
  private restart = new AbortController();

  constructor(
    private readonly api: Api,
    private readonly onSelect: (session: Session) => void,
  ) {
    this.list.dataset.limit = String(LIMIT);
    this.list.addEventListener("click", (e) => {
      const li = (e.target as HTMLElement).closest("li.entry") as HTMLElement | null;
      const session = li ? this.seen.get(li.dataset.session ?? "") : undefined;
      if (li && session) this.onSelect(session);
    });
    setInterval(() => this.showRate(), 1000);
  }

  /** Shows the changes of another filter: the log starts over from that filter's current state. */
  setFilter(filter: MessageInitShape<typeof WatchFilterSchema>): void {
    this.filter = filter;
    this.cursor = undefined;
    this.clear();
    this.list.dataset.revision = "";
    this.restart.abort();
  }

  /** Reads one stream until it ends or fails (keepOpen reopens it). */
  async watch(signal: AbortSignal, live: () => void): Promise<void> {
    this.restart = new AbortController();
    const both = AbortSignal.any([signal, this.restart.signal]);
    const initial = this.cursor === undefined;
    if (initial) this.clear();
    try {
      const stream = this.api.watchSessions(
        {
          filter: this.filter,
          sendInitial: initial,
          afterRevision: this.cursor,
          heartbeatInterval: durationFromMs(5000),
        },
        { signal: both },
      );
      for await (const msg of stream) {
        live();
        const ev = msg.event;
        if (ev.case === "change") this.add(ev.value);
        else if (ev.case === "initialStateEnd") this.advance(ev.value.revision);
        else if (ev.case === "progress") this.advance(ev.value.revision);
      }
    } catch (err) {
      if (this.restart.signal.aborted && !signal.aborted) return this.watch(signal, live); // a new filter
      if (ConnectError.from(err).code === Code.OutOfRange) this.startOver("the resume point is older than the server keeps");
      throw err;
    }
  }

  private clear(): void {
    this.queue = [];
    this.initialQueue = [];
    this.shownInitial = 0;
    this.list.replaceChildren();
  }

  private startOver(why: string): void {
    this.cursor = undefined;
    const notice = byId("log-notice");
    notice.textContent = `Started over from the current state: ${why}.`;
    notice.hidden = false;
  }

  private advance(revision: bigint): void {
    if (this.cursor === undefined || revision > this.cursor) this.cursor = revision;
    this.list.dataset.revision = String(this.cursor);
  }

  private add(change: SessionChange): void {
    const session = change.session;
    if (!session) return;
    const initial = change.kind === ChangeKind.INITIAL;
    // A change at or before the cursor was received already (never sent twice by the server;
    // this keeps the log exact even if it were).
    if (!initial && this.cursor !== undefined && change.revision <= this.cursor) return;
    this.received += 1;
    const kind = classify(change, this.seen.get(session.id));
    this.remember(session);
    const entry = { kind, revision: change.revision, session };
    if (initial) {
      if (this.shownInitial < LIMIT) {
        this.initialQueue.push(entry);
        this.shownInitial++;
      } else this.notDrawn++;
    } else {
      this.queue.push(entry);
      // Bounded between draws too: only the newest PER_DRAW can be drawn.
      if (this.queue.length > 4 * PER_DRAW) this.notDrawn += this.queue.splice(0, this.queue.length - PER_DRAW).length;
      this.advance(change.revision);
    }
    this.scheduleDraw();
  }

  /** Keeps the session's latest state (also when deleted: a click on its entry shows the last state). */
  private remember(session: Session): void {
    this.seen.delete(session.id);
    this.seen.set(session.id, session);
    if (this.seen.size > REMEMBERED) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }

  private scheduleDraw(): void {
    if (this.drawScheduled) return;
    this.drawScheduled = true;
    setTimeout(() => this.draw(), DRAW_INTERVAL_MS);
  }

  private draw(): void {
    this.drawScheduled = false;
    if (this.initialQueue.length > 0) {
      const frag = document.createDocumentFragment();
      for (const e of this.initialQueue) frag.append(row(e));
      this.list.append(frag);
      this.initialQueue = [];
    }
    if (this.queue.length > 0) {
      const batch = this.queue.slice(-PER_DRAW);
      this.notDrawn += this.queue.length - batch.length;
      this.queue = [];
      const frag = document.createDocumentFragment();
      for (let i = batch.length - 1; i >= 0; i--) frag.append(row(batch[i]));
      this.list.prepend(frag);
    }
    while (this.list.childElementCount > LIMIT) this.list.lastElementChild?.remove();
  }

  private showRate(): void {
    const now = Date.now();
    const rate = (this.received * 1000) / Math.max(now - this.rateShownAt, 1);
    const sampled = this.notDrawn > 0 ? `, ${this.notDrawn} not drawn: newest shown` : "";
    byId("log-rate").textContent = rate >= 1 || sampled ? `(${Math.round(rate)}/s${sampled})` : "";
    this.received = 0;
    this.notDrawn = 0;
    this.rateShownAt = now;
  }
}

/** What a change means for a person watching: a page view, an end and a merge are updates too. */
export function classify(change: SessionChange, before: Session | undefined): EntryKind {
  const s = change.session;
  switch (change.kind) {
    case ChangeKind.INITIAL:
      return "current";
    case ChangeKind.CREATED:
      return "created";
    case ChangeKind.DELETED:
      return "deleted";
    case ChangeKind.ENTERED_FILTER:
      return "entered";
  }
  const status = s?.metadata?.status;
  if (before?.metadata?.status === "active" && status !== undefined && status !== "active") return "ended";
  if (change.kind === ChangeKind.LEFT_FILTER) return status !== undefined && status !== "active" ? "ended" : "left";
  if (before && s) {
    if ((s.mergedFromProfileIds?.length ?? 0) > (before.mergedFromProfileIds?.length ?? 0)) return "merged";
    if (before.profile?.id !== s.profile?.id) return "merged";
    if ((s.activity?.pageViews ?? 0) > (before.activity?.pageViews ?? 0)) return "page_view";
  }
  return "updated";
}

function row(e: Entry): HTMLLIElement {
  const s = e.session;
  const at = s.metadata?.time?.update ?? s.metadata?.time?.insert;
  const li = el("li", {
    class: "entry",
    "data-kind": e.kind,
    "data-revision": String(e.revision),
    "data-session": s.id,
    "data-profile": s.profile?.id ?? "",
  });
  const who = [s.metadata?.channel, s.profile?.id ? `profile ${clip(s.profile.id, 24)}` : "", s.os?.name, s.activity?.exitPage ?? ""]
    .filter((x) => x)
    .join(" · ");
  li.append(
    el("span", {}, time(at ? timestampDate(at) : undefined)),
    el("span", { class: "kind" }, e.kind.replace("_", " ")),
    el("span", {}, `${clip(s.id, 40)} ${who}`),
  );
  li.title = s.id;
  return li;
}
