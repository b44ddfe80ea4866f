// Geo from IP and IP anonymization of a session's device (CreateSession, TouchSession,
// UpdateSession). The lookup itself is I/O (database files): it is the port GeoLocator, whose
// implementation lives outside the domain (src/geo/mmdb.ts) and is given by src/server.ts.
//
// Rules:
// - The address looked up is the full one (client_ip, else session.device.ip); what is stored in
//   device.ip is only ever anonymizeIp's result (src/domain/ip.ts), so the full address reaches
//   neither the store, nor the change log, nor an answer when IP_ANONYMIZATION is on.
// - Explicit values win, group by group, so that one place is never mixed with another: the
//   looked-up country (code and name) fills device.geo.country only when neither its code nor
//   its name is set; the looked-up city-level fields (city, county, postal, latitude, longitude,
//   location) fill only when none of them is set. At CreateSession "set" means sent by the
//   client; at TouchSession it means stored (by the client, or by an earlier lookup).
// - device.ip at CreateSession: session.device.ip when the client sent it, else client_ip, each
//   anonymized. At TouchSession: client_ip, anonymized, replaces it (the latest address).
// - Private, loopback, link-local and other addresses of no place (isLocalIp) are not looked up.
// - An address that cannot be parsed: client_ip is INVALID_ARGUMENT; so is session.device.ip
//   under "truncate" (nothing safe to keep); under "drop" it is dropped; under "off" it is
//   stored as sent, as before, and not looked up.

import { InvalidArgumentError, type FieldViolation } from "./errors";
import { anonymizeIp, checkIp, isLocalIp, parseIp, type IpAddress, type IpAnonymization } from "./ip";
import type { DeviceDoc, GeoDoc } from "./session";

/** What a lookup found: the session's geo fields, null where the database knows nothing. */
export type GeoFields = Omit<GeoDoc, "country"> & { country: { code: string; name: string | null } | null };

/** The port: where an address is. Synchronous and cached (a lookup costs microseconds). */
export interface GeoLocator {
  /** undefined when the address is in no database (private, reserved or unallocated ranges). */
  lookup(ip: IpAddress): GeoFields | undefined;
}

const CITY_FIELDS = ["city", "county", "postal", "latitude", "longitude", "location"] as const;

/** Fills `geo` from `found` where nothing is set (see the rules above). Mutates `geo`. */
export function fillGeo(geo: GeoDoc, found: GeoFields): void {
  if (found.country && geo.country.code === null && geo.country.name === null) {
    geo.country = { code: found.country.code, name: found.country.name };
  }
  if (CITY_FIELDS.every((f) => geo[f] === null) && CITY_FIELDS.some((f) => found[f] !== null)) {
    for (const f of CITY_FIELDS) geo[f] = found[f];
  }
}

/** How the visitor's address is handled: IP_ANONYMIZATION and the geo lookup. */
export interface VisitorIpOptions {
  anonymization: IpAnonymization;
  /** undefined: no lookup (device.geo is left as sent). */
  locator?: GeoLocator;
}

export const DEFAULT_VISITOR_IP: VisitorIpOptions = { anonymization: "off" };

/** session.device.ip as sent by a client (create, update): under "truncate" it must be an address. */
export function checkDeviceIp(field: string, value: string | null, mode: IpAnonymization): FieldViolation[] {
  if (mode !== "truncate" || value === null || value.trim() === "" || parseIp(value) !== undefined) return [];
  return [{ field, description: "must be an IPv4 or IPv6 address, to be anonymized (IP_ANONYMIZATION=truncate)" }];
}

/**
 * The device.ip to store for a value a client sent as session.device.ip (create, update): its
 * anonymized form (see the rules above). Throws InvalidArgumentError naming `field` when
 * checkDeviceIp would have refused it.
 */
export function storedDeviceIp(field: string, value: string | null, mode: IpAnonymization): string | null {
  if (value === null) return null;
  const ip = parseIp(value);
  if (ip) return anonymizeIp(ip, mode);
  if (mode === "drop") return null;
  const refused = checkDeviceIp(field, value, mode);
  if (refused.length > 0) throw new InvalidArgumentError(refused);
  return value;
}

/** Validation of CreateSession's and TouchSession's client_ip. */
export function checkClientIp(value: string): FieldViolation[] {
  return checkIp("client_ip", value);
}

/** CreateSession: fills device.ip and device.geo of the new session. Mutates `device`. */
export function applyVisitorIpOnCreate(device: DeviceDoc, clientIp: string, options: VisitorIpOptions): void {
  const sent = device.ip;
  const sentGiven = sent !== null && sent.trim() !== "";
  const full = parseIp(clientIp) ?? (sentGiven ? parseIp(sent) : undefined);
  const found = full && !isLocalIp(full) ? options.locator?.lookup(full) : undefined;
  if (found) fillGeo(device.geo, found);
  device.ip =
    sentGiven || !full ? storedDeviceIp("session.device.ip", sent, options.anonymization) : anonymizeIp(full, options.anonymization);
}

/**
 * TouchSession with a client_ip (already validated): the device.ip to store and the device.geo
 * after the lookup, from the stored device. Returns the new values; changes nothing.
 */
export function visitorIpOnTouch(device: DeviceDoc, clientIp: string, options: VisitorIpOptions): { ip: string | null; geo: GeoDoc } {
  const full = parseIp(clientIp);
  const geo = structuredClone(device.geo);
  if (!full) return { ip: device.ip, geo };
  const found = isLocalIp(full) ? undefined : options.locator?.lookup(full);
  if (found) fillGeo(geo, found);
  return { ip: anonymizeIp(full, options.anonymization), geo };
}
