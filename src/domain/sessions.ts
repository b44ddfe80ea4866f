// The session use cases: create, get, update, delete, list. Plain functions over the store port;
// no protobuf and no gRPC here. The RPC handlers (src/rpc/handlers.ts) convert messages to and
// from SessionDoc and call these.

import { RevisionConflictError, type FieldViolation } from "./errors";
import { parseUserAgent } from "./enrich";
import { applyVisitorIpOnCreate, checkClientIp, checkDeviceIp, DEFAULT_VISITOR_IP, storedDeviceIp, type VisitorIpOptions } from "./geo";
import { newSessionId } from "./ids";
import { checkSessionSize, DEFAULT_LIMITS, sessionSizeBytes, type InputLimits } from "./limits";
import { buildPatch, copyPaths, PathSet, resolveMask, setIn } from "./mask";
import { STATUS_ACTIVE, UNKNOWN_NAME, type OperationFlags, type ProfileDoc, type SessionDoc, type UtmDoc } from "./session";
import { durationSeconds, insertTimeFields, systemClock, type Clock } from "./time";
import { decodePageToken, encodePageToken, type PageFilters } from "./page-token";
import { classifyTraffic, DomainMap, type TrafficOptions } from "./traffic";
import { checkId, checkLength, checkRevision, checkSessionFreeForm, checkSessionStrings, fail, parsePageUrl } from "./validate";
import type { CallOptions, SessionStore } from "./store";

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 1000;
/** Sessions read from the store per query while filling a page (bounds the memory of one list). */
const LIST_CHUNK = 100;
/** Page tokens are short (about 100 characters); anything much longer is not one of ours. */
const MAX_PAGE_TOKEN_LENGTH = 1024;
/** Conditional-write attempts of an update without expected_revision before giving up. */
const MAX_UPDATE_ATTEMPTS = 20;

export interface SessionResult {
  session: SessionDoc;
  operation: OperationFlags;
}

export interface CreateInput {
  /** The session as sent; server-set fields are ignored, "" / null mean "not given". */
  session: SessionDoc;
  userAgent: string;
  pageUrl: string;
  requestId: string;
  /** The visitor's address ("" = not given; falls back to session.device.ip): geo and device.ip. */
  clientIp?: string;
  /** The visit's referrer ("" = none); classified with the page URL into `traffic`. */
  referrer?: string;
}

export interface UpdateInput {
  /** The session as sent: its id and the values of the masked paths. */
  session: SessionDoc;
  updateMask: readonly string[];
  expectedRevision?: number;
  userAgent: string;
  pageUrl: string;
}

export interface ListInput extends PageFilters {
  pageSize: number;
  pageToken: string;
}

export interface ListResult {
  sessions: SessionDoc[];
  nextPageToken: string;
}

const emptyProfile = (): ProfileDoc => ({ id: "", primary_id: null, metadata: null });

const operation = (flags: Partial<OperationFlags>): OperationFlags => ({ new: false, update: false, segment: false, merge: [], ...flags });

/** Per field: what the client sent wins; parsed values fill only what it left empty. */
function fillUtm(sent: UtmDoc, parsed: UtmDoc | null): UtmDoc {
  if (!parsed) return sent;
  return {
    source: sent.source ?? parsed.source,
    medium: sent.medium ?? parsed.medium,
    campaign: sent.campaign ?? parsed.campaign,
    term: sent.term ?? parsed.term,
    content: sent.content ?? parsed.content,
  };
}

/** Fills os, device and app from the user agent wherever the client sent nothing. */
function fillFromUserAgent(doc: SessionDoc, userAgent: string): void {
  if (userAgent !== "") {
    const ua = parseUserAgent(userAgent);
    const pick = (sent: string, parsed: string): string => (sent !== "" && sent !== UNKNOWN_NAME ? sent : parsed);
    doc.os = { name: pick(doc.os.name, ua.os.name), version: pick(doc.os.version, ua.os.version) };
    doc.device.name = pick(doc.device.name, ua.device.name);
    doc.device.brand ??= ua.device.brand;
    doc.device.model ??= ua.device.model;
    doc.device.type ??= ua.device.type;
    doc.device.touch ||= ua.device.touch;
    doc.app.type = pick(doc.app.type, ua.app.type);
    doc.app.name = pick(doc.app.name, ua.app.name);
    doc.app.version = pick(doc.app.version, ua.app.version);
    doc.app.bot ||= ua.app.bot;
  }
  if (doc.os.name === "") doc.os.name = UNKNOWN_NAME;
  if (doc.device.name === "") doc.device.name = UNKNOWN_NAME;
  if (doc.app.name === "") doc.app.name = UNKNOWN_NAME;
}

/** The user-agent-derived paths an update rewrites when a new user agent is sent. */
const USER_AGENT_PATHS: string[][] = [
  ["os", "name"],
  ["os", "version"],
  ["device", "name"],
  ["device", "brand"],
  ["device", "model"],
  ["device", "type"],
  ["device", "touch"],
  ["app", "type"],
  ["app", "name"],
  ["app", "version"],
  ["app", "bot"],
];

export class Sessions {
  private readonly limits: InputLimits;
  private readonly traffic: TrafficOptions;

  constructor(
    private readonly store: SessionStore,
    private readonly clock: Clock = systemClock,
    private readonly newId: () => string = newSessionId,
    limits: Partial<InputLimits> = {},
    /** IP_ANONYMIZATION and the geo lookup of create (src/domain/geo.ts). */
    private readonly visitorIp: VisitorIpOptions = DEFAULT_VISITOR_IP,
    traffic: Partial<TrafficOptions> = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.traffic = { ownDomains: new DomainMap<true>(), ...traffic };
  }

  async create(input: CreateInput, options: CallOptions = {}): Promise<SessionResult> {
    // The input is the caller's freshly converted request: ours to fill in.
    const doc = input.session;
    const clientIp = input.clientIp ?? "";
    const { maxStringLength } = this.limits;
    fail([
      ...checkId("session.id", doc.id, false),
      ...checkId("request_id", input.requestId, false),
      ...checkClientIp(clientIp),
      ...checkDeviceIp("session.device.ip", doc.device.ip, this.visitorIp.anonymization),
      ...checkLength("user_agent", input.userAgent, maxStringLength),
      ...checkLength("page_url", input.pageUrl, maxStringLength),
      ...checkLength("referrer", input.referrer, maxStringLength),
      ...checkSessionStrings(doc, maxStringLength),
      ...checkSessionFreeForm(doc, this.limits.maxFreeFormKeys),
    ]);
    const parsedUtm = parsePageUrl("page_url", input.pageUrl);
    if (doc.id === "") doc.id = this.newId();
    const now = this.clock.now();
    doc.metadata.time = { ...doc.metadata.time, ...insertTimeFields(now), update: null, duration: 0 };
    doc.metadata.status = STATUS_ACTIVE;
    fillFromUserAgent(doc, input.userAgent);
    applyVisitorIpOnCreate(doc.device, clientIp, this.visitorIp);
    doc.utm = fillUtm(doc.utm, parsedUtm);
    // Output only: whatever the client sent is replaced by the classification.
    doc.traffic = classifyTraffic({ pageUrl: input.pageUrl, referrer: input.referrer ?? "", utm: doc.utm }, this.traffic);
    doc.revision = 0;
    // Lifecycle fields are the server's: the visit starts on its first page, and the store
    // numbers it among its profile's visits.
    const page = input.pageUrl === "" ? null : input.pageUrl;
    doc.activity = { page_views: page === null ? 0 : 1, entry_page: page, exit_page: page, end_reason: "" };
    doc.session_index = 0;
    doc.previous_session_id = null;
    doc.merged_from_profile_ids = [];
    // As it will be stored (the store adds only the visit number and the revision).
    checkSessionSize(doc, this.limits.maxSessionBytes);
    const profileId = doc.profile?.id ?? "";
    const requestId = input.requestId === "" ? undefined : input.requestId;
    const { session, created } = await this.store.create(doc, {
      ...options,
      requestId,
      numberVisitIn: profileId === "" ? undefined : profileId,
    });
    // A replayed request_id answers with the session its first call made: not new any more.
    return { session, operation: operation({ new: created }) };
  }

  async get(id: string, options: CallOptions = {}): Promise<SessionResult> {
    fail(checkId("id", id, true));
    return { session: await this.store.get(id, options), operation: operation({}) };
  }

  async update(input: UpdateInput, options: CallOptions = {}): Promise<SessionResult> {
    const sent = input.session;
    // The mask first: its size limit is checked before any other work on the request.
    const masked = resolveMask(input.updateMask, this.limits.maxMaskPaths);
    const maskSet = new PathSet(masked);
    // A masked device.ip is stored anonymized like a created one (not looked up: geo is the client's to set here).
    const ipMasked = maskSet.covers(["device", "ip"]);
    const { maxStringLength } = this.limits;
    fail([
      ...checkId("session.id", sent.id, true),
      ...checkLength("user_agent", input.userAgent, maxStringLength),
      ...checkLength("page_url", input.pageUrl, maxStringLength),
      ...checkSessionStrings(sent, maxStringLength),
      ...checkSessionFreeForm(sent, this.limits.maxFreeFormKeys),
      ...checkRevision("expected_revision", input.expectedRevision),
      ...(ipMasked ? checkDeviceIp("session.device.ip", sent.device.ip, this.visitorIp.anonymization) : []),
    ]);
    const parsedUtm = parsePageUrl("page_url", input.pageUrl);
    const incoming = structuredClone(sent);
    if (ipMasked) incoming.device.ip = storedDeviceIp("session.device.ip", incoming.device.ip, this.visitorIp.anonymization);
    incoming.utm = fillUtm(incoming.utm, parsedUtm);
    const utmMasked = masked.some((p) => p[0] === "utm");
    // A path into the profile of a session without one starts from an empty profile.
    const intoProfile = masked.some((p) => p[0] === "profile" && p.length > 1);
    if (intoProfile) incoming.profile ??= emptyProfile();

    for (let attempt = 1; ; attempt++) {
      const current = await this.store.get(sent.id, options);
      if (input.expectedRevision !== undefined && current.revision !== input.expectedRevision) {
        throw new RevisionConflictError(sent.id, input.expectedRevision, current.revision);
      }
      const next = structuredClone(current);
      if (intoProfile) next.profile ??= emptyProfile();
      const paths = [...masked];
      copyPaths(next, incoming, masked);

      if (input.userAgent !== "") {
        const parsed = structuredClone(next);
        parsed.os = { name: "", version: "" };
        Object.assign(parsed.device, { name: "", brand: null, model: null, type: null, touch: false });
        Object.assign(parsed.app, { type: "", name: "", version: "", bot: false });
        fillFromUserAgent(parsed, input.userAgent);
        const uaPaths = USER_AGENT_PATHS.filter((p) => !maskSet.covers(p));
        copyPaths(next, parsed, uaPaths);
        paths.push(...uaPaths);
      }
      // First campaign wins: page_url fills utm only while no source is set, unless masked.
      if (parsedUtm && !utmMasked && current.utm.source === null) {
        next.utm = parsedUtm;
        paths.push(["utm"]);
      }

      const now = this.clock.now();
      setIn(next as unknown as Record<string, unknown>, ["metadata", "time", "update"], now);
      next.metadata.time.duration = durationSeconds(current.metadata.time.insert, now);
      paths.push(["metadata", "time", "update"], ["metadata", "time", "duration"]);

      // `next` is the document as it would be stored: it must stay readable.
      checkSessionSize(next, this.limits.maxSessionBytes);
      const patch = buildPatch(current, next, paths);
      try {
        const session = await this.store.update(sent.id, patch, { ...options, expectedRevision: current.revision });
        return { session, operation: operation({ update: true }) };
      } catch (err) {
        // Someone else wrote in between: re-read and re-apply, unless the caller pinned a revision.
        const retry = err instanceof RevisionConflictError && input.expectedRevision === undefined && attempt < MAX_UPDATE_ATTEMPTS;
        if (!retry) throw err;
      }
    }
  }

  async delete(id: string, expectedRevision: number | undefined, options: CallOptions = {}): Promise<{ revision: number }> {
    fail([...checkId("id", id, true), ...checkRevision("expected_revision", expectedRevision)]);
    return this.store.delete(id, { ...options, expectedRevision });
  }

  async list(input: ListInput, options: CallOptions = {}): Promise<ListResult> {
    const { maxStringLength } = this.limits;
    const violations: FieldViolation[] = [
      ...checkLength("profile_id", input.profileId, maxStringLength),
      ...checkLength("status", input.status, maxStringLength),
      ...checkLength("channel", input.channel, maxStringLength),
      ...checkLength("channel_group", input.channelGroup, maxStringLength),
    ];
    if (input.pageSize < 0) violations.push({ field: "page_size", description: "must not be negative" });
    if (input.pageToken.length > MAX_PAGE_TOKEN_LENGTH)
      violations.push({ field: "page_token", description: "is not a token returned by ListSessions" });
    if (input.insertFrom && input.insertTo && input.insertFrom >= input.insertTo) {
      violations.push({ field: "insert_to", description: "must be after insert_from" });
    }
    fail(violations);
    const limit = Math.min(input.pageSize === 0 ? DEFAULT_PAGE_SIZE : input.pageSize, MAX_PAGE_SIZE);
    let after = input.pageToken === "" ? undefined : decodePageToken(input.pageToken, input);
    // A page ends at `limit` sessions or before the byte budget, whichever comes first, so the
    // answer always fits in MAX_MESSAGE_BYTES; it has at least one session (each is at most
    // MAX_SESSION_BYTES, half the message limit). The store is read in chunks so that a large
    // page of large sessions is not all held in memory past the budget.
    const sessions: SessionDoc[] = [];
    let bytes = 0;
    let more: boolean;
    fill: for (;;) {
      const want = Math.min(limit - sessions.length, LIST_CHUNK);
      const rows = await this.store.list(
        {
          profileId: input.profileId || undefined,
          status: input.status || undefined,
          channel: input.channel || undefined,
          channelGroup: input.channelGroup || undefined,
          insertFrom: input.insertFrom,
          insertTo: input.insertTo,
          after,
          limit: want + 1,
        },
        options,
      );
      for (const doc of rows.slice(0, want)) {
        const size = sessionSizeBytes(doc);
        if (sessions.length > 0 && bytes + size > this.limits.listPageBytes) {
          more = true;
          break fill;
        }
        sessions.push(doc);
        bytes += size;
      }
      more = rows.length > want;
      if (!more || sessions.length >= limit) break;
      const last = sessions[sessions.length - 1];
      after = { insert: last.metadata.time.insert, id: last.id };
    }
    const last = sessions[sessions.length - 1];
    const nextPageToken = more && last ? encodePageToken({ insert: last.metadata.time.insert, id: last.id }, input) : "";
    return { sessions, nextPageToken };
  }
}
