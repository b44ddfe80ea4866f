// Conversion between the Protobuf messages of the contract and the SessionDoc of the domain.
// Unset optional fields become null, unset strings "", unset free-form objects {}; the domain
// decides what an empty value means (e.g. "not given" on create). Also the statistics' request
// and response (GetSessionStats, WatchSessionStats) at the end.

import { create } from "@bufbuild/protobuf";
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  GetSessionStatsResponseSchema,
  StatsGroupBy,
  type GetSessionStatsRequest,
  type GetSessionStatsResponse,
  type WatchSessionStatsRequest,
} from "../../gen/session/v1/session_service_pb";
import { InvalidArgumentError } from "../domain/errors";
import type {
  Activity,
  App,
  Country,
  Device,
  Geo,
  Operation,
  Os,
  Profile,
  Session,
  SessionMetadata,
  SessionTime,
  Traffic,
  Utm,
} from "../../gen/session/v1/session_pb";
import type { OperationFlags, SessionDoc } from "../domain/session";
import { MAX_BREAKDOWNS, type Stats, type StatsInput } from "../domain/stats";
import type { StatsField } from "../domain/store";
import type { JsonObject } from "../domain/session";

const EPOCH = new Date(0);
const orNull = <T>(v: T | undefined): T | null => (v === undefined ? null : v);
const orUndefined = <T>(v: T | null): T | undefined => (v === null ? undefined : v);

// Timestamps. A google.protobuf.Timestamp is valid from 0001-01-01T00:00:00Z to
// 9999-12-31T23:59:59.999999999Z with nanos 0 ... 999,999,999; the Connect JSON form cannot
// even spell anything else, so a stored value outside that range could never be read back over
// Connect. Every Timestamp of a request is checked against it (INVALID_ARGUMENT naming the
// field) before the domain sees it. Inside the range a JavaScript Date holds every instant
// (it reaches ±8.64e15 ms, years ±275,760) but only to the millisecond: finer digits are
// truncated (toward the past, so the maximum 9999-12-31T23:59:59.999999999Z is kept as
// ...59.999Z and never rounds up into year 10000). What is stored therefore always converts
// back on both protocols.
export const MIN_TIMESTAMP_SECONDS = -62_135_596_800; // 0001-01-01T00:00:00Z
export const MAX_TIMESTAMP_SECONDS = 253_402_300_799; // 9999-12-31T23:59:59Z
const MIN_MS = MIN_TIMESTAMP_SECONDS * 1000;
const MAX_MS = MAX_TIMESTAMP_SECONDS * 1000 + 999;

/** A request's Timestamp as a Date (millisecond precision); throws InvalidArgumentError naming `field`. */
export function requestDate(field: string, t: Timestamp): Date {
  const seconds = Number(t.seconds);
  if (!(seconds >= MIN_TIMESTAMP_SECONDS && seconds <= MAX_TIMESTAMP_SECONDS)) {
    throw InvalidArgumentError.field(field, "must be a timestamp from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z");
  }
  if (!Number.isInteger(t.nanos) || t.nanos < 0 || t.nanos > 999_999_999) {
    throw InvalidArgumentError.field(field, "nanos must be from 0 to 999999999");
  }
  return new Date(seconds * 1000 + Math.floor(t.nanos / 1_000_000));
}

/** An optional Timestamp of a request as a Date, or undefined when unset. */
export function optionalRequestDate(field: string, t: Timestamp | undefined): Date | undefined {
  return t === undefined ? undefined : requestDate(field, t);
}
const obj = (v: JsonObject | undefined): JsonObject => v ?? {};

/**
 * The session of a request as a document; server-set fields are left at neutral values.
 * Throws InvalidArgumentError for a Timestamp out of range, naming it below `field`.
 */
export function sessionToDoc(s: Session | undefined, field = "session"): SessionDoc {
  const m = s?.metadata;
  const dateOrNull = (name: string, t: Timestamp | undefined): Date | null => (t ? requestDate(`${field}.metadata.time.${name}`, t) : null);
  const d = s?.device;
  const g = d?.geo;
  const a = s?.app;
  const u = s?.utm;
  return {
    id: s?.id ?? "",
    metadata: {
      time: {
        insert: dateOrNull("insert", m?.time?.insert) ?? EPOCH,
        create: dateOrNull("create", m?.time?.create),
        update: dateOrNull("update", m?.time?.update),
        timestamp: m?.time?.timestamp ?? 0,
        duration: m?.time?.duration ?? 0,
        weekday: m?.time?.weekday ?? 0,
      },
      channel: m?.channel ?? "",
      aux: obj(m?.aux),
      status: m?.status ?? "",
    },
    profile: s?.profile ? { id: s.profile.id, primary_id: orNull(s.profile.primaryId), metadata: orNull(s.profile.metadata) } : null,
    device: {
      name: d?.name ?? "",
      brand: orNull(d?.brand),
      model: orNull(d?.model),
      type: orNull(d?.type),
      touch: d?.touch ?? false,
      ip: orNull(d?.ip),
      resolution: orNull(d?.resolution),
      geo: {
        country: { name: orNull(g?.country?.name), code: orNull(g?.country?.code) },
        city: orNull(g?.city),
        county: orNull(g?.county),
        postal: orNull(g?.postal),
        latitude: orNull(g?.latitude),
        longitude: orNull(g?.longitude),
        location: orNull(g?.location),
      },
      color_depth: orNull(d?.colorDepth),
      orientation: orNull(d?.orientation),
    },
    os: { name: s?.os?.name ?? "", version: s?.os?.version ?? "" },
    app: {
      type: a?.type ?? "",
      name: a?.name ?? "",
      version: a?.version ?? "",
      language: orNull(a?.language),
      bot: a?.bot ?? false,
      resolution: orNull(a?.resolution),
    },
    utm: {
      source: orNull(u?.source),
      medium: orNull(u?.medium),
      campaign: orNull(u?.campaign),
      term: orNull(u?.term),
      content: orNull(u?.content),
    },
    context: obj(s?.context),
    properties: obj(s?.properties),
    traits: obj(s?.traits),
    aux: obj(s?.aux),
    revision: Number(s?.revision ?? 0n),
    session_index: s?.sessionIndex ?? 0,
    previous_session_id: orNull(s?.previousSessionId),
    activity: {
      page_views: s?.activity?.pageViews ?? 0,
      entry_page: orNull(s?.activity?.entryPage),
      exit_page: orNull(s?.activity?.exitPage),
      end_reason: s?.activity?.endReason ?? "",
    },
    merged_from_profile_ids: s ? [...s.mergedFromProfileIds] : [],
    // Output only: CreateSession classifies it, no write takes it from a client.
    traffic: null,
  };
}

/**
 * Every field of message type M, optional ones included (undefined when unset): a literal of
 * this type is a complete message, so the compiler reports a field added to the contract and
 * not filled here. (`$unknown` is left out, as `create()` leaves it out.)
 */
type AllFields<M> = { [K in Exclude<keyof M, "$unknown">]-?: M[K] };
const message = <M>(fields: AllFields<M>): M => fields as M;

/**
 * A stored document as a Session message, with the request-scoped operation flags.
 *
 * Built as message literals instead of with `create()`: a protobuf-es message is a plain
 * object with `$typeName`, and a field whose value is undefined is unset, as when `create()`
 * leaves it out. Same message (test/unit/convert.test.ts), built with less work per response
 * (this runs for every session answered or watched).
 */
export function docToSession(doc: SessionDoc, op?: OperationFlags): Session {
  const t = doc.metadata.time;
  const d = doc.device;
  const g = d.geo;
  const p = doc.profile;
  return message<Session>({
    $typeName: "session.v1.Session",
    id: doc.id,
    metadata: message<SessionMetadata>({
      $typeName: "session.v1.SessionMetadata",
      time: message<SessionTime>({
        $typeName: "session.v1.SessionTime",
        insert: timestamp(t.insert),
        create: t.create ? timestamp(t.create) : undefined,
        update: t.update ? timestamp(t.update) : undefined,
        timestamp: t.timestamp,
        duration: t.duration,
        weekday: t.weekday,
      }),
      channel: doc.metadata.channel,
      aux: doc.metadata.aux,
      status: doc.metadata.status,
    }),
    operation: op
      ? message<Operation>({ $typeName: "session.v1.Operation", new: op.new, update: op.update, segment: op.segment, merge: op.merge })
      : undefined,
    profile: p
      ? message<Profile>({
          $typeName: "session.v1.Profile",
          id: p.id,
          primaryId: orUndefined(p.primary_id),
          metadata: orUndefined(p.metadata),
        })
      : undefined,
    device: message<Device>({
      $typeName: "session.v1.Device",
      name: d.name,
      brand: orUndefined(d.brand),
      model: orUndefined(d.model),
      type: orUndefined(d.type),
      touch: d.touch,
      ip: orUndefined(d.ip),
      resolution: orUndefined(d.resolution),
      geo: message<Geo>({
        $typeName: "session.v1.Geo",
        country: message<Country>({
          $typeName: "session.v1.Country",
          name: orUndefined(g.country.name),
          code: orUndefined(g.country.code),
        }),
        city: orUndefined(g.city),
        county: orUndefined(g.county),
        postal: orUndefined(g.postal),
        latitude: orUndefined(g.latitude),
        longitude: orUndefined(g.longitude),
        location: orUndefined(g.location),
      }),
      colorDepth: orUndefined(d.color_depth),
      orientation: orUndefined(d.orientation),
    }),
    os: message<Os>({ $typeName: "session.v1.Os", name: doc.os.name, version: doc.os.version }),
    app: message<App>({
      $typeName: "session.v1.App",
      type: doc.app.type,
      name: doc.app.name,
      version: doc.app.version,
      language: orUndefined(doc.app.language),
      bot: doc.app.bot,
      resolution: orUndefined(doc.app.resolution),
    }),
    utm: message<Utm>({
      $typeName: "session.v1.Utm",
      source: orUndefined(doc.utm.source),
      medium: orUndefined(doc.utm.medium),
      campaign: orUndefined(doc.utm.campaign),
      term: orUndefined(doc.utm.term),
      content: orUndefined(doc.utm.content),
    }),
    context: doc.context,
    properties: doc.properties,
    traits: doc.traits,
    aux: doc.aux,
    revision: BigInt(doc.revision),
    sessionIndex: doc.session_index,
    previousSessionId: orUndefined(doc.previous_session_id),
    activity: message<Activity>({
      $typeName: "session.v1.Activity",
      pageViews: doc.activity.page_views,
      entryPage: orUndefined(doc.activity.entry_page),
      exitPage: orUndefined(doc.activity.exit_page),
      endReason: doc.activity.end_reason,
    }),
    mergedFromProfileIds: doc.merged_from_profile_ids,
    traffic: doc.traffic
      ? message<Traffic>({
          $typeName: "session.v1.Traffic",
          referrer: orUndefined(doc.traffic.referrer),
          referrerHost: orUndefined(doc.traffic.referrer_host),
          source: doc.traffic.source,
          medium: doc.traffic.medium,
          channelGroup: doc.traffic.channel_group,
          clickId: orUndefined(doc.traffic.click_id),
        })
      : undefined,
  });
}

/**
 * What timestampFromDate makes, as a literal. A date outside the Timestamp range (only a
 * document written before requests were checked can hold one) is clamped to the range, so that
 * such a session can still be read, listed and watched instead of failing every call.
 */
function timestamp(date: Date): Timestamp {
  const raw = date.getTime();
  const ms = raw > MAX_MS ? MAX_MS : raw >= MIN_MS ? raw : MIN_MS; // NaN (an invalid Date) too
  const seconds = Math.floor(ms / 1000);
  return message<Timestamp>({ $typeName: "google.protobuf.Timestamp", seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1_000_000 });
}

// Statistics.

const GROUP_BY: Record<StatsGroupBy, StatsField | undefined> = {
  [StatsGroupBy.UNSPECIFIED]: undefined,
  [StatsGroupBy.CHANNEL]: "channel",
  [StatsGroupBy.STATUS]: "status",
  [StatsGroupBy.DEVICE_TYPE]: "device_type",
  [StatsGroupBy.OS_NAME]: "os_name",
  [StatsGroupBy.APP_NAME]: "app_name",
  [StatsGroupBy.COUNTRY_CODE]: "country_code",
  [StatsGroupBy.UTM_SOURCE]: "utm_source",
  [StatsGroupBy.CHANNEL_GROUP]: "channel_group",
  [StatsGroupBy.SOURCE]: "source",
};

const FIELD_GROUP_BY = new Map<StatsField, StatsGroupBy>(
  Object.entries(GROUP_BY).flatMap(([k, v]) => (v === undefined ? [] : [[v, Number(k) as StatsGroupBy]])),
);

/** The field of a StatsGroupBy (undefined for UNSPECIFIED); an unknown number is INVALID_ARGUMENT. */
function groupByField(field: string, value: StatsGroupBy): StatsField | undefined {
  if (!(value in GROUP_BY)) throw InvalidArgumentError.field(field, `unknown value ${value}`);
  return GROUP_BY[value];
}

/**
 * The domain's input of GetSessionStats and WatchSessionStats (their common fields). The
 * domain checks the rest (breakdowns: count, UNSPECIFIED, repeats); the count first here too, so
 * that a huge list costs nothing.
 */
export function statsInput(req: GetSessionStatsRequest | WatchSessionStatsRequest, onlineWindowMs: number): StatsInput {
  if (req.breakdowns.length > MAX_BREAKDOWNS) {
    throw InvalidArgumentError.field("breakdowns", `must have at most ${MAX_BREAKDOWNS} entries`);
  }
  const breakdowns = req.breakdowns.map((b, i) => groupByField(`breakdowns[${i}]`, b));
  return {
    profileId: req.filter?.profileId ?? "",
    status: req.filter?.status ?? "",
    channel: req.filter?.channel ?? "",
    groupBy: groupByField("group_by", req.groupBy),
    breakdowns,
    startedPerMinute: req.startedPerMinute,
    since: optionalRequestDate("since", req.since),
    onlineWindowMs,
  };
}

const groupsOf = (groups: Stats["groups"]) => groups.map((g) => ({ key: g.key ?? undefined, count: BigInt(g.count) }));

export function statsResponse(stats: Stats): GetSessionStatsResponse {
  return create(GetSessionStatsResponseSchema, {
    total: BigInt(stats.total),
    groups: groupsOf(stats.groups),
    onlineNow: BigInt(stats.online),
    computedAt: timestampFromDate(stats.computedAt),
    breakdowns: stats.breakdowns.map((b) => ({ groupBy: FIELD_GROUP_BY.get(b.field), groups: groupsOf(b.groups) })),
    startedPerMinute: stats.startedPerMinute.map((m) => ({ start: timestampFromDate(m.start), count: BigInt(m.count) })),
  });
}
