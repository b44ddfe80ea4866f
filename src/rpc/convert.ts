// Conversion between the Protobuf messages of the contract and the SessionDoc of the domain.
// Unset optional fields become null, unset strings "", unset free-form objects {}; the domain
// decides what an empty value means (e.g. "not given" on create).

import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  OperationSchema,
  SessionSchema,
  type Session,
} from "../../gen/session/v1/session_pb";
import type { OperationFlags, SessionDoc } from "../domain/session";
import type { JsonObject } from "../domain/session";

const EPOCH = new Date(0);
const orNull = <T>(v: T | undefined): T | null => (v === undefined ? null : v);
const orUndefined = <T>(v: T | null): T | undefined => (v === null ? undefined : v);
const dateOrNull = (t: Timestamp | undefined): Date | null => (t ? timestampDate(t) : null);
const obj = (v: JsonObject | undefined): JsonObject => v ?? {};

/** The session of a request as a document; server-set fields are left at neutral values. */
export function sessionToDoc(s: Session | undefined): SessionDoc {
  const m = s?.metadata;
  const d = s?.device;
  const g = d?.geo;
  const a = s?.app;
  const u = s?.utm;
  return {
    id: s?.id ?? "",
    metadata: {
      time: {
        insert: dateOrNull(m?.time?.insert) ?? EPOCH,
        create: dateOrNull(m?.time?.create),
        update: dateOrNull(m?.time?.update),
        timestamp: m?.time?.timestamp ?? 0,
        duration: m?.time?.duration ?? 0,
        weekday: m?.time?.weekday ?? 0,
      },
      channel: m?.channel ?? "",
      aux: obj(m?.aux),
      status: m?.status ?? "",
    },
    profile: s?.profile
      ? { id: s.profile.id, primary_id: orNull(s.profile.primaryId), metadata: orNull(s.profile.metadata) }
      : null,
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
  };
}

/** A stored document as a Session message, with the request-scoped operation flags. */
export function docToSession(doc: SessionDoc, op?: OperationFlags): Session {
  const t = doc.metadata.time;
  const d = doc.device;
  const g = d.geo;
  return create(SessionSchema, {
    id: doc.id,
    metadata: {
      time: {
        insert: timestampFromDate(t.insert),
        create: t.create ? timestampFromDate(t.create) : undefined,
        update: t.update ? timestampFromDate(t.update) : undefined,
        timestamp: t.timestamp,
        duration: t.duration,
        weekday: t.weekday,
      },
      channel: doc.metadata.channel,
      aux: doc.metadata.aux,
      status: doc.metadata.status,
    },
    operation: op ? create(OperationSchema, op) : undefined,
    profile: doc.profile
      ? { id: doc.profile.id, primaryId: orUndefined(doc.profile.primary_id), metadata: orUndefined(doc.profile.metadata) }
      : undefined,
    device: {
      name: d.name,
      brand: orUndefined(d.brand),
      model: orUndefined(d.model),
      type: orUndefined(d.type),
      touch: d.touch,
      ip: orUndefined(d.ip),
      resolution: orUndefined(d.resolution),
      geo: {
        country: { name: orUndefined(g.country.name), code: orUndefined(g.country.code) },
        city: orUndefined(g.city),
        county: orUndefined(g.county),
        postal: orUndefined(g.postal),
        latitude: orUndefined(g.latitude),
        longitude: orUndefined(g.longitude),
        location: orUndefined(g.location),
      },
      colorDepth: orUndefined(d.color_depth),
      orientation: orUndefined(d.orientation),
    },
    os: { name: doc.os.name, version: doc.os.version },
    app: {
      type: doc.app.type,
      name: doc.app.name,
      version: doc.app.version,
      language: orUndefined(doc.app.language),
      bot: doc.app.bot,
      resolution: orUndefined(doc.app.resolution),
    },
    utm: {
      source: orUndefined(doc.utm.source),
      medium: orUndefined(doc.utm.medium),
      campaign: orUndefined(doc.utm.campaign),
      term: orUndefined(doc.utm.term),
      content: orUndefined(doc.utm.content),
    },
    context: doc.context,
    properties: doc.properties,
    traits: doc.traits,
    aux: doc.aux,
    revision: BigInt(doc.revision),
  });
}
