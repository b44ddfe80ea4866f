// The Session document: the one shape every layer below the RPC edge works with.
// It is Tracardi's Session object as documented (../shared/notes/session-object.md), with its
// snake_case names, Dates for dates and null for "not set"; the MongoDB store writes it as-is.
// `operation` is request-scoped and never stored, so it is not part of the document.

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export type JsonObject = { [key: string]: JsonValue };

export interface SessionTimeDoc {
  insert: Date;
  create: Date | null;
  update: Date | null;
  /** `insert` as epoch seconds with fraction. */
  timestamp: number;
  /** Whole seconds from insert to the latest update. */
  duration: number;
  /** 0 = Sunday ... 6 = Saturday, from insert in UTC. */
  weekday: number;
}

export interface SessionMetadataDoc {
  time: SessionTimeDoc;
  channel: string;
  aux: JsonObject;
  status: string;
}

export interface ProfileDoc {
  id: string;
  primary_id: string | null;
  metadata: JsonObject | null;
}

export interface CountryDoc {
  name: string | null;
  code: string | null;
}

export interface GeoDoc {
  country: CountryDoc;
  city: string | null;
  county: string | null;
  postal: string | null;
  latitude: string | null;
  longitude: string | null;
  location: string | null;
}

export interface DeviceDoc {
  name: string;
  brand: string | null;
  model: string | null;
  type: string | null;
  touch: boolean;
  ip: string | null;
  resolution: string | null;
  geo: GeoDoc;
  color_depth: string | null;
  orientation: string | null;
}

export interface OsDoc {
  name: string;
  version: string;
}

export interface AppDoc {
  type: string;
  name: string;
  version: string;
  language: string | null;
  bot: boolean;
  resolution: string | null;
}

export interface UtmDoc {
  source: string | null;
  medium: string | null;
  campaign: string | null;
  term: string | null;
  content: string | null;
}

/** Page activity of the visit (CreateSession, TouchSession); server-set. */
export interface ActivityDoc {
  page_views: number;
  entry_page: string | null;
  exit_page: string | null;
  /** "idle" or "max_duration" once the server ended the session; "" otherwise. */
  end_reason: string;
}

/** Where the visit came from (src/domain/traffic.ts, docs/traffic.md); server-set at create. */
export interface TrafficDoc {
  /** The referrer as given to CreateSession (trimmed); null without one. */
  referrer: string | null;
  /** The referrer's host, lower case, without "www."; null without a readable one. */
  referrer_host: string | null;
  source: string;
  medium: string;
  /** Google Analytics 4's default channel group ("Organic Search", ...). */
  channel_group: string;
  /** The click-id parameter of the page URL ("gclid"), without its value; null without one. */
  click_id: string | null;
}

export interface SessionDoc {
  id: string;
  metadata: SessionMetadataDoc;
  profile: ProfileDoc | null;
  device: DeviceDoc;
  os: OsDoc;
  app: AppDoc;
  utm: UtmDoc;
  context: JsonObject;
  properties: JsonObject;
  traits: JsonObject;
  aux: JsonObject;
  /** Store-wide increasing number stamped on every change; set by the store. */
  revision: number;
  /** The profile's visit number of this session (1-based); 0 without a profile. Set by the store. */
  session_index: number;
  /** The profile's session numbered session_index - 1; set by the store. */
  previous_session_id: string | null;
  activity: ActivityDoc;
  /** Profiles the session belonged to before MergeProfiles moved it, oldest first. */
  merged_from_profile_ids: string[];
  /** Set by CreateSession; null only in sessions stored before traffic was classified. */
  traffic: TrafficDoc | null;
}

/** Request-scoped description of what a call did; returned to the caller, never stored. */
export interface OperationFlags {
  new: boolean;
  update: boolean;
  segment: boolean;
  merge: string[];
}

export const STATUS_ACTIVE = "active";
export const STATUS_ENDED = "ended";
export const END_IDLE = "idle";
export const END_MAX_DURATION = "max_duration";
export const UNKNOWN_NAME = "Other";

/** A document with every field at its documented empty value (null, "", false, {}). */
export function emptySessionDoc(id: string, insert: Date): SessionDoc {
  return {
    id,
    metadata: {
      time: { insert, create: null, update: null, timestamp: insert.getTime() / 1000, duration: 0, weekday: insert.getUTCDay() },
      channel: "",
      aux: {},
      status: STATUS_ACTIVE,
    },
    profile: null,
    device: {
      name: UNKNOWN_NAME,
      brand: null,
      model: null,
      type: null,
      touch: false,
      ip: null,
      resolution: null,
      geo: {
        country: { name: null, code: null },
        city: null,
        county: null,
        postal: null,
        latitude: null,
        longitude: null,
        location: null,
      },
      color_depth: null,
      orientation: null,
    },
    os: { name: UNKNOWN_NAME, version: "" },
    app: { type: "", name: UNKNOWN_NAME, version: "", language: null, bot: false, resolution: null },
    utm: { source: null, medium: null, campaign: null, term: null, content: null },
    context: {},
    properties: {},
    traits: {},
    aux: {},
    revision: 0,
    session_index: 0,
    previous_session_id: null,
    activity: emptyActivity(),
    merged_from_profile_ids: [],
    traffic: null,
  };
}

export function emptyActivity(): ActivityDoc {
  return { page_views: 0, entry_page: null, exit_page: null, end_reason: "" };
}
