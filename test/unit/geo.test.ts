import { InvalidArgumentError } from "../../src/domain/errors";
import {
  applyVisitorIpOnCreate,
  checkDeviceIp,
  fillGeo,
  storedDeviceIp,
  visitorIpOnTouch,
  type GeoFields,
  type GeoLocator,
} from "../../src/domain/geo";
import { formatIp, type IpAddress } from "../../src/domain/ip";
import { emptySessionDoc, type DeviceDoc, type GeoDoc } from "../../src/domain/session";

const BERLIN: GeoFields = {
  country: { code: "DE", name: "Germany" },
  city: "Berlin",
  county: "Berlin",
  postal: "10115",
  latitude: "52.52",
  longitude: "13.405",
  location: "52.52,13.405",
};
const COUNTRY_ONLY: GeoFields = {
  ...BERLIN,
  country: { code: "US", name: "United States" },
  city: null,
  county: null,
  postal: null,
  latitude: null,
  longitude: null,
  location: null,
};

/** A locator over a fixed table, recording the (full) addresses it was asked about. */
class TableLocator implements GeoLocator {
  readonly asked: string[] = [];
  constructor(private readonly table: Record<string, GeoFields>) {}
  lookup(ip: IpAddress): GeoFields | undefined {
    const text = formatIp(ip);
    this.asked.push(text);
    return this.table[text];
  }
}

const device = (patch: Partial<DeviceDoc> = {}, geo: Partial<GeoDoc> = {}): DeviceDoc => {
  const d = emptySessionDoc("s", new Date(0)).device;
  return { ...d, ...patch, geo: { ...d.geo, ...geo } };
};

describe("fillGeo: explicit values win, a place is never mixed with another", () => {
  it("fills an empty geo entirely", () => {
    const geo = device().geo;
    fillGeo(geo, BERLIN);
    expect(geo).toEqual({ ...BERLIN, country: { code: "DE", name: "Germany" } });
  });

  it("keeps a country the client set (code or name alone) and fills the city-level fields", () => {
    for (const country of [
      { code: "FR", name: null },
      { code: null, name: "France" },
    ]) {
      const geo = device({}, { country }).geo;
      fillGeo(geo, BERLIN);
      expect(geo.country).toEqual(country);
      expect(geo.city).toBe("Berlin");
    }
  });

  it("keeps every city-level field when the client set any of them", () => {
    const geo = device({}, { postal: "75001" }).geo;
    fillGeo(geo, BERLIN);
    expect(geo).toMatchObject({ postal: "75001", city: null, latitude: null, location: null });
    expect(geo.country).toEqual({ code: "DE", name: "Germany" });
  });

  it("leaves the city-level fields alone when the lookup knows only the country", () => {
    const geo = device().geo;
    fillGeo(geo, COUNTRY_ONLY);
    expect(geo).toMatchObject({ country: { code: "US", name: "United States" }, city: null, location: null });
  });
});

describe("applyVisitorIpOnCreate", () => {
  const locator = new TableLocator({ "192.0.2.77": BERLIN, "2001:db8:1:2::3": COUNTRY_ONLY, "203.0.113.9": COUNTRY_ONLY });

  it("looks up client_ip in full and stores it anonymized", () => {
    const d = device();
    applyVisitorIpOnCreate(d, "::ffff:192.0.2.77", { anonymization: "truncate", locator });
    expect(locator.asked.at(-1)).toBe("192.0.2.77");
    expect(d.ip).toBe("192.0.2.0");
    expect(d.geo.city).toBe("Berlin");
  });

  it("falls back to session.device.ip", () => {
    const d = device({ ip: "2001:db8:1:2::3" });
    applyVisitorIpOnCreate(d, "", { anonymization: "truncate", locator });
    expect(d.ip).toBe("2001:db8:1::");
    expect(d.geo.country).toEqual({ code: "US", name: "United States" });
  });

  it("looks up client_ip but stores the device.ip the client sent (anonymized), as explicit values win", () => {
    const d = device({ ip: "203.0.113.9" });
    applyVisitorIpOnCreate(d, "192.0.2.77", { anonymization: "off", locator });
    expect(locator.asked.at(-1)).toBe("192.0.2.77");
    expect(d.ip).toBe("203.0.113.9");
    expect(d.geo.city).toBe("Berlin");
  });

  it.each([
    ["off", "192.0.2.77"],
    ["truncate", "192.0.2.0"],
    ["drop", null],
  ] as const)("under %s stores %j", (anonymization, stored) => {
    const d = device();
    applyVisitorIpOnCreate(d, "192.0.2.77", { anonymization, locator });
    expect(d.ip).toBe(stored);
    expect(d.geo.country.code).toBe("DE"); // looked up whatever is stored
  });

  it("without a locator only anonymizes; without an address changes nothing", () => {
    const d = device();
    applyVisitorIpOnCreate(d, "192.0.2.77", { anonymization: "truncate" });
    expect(d).toEqual(device({ ip: "192.0.2.0" }));
    const e = device();
    applyVisitorIpOnCreate(e, "", { anonymization: "truncate", locator });
    expect(e).toEqual(device());
  });

  it("keeps an unparsable device.ip as sent under off (as before), drops it under drop", () => {
    const d = device({ ip: "unknown" });
    applyVisitorIpOnCreate(d, "", { anonymization: "off", locator });
    expect(d.ip).toBe("unknown");
    const e = device({ ip: "unknown" });
    applyVisitorIpOnCreate(e, "", { anonymization: "drop", locator });
    expect(e.ip).toBeNull();
  });
});

describe("addresses of no place", () => {
  it("are not looked up (geo databases hold stray records for some), but are stored like any other", () => {
    const locator = new TableLocator({ "192.168.0.1": BERLIN, "fd00::1": BERLIN });
    const d = device();
    applyVisitorIpOnCreate(d, "192.168.0.1", { anonymization: "truncate", locator });
    expect(d).toEqual(device({ ip: "192.168.0.0" }));
    expect(visitorIpOnTouch(device(), "fd00::1", { anonymization: "off", locator })).toEqual({ ip: "fd00::1", geo: device().geo });
    expect(locator.asked).toEqual([]);
  });
});

describe("checkDeviceIp and storedDeviceIp", () => {
  it("refuses an unparsable device.ip under truncate only, naming the field", () => {
    expect(checkDeviceIp("session.device.ip", "unknown", "truncate")).toEqual([
      { field: "session.device.ip", description: expect.stringContaining("IPv4 or IPv6") },
    ]);
    expect(checkDeviceIp("session.device.ip", "unknown", "off")).toEqual([]);
    expect(checkDeviceIp("session.device.ip", "unknown", "drop")).toEqual([]);
    expect(checkDeviceIp("session.device.ip", null, "truncate")).toEqual([]);
    expect(() => storedDeviceIp("session.device.ip", "unknown", "truncate")).toThrow(InvalidArgumentError);
  });

  it("stores the anonymized form", () => {
    expect(storedDeviceIp("f", "192.0.2.77", "truncate")).toBe("192.0.2.0");
    expect(storedDeviceIp("f", "2001:DB8::1", "off")).toBe("2001:db8::1");
    expect(storedDeviceIp("f", "192.0.2.77", "drop")).toBeNull();
    expect(storedDeviceIp("f", null, "off")).toBeNull();
  });
});

describe("visitorIpOnTouch", () => {
  const locator = new TableLocator({ "192.0.2.77": BERLIN });

  it("replaces device.ip and fills only the empty geo groups, changing nothing in place", () => {
    const stored = device({ ip: "198.51.100.0" }, { country: { code: "US", name: "United States" } });
    const before = structuredClone(stored);
    const { ip, geo } = visitorIpOnTouch(stored, "192.0.2.77", { anonymization: "truncate", locator });
    expect(ip).toBe("192.0.2.0");
    expect(geo.country).toEqual({ code: "US", name: "United States" });
    expect(geo.city).toBe("Berlin");
    expect(stored).toEqual(before);
  });
});
