// Thin RPC handlers: message in, domain call, message out. Shared by both engines (grpc-js on
// the gRPC port, connect-node on the HTTP port); errors propagate as typed domain errors and
// are mapped to statuses by the engine adapters through src/rpc/status.ts.

import { create, type DescMethodServerStreaming, type DescMethodUnary, type DescService, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromDate, type Duration } from "@bufbuild/protobuf/wkt";
import {
  CreateSessionResponseSchema,
  EraseProfileResponseSchema,
  type EraseProfileRequest,
  type EraseProfileResponse,
  MergeProfilesResponseSchema,
  TouchSessionResponseSchema,
  type GetSessionStatsRequest,
  type GetSessionStatsResponse,
  type MergeProfilesRequest,
  type MergeProfilesResponse,
  type TouchSessionRequest,
  type TouchSessionResponse,
  DeleteSessionResponseSchema,
  GetSessionResponseSchema,
  ListSessionsResponseSchema,
  UpdateSessionResponseSchema,
  WatchSessionsResponseSchema,
  WatchSessionStatsResponseSchema,
  ChangeKind,
  type CreateSessionRequest,
  type CreateSessionResponse,
  type DeleteSessionRequest,
  type DeleteSessionResponse,
  type GetSessionRequest,
  type GetSessionResponse,
  type ListSessionsRequest,
  type ListSessionsResponse,
  type UpdateSessionRequest,
  type UpdateSessionResponse,
  type WatchSessionsRequest,
  type WatchSessionsResponse,
  type WatchSessionStatsRequest,
  type WatchSessionStatsResponse,
  type SessionService,
} from "../../gen/session/v1/session_service_pb";
import { SessionSchema } from "../../gen/session/v1/session_pb";
import { ResourceExhaustedError } from "../domain/errors";
import type { Erasure } from "../domain/erasure";
import type { Lifecycle } from "../domain/lifecycle";
import type { Merges } from "../domain/merges";
import type { Sessions } from "../domain/sessions";
import type { SessionStats } from "../domain/stats";
import type { ChangeFeed } from "../domain/watch/feed";
import type { ChangeEventKind } from "../domain/watch/filter";
import { heartbeatInterval, watchSessions } from "../domain/watch/stream";
import { watchSessionStats, type StatsHub } from "../domain/watch/stats";
import type { SessionDoc } from "../domain/session";
import type { SessionStore } from "../domain/store";
import { docToSession, optionalRequestDate, sessionToDoc, statsInput, statsResponse } from "./convert";

/** What a handler knows about its call, whatever the engine. */
export interface CallContext {
  /** Aborted when the client cancels, the deadline passes or the server shuts down. */
  signal: AbortSignal;
  /** The call's deadline, if the client set one. */
  deadline?: Date;
  /**
   * Server streams: set by the handler. When one write of the stream stays blocked (the client
   * does not read) for `timeoutMs`, the engine stops the handler and ends the stream with
   * `error()`, after the messages already written.
   */
  stall?: { timeoutMs: number; error: () => Error };
}

/**
 * One handler per method of a service, with the engine-independent CallContext: a missing or
 * misspelled method of the contract is a compile error.
 */
export type ServiceHandlers<S extends DescService> = {
  [M in keyof S["method"]]: S["method"][M] extends DescMethodUnary<infer I, infer O>
    ? (req: MessageShape<I>, ctx: CallContext) => Promise<MessageShape<O>>
    : S["method"][M] extends DescMethodServerStreaming<infer I, infer O>
      ? (req: MessageShape<I>, ctx: CallContext) => AsyncIterable<MessageShape<O>>
      : never;
};

export type SessionHandlers = ServiceHandlers<typeof SessionService>;

/** The domain use cases the handlers call. */
export interface SessionDomain {
  sessions: Sessions;
  lifecycle: Lifecycle;
  merges: Merges;
  erasure: Erasure;
  stats: SessionStats;
  /** The shared computations of WatchSessionStats. */
  statsHub: StatsHub;
}

const revisionOf = (v: bigint | undefined): number | undefined => (v === undefined ? undefined : Number(v));

const KINDS: Record<ChangeEventKind, ChangeKind> = {
  initial: ChangeKind.INITIAL,
  created: ChangeKind.CREATED,
  updated: ChangeKind.UPDATED,
  deleted: ChangeKind.DELETED,
  entered: ChangeKind.ENTERED_FILTER,
  left: ChangeKind.LEFT_FILTER,
};

/**
 * The response for a change, built once per session document and kind however many watchers
 * receive it: live changes reach every watcher as the same document object of the feed's shared
 * buffer (and the gRPC engine then encodes the response once, see sharedCodec). Responses are
 * never modified after they are built.
 */
const changeResponses = new WeakMap<SessionDoc, Map<ChangeKind, WatchSessionsResponse>>();

function changeResponse(doc: SessionDoc, kind: ChangeKind, revision: number, erased: boolean): WatchSessionsResponse {
  // An erased session's tombstone: nothing but the id, and the profile id while its erasure runs.
  if (erased) {
    const session = create(SessionSchema, { id: doc.id, profile: doc.profile ? { id: doc.profile.id } : undefined });
    return create(WatchSessionsResponseSchema, { event: { case: "change", value: { kind, session, revision: BigInt(revision), erased } } });
  }
  let byKind = changeResponses.get(doc);
  if (byKind === undefined) changeResponses.set(doc, (byKind = new Map()));
  let response = byKind.get(kind);
  if (response === undefined || response.event.value?.revision !== BigInt(revision)) {
    response = create(WatchSessionsResponseSchema, {
      event: { case: "change", value: { kind, session: docToSession(doc), revision: BigInt(revision) } },
    });
    byKind.set(kind, response);
  }
  return response;
}

const durationMs = (d: Duration | undefined): number => (d ? Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6) : 0);

export function createSessionHandlers(domain: SessionDomain, feed: ChangeFeed, store: SessionStore): SessionHandlers {
  const { sessions, lifecycle, merges, stats: sessionStats } = domain;
  return {
    async createSession(req: CreateSessionRequest, ctx: CallContext): Promise<CreateSessionResponse> {
      const { session, operation } = await sessions.create(
        {
          session: sessionToDoc(req.session),
          userAgent: req.userAgent,
          pageUrl: req.pageUrl,
          requestId: req.requestId,
          clientIp: req.clientIp,
          referrer: req.referrer,
        },
        { deadline: ctx.deadline, signal: ctx.signal },
      );
      return create(CreateSessionResponseSchema, { session: docToSession(session, operation) });
    },

    async getSession(req: GetSessionRequest, ctx: CallContext): Promise<GetSessionResponse> {
      const { session } = await sessions.get(req.id, { deadline: ctx.deadline, signal: ctx.signal });
      return create(GetSessionResponseSchema, { session: docToSession(session) });
    },

    async updateSession(req: UpdateSessionRequest, ctx: CallContext): Promise<UpdateSessionResponse> {
      const { session, operation } = await sessions.update(
        {
          session: sessionToDoc(req.session),
          updateMask: req.updateMask?.paths ?? [],
          expectedRevision: revisionOf(req.expectedRevision),
          userAgent: req.userAgent,
          pageUrl: req.pageUrl,
        },
        { deadline: ctx.deadline, signal: ctx.signal },
      );
      return create(UpdateSessionResponseSchema, { session: docToSession(session, operation) });
    },

    async deleteSession(req: DeleteSessionRequest, ctx: CallContext): Promise<DeleteSessionResponse> {
      const { revision } = await sessions.delete(req.id, revisionOf(req.expectedRevision), { deadline: ctx.deadline, signal: ctx.signal });
      return create(DeleteSessionResponseSchema, { revision: BigInt(revision) });
    },

    async listSessions(req: ListSessionsRequest, ctx: CallContext): Promise<ListSessionsResponse> {
      const { sessions: docs, nextPageToken } = await sessions.list(
        {
          profileId: req.profileId,
          status: req.status,
          channel: req.channel,
          channelGroup: req.channelGroup,
          insertFrom: optionalRequestDate("insert_from", req.insertFrom),
          insertTo: optionalRequestDate("insert_to", req.insertTo),
          pageSize: req.pageSize,
          pageToken: req.pageToken,
        },
        { deadline: ctx.deadline, signal: ctx.signal },
      );
      return create(ListSessionsResponseSchema, { sessions: docs.map((d) => docToSession(d)), nextPageToken });
    },

    async touchSession(req: TouchSessionRequest, ctx: CallContext): Promise<TouchSessionResponse> {
      const { session, operation } = await lifecycle.touch(
        { id: req.id, pageUrl: req.pageUrl, at: optionalRequestDate("at", req.at), clientIp: req.clientIp },
        { deadline: ctx.deadline, signal: ctx.signal },
      );
      return create(TouchSessionResponseSchema, { session: docToSession(session, operation) });
    },

    async mergeProfiles(req: MergeProfilesRequest, ctx: CallContext): Promise<MergeProfilesResponse> {
      const { moved } = await merges.merge(
        { sourceProfileIds: req.sourceProfileIds, targetProfileId: req.targetProfileId },
        { deadline: ctx.deadline, signal: ctx.signal },
      );
      return create(MergeProfilesResponseSchema, { movedSessions: moved.length, movedSessionIds: moved });
    },

    async eraseProfile(req: EraseProfileRequest, ctx: CallContext): Promise<EraseProfileResponse> {
      const { erased } = await domain.erasure.erase(req.profileId, { deadline: ctx.deadline, signal: ctx.signal });
      return create(EraseProfileResponseSchema, { erasedSessions: BigInt(erased) });
    },

    async getSessionStats(req: GetSessionStatsRequest, ctx: CallContext): Promise<GetSessionStatsResponse> {
      const stats = await sessionStats.compute(statsInput(req, durationMs(req.onlineWindow)), {
        deadline: ctx.deadline,
        signal: ctx.signal,
      });
      return statsResponse(stats);
    },

    async *watchSessionStats(req: WatchSessionStatsRequest, ctx: CallContext): AsyncGenerator<WatchSessionStatsResponse> {
      const stallMs = feed.options.stallTimeoutMs;
      ctx.stall = {
        timeoutMs: stallMs,
        error: () =>
          new ResourceExhaustedError(
            "WATCHER_TOO_SLOW",
            `the stats stream was not read for ${stallMs} ms (WATCH_STALL_TIMEOUT); watch again`,
          ),
      };
      const events = watchSessionStats(
        domain.statsHub,
        {
          ...statsInput(req, durationMs(req.onlineWindow)),
          minIntervalMs: durationMs(req.minInterval),
          heartbeatMs: heartbeatInterval(durationMs(req.heartbeatInterval)),
        },
        ctx.signal,
      );
      for await (const ev of events) {
        if (ev.type === "stats") {
          yield create(WatchSessionStatsResponseSchema, { event: { case: "stats", value: statsResponse(ev.stats) } });
        } else {
          yield create(WatchSessionStatsResponseSchema, {
            event: { case: "heartbeat", value: { checkedAt: timestampFromDate(ev.checkedAt), revision: BigInt(ev.revision) } },
          });
        }
      }
    },

    async *watchSessions(req: WatchSessionsRequest, ctx: CallContext): AsyncGenerator<WatchSessionsResponse> {
      // The last resume point handed to the engine: after_revision, then each live change,
      // end marker and heartbeat (not the initial state's messages: an unfinished initial state
      // is re-read with send_initial). The engine writes it before the stall status.
      const after = revisionOf(req.afterRevision);
      let last = after;
      ctx.stall = {
        timeoutMs: feed.options.stallTimeoutMs,
        error: () =>
          new ResourceExhaustedError(
            "WATCHER_TOO_SLOW",
            last === undefined
              ? `the watch stream was not read for ${feed.options.stallTimeoutMs} ms (WATCH_STALL_TIMEOUT) before it had a resume point; watch again (with send_initial to re-read the state)`
              : `the watch stream was not read for ${feed.options.stallTimeoutMs} ms (WATCH_STALL_TIMEOUT); resume with after_revision = ${last}`,
            undefined,
            last === undefined ? {} : { last_revision: String(last) },
          ),
      };
      let inInitial = req.sendInitial && after === undefined;
      const events = watchSessions(
        feed,
        store,
        {
          filter: {
            profileId: req.filter?.profileId ?? "",
            ids: req.filter?.ids ?? [],
            status: req.filter?.status ?? "",
            channel: req.filter?.channel ?? "",
            channelGroup: req.filter?.channelGroup ?? "",
          },
          afterRevision: after,
          sendInitial: req.sendInitial,
          heartbeatMs: heartbeatInterval(durationMs(req.heartbeatInterval)),
        },
        ctx.signal,
      );
      for await (const ev of events) {
        if (ev.type === "change") {
          if (!inInitial) last = ev.revision;
          yield changeResponse(ev.session, KINDS[ev.kind], ev.revision, ev.erased === true);
        } else if (ev.type === "initial_end") {
          inInitial = false;
          last = ev.revision;
          yield create(WatchSessionsResponseSchema, { event: { case: "initialStateEnd", value: { revision: BigInt(ev.revision) } } });
        } else {
          last = ev.revision;
          yield create(WatchSessionsResponseSchema, { event: { case: "progress", value: { revision: BigInt(ev.revision) } } });
        }
      }
    },
  };
}
