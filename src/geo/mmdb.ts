// The GeoLocator port (src/domain/geo.ts) over MaxMind DB files, read with `maxmind` (MIT; the
// mmdb-lib reader with an LRU cache of decoded records):
// - the country database bundled through npm, @ip-location-db/geo-whois-asn-country-mmdb (CC0,
//   IPv4 and IPv6, built from the RIRs' WHOIS and ASN data): its records hold only
//   `country_code`, so the country's name is the English name of that code as Node's ICU data
//   has it (Intl.DisplayNames, "US" -> "United States"); always loaded, no setup;
// - an optional city database (GEOIP_CITY_DB) in the GeoIP2 / GeoLite2 City layout, which DB-IP's
//   City Lite shares: city.names.en, subdivisions[].names.en (the most specific one is the
//   county), postal.code, location.latitude / longitude, country.iso_code. Where it has a record
//   it wins; where it has none, the bundled country database answers.
//
// Both files are read whole at start (the country one is about 8 MB): a missing, unreadable or
// invalid file is a GeoDatabaseError naming it, which stops the service. Lookups are synchronous
// (a tree walk of at most 128 steps in memory plus a cached record decode).

import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import maxmind, { type Reader, type Response } from "maxmind";
import type { GeoFields, GeoLocator } from "../domain/geo";
import { formatIp, type IpAddress } from "../domain/ip";

/** Decoded records kept by each reader's LRU cache (the cache is keyed by record, not by address). */
export const GEO_RECORD_CACHE_SIZE = 10_000;
/** Longest name taken from a database; longer ones are cut (a database is data, not trusted to be small). */
const MAX_NAME_LENGTH = 200;

/** A geo database that cannot be used: names the file and the reason. */
export class GeoDatabaseError extends Error {}

/** The bundled country database's path (resolved through the package, wherever npm put it). */
export function bundledCountryDatabase(): string {
  const require = createRequire(__filename);
  const pkg = require.resolve("@ip-location-db/geo-whois-asn-country-mmdb/package.json");
  return join(dirname(pkg), "geo-whois-asn-country.mmdb");
}

type Names = { en?: unknown } | undefined;
interface CityRecord {
  country?: { iso_code?: unknown; names?: Names };
  city?: { names?: Names };
  subdivisions?: { names?: Names }[];
  postal?: { code?: unknown };
  location?: { latitude?: unknown; longitude?: unknown };
}
interface CountryRecord {
  country_code?: unknown;
}

const regionNames = new Intl.DisplayNames("en", { type: "region", fallback: "none" });

/** An ISO 3166-1 alpha-2 code in upper case, or null. */
function countryCode(value: unknown): string | null {
  return typeof value === "string" && /^[A-Za-z]{2}$/.test(value) ? value.toUpperCase() : null;
}

/** Names by code, memoized (at most 26 * 26 entries). */
const names = new Map<string, string | null>();

/** The English name of a country code ("US" -> "United States"); null when ICU does not know it. */
export function countryName(code: string): string | null {
  let name = names.get(code);
  if (name === undefined) {
    try {
      name = regionNames.of(code) ?? null;
    } catch {
      name = null;
    }
    names.set(code, name);
  }
  return name;
}

function text(value: unknown): string | null {
  if (typeof value !== "string") return null;
  const t = value.trim();
  return t === "" ? null : t.slice(0, MAX_NAME_LENGTH);
}

function coordinate(value: unknown, limit: number): string | null {
  return typeof value === "number" && Number.isFinite(value) && Math.abs(value) <= limit ? String(value) : null;
}

function fromCity(r: CityRecord): GeoFields {
  const code = countryCode(r.country?.iso_code);
  const subdivisions = Array.isArray(r.subdivisions) ? r.subdivisions : [];
  const latitude = coordinate(r.location?.latitude, 90);
  const longitude = coordinate(r.location?.longitude, 180);
  return {
    country: code ? { code, name: countryName(code) } : null,
    city: text(r.city?.names?.en),
    county: text(subdivisions[subdivisions.length - 1]?.names?.en),
    postal: text(r.postal?.code),
    latitude,
    longitude,
    location: latitude !== null && longitude !== null ? `${latitude},${longitude}` : null,
  };
}

async function openReader(path: string, label: string): Promise<Reader<Response>> {
  let reader: Reader<Response>;
  try {
    reader = await maxmind.open(path, { cache: { max: GEO_RECORD_CACHE_SIZE } });
  } catch (err) {
    const message = typeof (err as Error | undefined)?.message === "string" ? (err as Error).message : String(err);
    // A file system error says what it is (ENOENT: no such file...); the reader's own errors are
    // about the bytes, so the message says what was expected.
    const reason = (err as NodeJS.ErrnoException).code !== undefined ? message : `${message}: not a MaxMind DB (.mmdb) file`;
    throw new GeoDatabaseError(`${label} cannot be used: ${reason}`, { cause: err });
  }
  if (reader.metadata.ipVersion !== 4 && reader.metadata.ipVersion !== 6) {
    throw new GeoDatabaseError(`${label} cannot be used: not a MaxMind DB (.mmdb) file (ip_version ${reader.metadata.ipVersion})`);
  }
  return reader;
}

/** Looks up `ip` in `reader`; null when it holds no record (or cannot hold this address family). */
function get<T>(reader: Reader<Response>, ip: IpAddress): T | null {
  if (ip.version === 6 && reader.metadata.ipVersion === 4) return null;
  try {
    // The records are the database's, whatever it claims to be: read as loosely typed data.
    return reader.get(formatIp(ip)) as unknown as T | null;
  } catch {
    return null; // a corrupt record: this address is unknown, the next may not be
  }
}

export interface MmdbGeoLocatorOptions {
  /** GEOIP_CITY_DB: a city database in the MaxMind DB format; undefined: country only. */
  cityDatabase?: string;
  /** The country database; default: the bundled one. */
  countryDatabase?: string;
}

export class MmdbGeoLocator implements GeoLocator {
  private constructor(
    private readonly country: Reader<Response>,
    private readonly city: Reader<Response> | undefined,
    /** Metadata of the databases, for the start-up log line. */
    readonly description: Record<string, string>,
  ) {}

  /** Reads the databases; throws GeoDatabaseError naming a file that cannot be used. */
  static async open(options: MmdbGeoLocatorOptions = {}): Promise<MmdbGeoLocator> {
    const countryPath = options.countryDatabase ?? bundledCountryDatabase();
    const country = await openReader(countryPath, `the country database ${countryPath}`);
    const city =
      options.cityDatabase === undefined ? undefined : await openReader(options.cityDatabase, `GEOIP_CITY_DB=${options.cityDatabase}`);
    const built = (r: Reader<Response>) => `${r.metadata.databaseType} built ${r.metadata.buildEpoch.toISOString().slice(0, 10)}`;
    return new MmdbGeoLocator(country, city, {
      country_db: built(country),
      ...(city ? { city_db: built(city) } : {}),
    });
  }

  lookup(ip: IpAddress): GeoFields | undefined {
    if (this.city) {
      const record = get<CityRecord>(this.city, ip);
      if (record) {
        const found = fromCity(record);
        if (found.country === null) found.country = this.countryOf(ip);
        if (found.country !== null || found.city !== null || found.location !== null) return found;
      }
    }
    const country = this.countryOf(ip);
    return country ? { country, city: null, county: null, postal: null, latitude: null, longitude: null, location: null } : undefined;
  }

  private countryOf(ip: IpAddress): GeoFields["country"] {
    const code = countryCode(get<CountryRecord>(this.country, ip)?.country_code);
    return code ? { code, name: countryName(code) } : null;
  }
}
