// The GeoLocator over real MaxMind DB files: the bundled country database (IPv4 and IPv6), and a
// small city database written by MaxMind's Go writer (test/support/mmdb.ts).

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseIp } from "../../src/domain/ip";
import { bundledCountryDatabase, countryName, GeoDatabaseError, MmdbGeoLocator } from "../../src/geo/mmdb";
import { TEST_CITIES, writeCityDatabase } from "../support/mmdb";

const lookup = (g: MmdbGeoLocator, text: string) => g.lookup(parseIp(text)!);

let dir: string;
let cityDb: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "geo-unit-"));
  cityDb = join(dir, "city.mmdb");
  await writeCityDatabase(cityDb, TEST_CITIES);
}, 600_000); // the first run builds the Go writer

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the bundled country database", () => {
  let geo: MmdbGeoLocator;
  beforeAll(async () => {
    geo = await MmdbGeoLocator.open();
  });

  // Addresses of long-lived public resolvers and registries, whose country is stable.
  it.each([
    ["8.8.8.8", "US", "United States"], // Google Public DNS
    ["9.9.9.9", "US", "United States"], // Quad9
    ["193.0.14.129", "NL", "Netherlands"], // k.root-servers.net (RIPE NCC)
    ["2001:4860:4860::8888", "US", "United States"], // Google Public DNS
    ["2001:7fd::1", "NL", "Netherlands"], // k.root-servers.net
    ["::ffff:8.8.8.8", "US", "United States"], // IPv4-mapped: looked up as IPv4
  ])("places %s in %s", (ip, code, name) => {
    expect(lookup(geo, ip)).toEqual({
      country: { code, name },
      city: null,
      county: null,
      postal: null,
      latitude: null,
      longitude: null,
      location: null,
    });
  });

  it.each(["10.1.2.3", "127.0.0.1", "::1"])("knows nothing of the private or local address %s", (ip) => {
    // (It does hold stray records for some private ranges: the domain never asks it about them, isLocalIp.)
    expect(lookup(geo, ip)).toBeUndefined();
  });

  it("holds IPv4 and IPv6 and is the package's file", () => {
    expect(bundledCountryDatabase()).toMatch(/geo-whois-asn-country-mmdb[/\\]geo-whois-asn-country\.mmdb$/);
    expect(geo.description.country_db).toMatch(/^country ipvAll built \d{4}-\d{2}-\d{2}$/);
  });
});

describe("a city database (GEOIP_CITY_DB)", () => {
  let geo: MmdbGeoLocator;
  beforeAll(async () => {
    geo = await MmdbGeoLocator.open({ cityDatabase: cityDb });
  });

  it("fills city, county (the most specific subdivision), postal, latitude, longitude and location", () => {
    const expected = {
      country: { code: "DE", name: "Germany" },
      city: "Testburg",
      county: "Kreis Test",
      postal: "10115",
      latitude: "52.52",
      longitude: "13.405",
      location: "52.52,13.405",
    };
    expect(lookup(geo, "192.0.2.77")).toEqual(expected);
    expect(lookup(geo, "::ffff:192.0.2.200")).toEqual(expected);
  });

  it("reads IPv6 networks", () => {
    expect(lookup(geo, "2001:db8:1:ffff::42")).toEqual({
      country: { code: "FR", name: "France" },
      city: "Sixville",
      county: "Ile-de-Test",
      postal: "75001",
      latitude: "-12.5",
      longitude: "-45.25",
      location: "-12.5,-45.25",
    });
  });

  it("takes the country from the bundled database when its record has none, or when it has no record", () => {
    expect(lookup(geo, "8.8.8.8")).toMatchObject({ country: { code: "US", name: "United States" }, city: "Resolver City" });
    expect(lookup(geo, "9.9.9.9")).toMatchObject({ country: { code: "US" }, city: null, location: null });
    expect(lookup(geo, "10.0.0.1")).toBeUndefined();
  });

  it("describes itself for the start-up line", () => {
    expect(geo.description.city_db).toMatch(/^Test-City built \d{4}-\d{2}-\d{2}$/);
  });
});

describe("a city database that cannot be used stops the service, naming the file", () => {
  it.each([
    ["missing", (d: string) => join(d, "nope.mmdb"), /GEOIP_CITY_DB=.*nope\.mmdb cannot be used: ENOENT/],
    ["a directory", (d: string) => d, /GEOIP_CITY_DB=.* cannot be used: EISDIR/],
    [
      "not an MMDB file",
      (d: string) => {
        writeFileSync(join(d, "text.mmdb"), "not a database\n".repeat(100));
        return join(d, "text.mmdb");
      },
      /GEOIP_CITY_DB=.*text\.mmdb cannot be used: .*not a MaxMind DB \(\.mmdb\) file/,
    ],
  ])("%s", async (_what, path, message) => {
    const p = path(dir);
    await expect(MmdbGeoLocator.open({ cityDatabase: p })).rejects.toThrow(GeoDatabaseError);
    await expect(MmdbGeoLocator.open({ cityDatabase: p })).rejects.toThrow(message);
  });
});

describe("countryName", () => {
  it("is the English name of the code, null for a code ICU does not know", () => {
    expect(countryName("GB")).toBe("United Kingdom");
    expect(countryName("XK")).toBe("Kosovo");
    expect(countryName("QQ")).toBeNull();
  });
});
