// Geo from IP and IP anonymization end to end, on the built service (its whole log output is
// captured) and on both stores: device.geo from the bundled country database and from a city
// database written by MaxMind's Go writer (GEOIP_CITY_DB), explicit values winning, anonymized
// addresses stored, and the full addresses found in no stored byte or document and no log line.

import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { MongoClient } from "mongodb";
import { connectClient, grpcClient, type SessionClient } from "../support/clients";
import { expectCallError } from "../support/expect";
import { uniqueDatabaseName } from "../support/mongo";
import { TEST_CITIES, writeCityDatabase } from "../support/mmdb";
import { MAIN, startProcess, type ServiceProcess } from "../support/process";

type StoreKind = "sqlite" | "mongodb";
const STORES: StoreKind[] = (process.env.E2E_STORES ?? "sqlite,mongodb").split(",") as StoreKind[];
const rid = () => Math.random().toString(36).slice(2, 10);

const SAFARI =
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";

/** Every full address this file sends: none may be stored or logged under truncate. */
const FULL = {
  cityV4: "192.0.2.77",
  cityV6: "2001:db8:1:ffff::42",
  google: "8.8.8.8",
  googleV6: "2001:4860:4860::8888",
  mapped: "192.0.2.99", // sent as ::ffff:192.0.2.99
  fallback: "192.0.2.123", // sent as session.device.ip
  touch: "9.9.9.9", // in the bundled country database only
  update: "2001:db8:1:abcd::7",
  invalid: "192.0.2.201", // sent with a port: refused
};

let dir: string;
let cityDb: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "geo-e2e-"));
  cityDb = join(dir, "city.mmdb");
  await writeCityDatabase(cityDb, TEST_CITIES);
}, 600_000); // the first run builds the Go writer
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The built service on `store`, with a data directory (sqlite) or database (mongodb) of its own. */
async function serve(store: StoreKind, env: Record<string, string>) {
  const dataDir = mkdtempSync(join(dir, "data-"));
  const database = uniqueDatabaseName("geo");
  const storeEnv: Record<string, string> =
    store === "sqlite" ? { DATA_DIR: dataDir } : { MONGODB_URI: process.env.MONGODB_URI!, MONGODB_DATABASE: database };
  const proc = await startProcess({ LOG_LEVEL: "debug", ...storeEnv, ...env });
  return { proc, dataDir, database };
}

/** Every stored byte of the embedded store (database, WAL), as text. */
function sqliteBytes(dataDir: string): string {
  return readdirSync(dataDir)
    .filter((f) => statSync(join(dataDir, f)).isFile())
    .map((f) => readFileSync(join(dataDir, f)).toString("latin1"))
    .join("\n");
}

/** Every document of every collection of the MongoDB store's database, as JSON. */
async function mongoDocuments(database: string): Promise<string> {
  const client = new MongoClient(process.env.MONGODB_URI!, { serverSelectionTimeoutMS: 10_000 });
  await client.connect();
  try {
    const db = client.db(database);
    const out: string[] = [];
    for (const c of await db.listCollections().toArray()) {
      for (const doc of await db.collection(c.name).find().toArray()) out.push(JSON.stringify(doc));
    }
    return out.join("\n");
  } finally {
    await client.db(database).dropDatabase();
    await client.close();
  }
}

describe.each(STORES)("geo from IP, IP_ANONYMIZATION=truncate, on %s", (store) => {
  let proc: ServiceProcess;
  let dataDir: string;
  let database: string;
  let grpc: SessionClient;
  let connect: SessionClient;
  let stored = "";
  beforeAll(async () => {
    ({ proc, dataDir, database } = await serve(store, { GEOIP_CITY_DB: cityDb, IP_ANONYMIZATION: "truncate" }));
    grpc = grpcClient(proc.grpcPort);
    connect = connectClient(proc.httpPort);
  });
  afterAll(async () => {
    grpc?.close();
    await proc?.stop();
  });

  it("logs the databases it opened and the mode at start", () => {
    const listening = proc.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === "listening");
    expect(listening).toMatchObject({
      country_db: expect.stringMatching(/^country ipvAll built /),
      city_db: expect.stringMatching(/^Test-City built /),
      ip_anonymization: "truncate",
    });
  });

  it("fills the city-level fields from GEOIP_CITY_DB and stores the address truncated (gRPC, IPv4)", async () => {
    const { session } = await grpc.createSession({ session: { profile: { id: `p-${rid()}` } }, userAgent: SAFARI, clientIp: FULL.cityV4 });
    expect(session!.device!.ip).toBe("192.0.2.0");
    expect(session!.device!.geo).toEqual({
      $typeName: "session.v1.Geo",
      country: { $typeName: "session.v1.Country", code: "DE", name: "Germany" },
      city: "Testburg",
      county: "Kreis Test",
      postal: "10115",
      latitude: "52.52",
      longitude: "13.405",
      location: "52.52,13.405",
    });
    expect(session!.os!.name).toBe("iOS"); // the user agent is still parsed
    const { session: read } = await connect.getSession({ id: session!.id });
    expect(read!.device!.ip).toBe("192.0.2.0");
    expect(read!.device!.geo!.city).toBe("Testburg");
  });

  it("does the same over Connect for IPv6 (a /48 kept)", async () => {
    const { session } = await connect.createSession({ session: {}, clientIp: FULL.cityV6 });
    expect(session!.device!.ip).toBe("2001:db8:1::");
    expect(session!.device!.geo).toMatchObject({ country: { code: "FR", name: "France" }, city: "Sixville", location: "-12.5,-45.25" });
  });

  it.each([
    ["gRPC", FULL.google],
    ["Connect", FULL.googleV6],
  ])("fills the country from the bundled database (%s, %s)", async (protocol, ip) => {
    const client = protocol === "gRPC" ? grpc : connect;
    const { session } = await client.createSession({ session: {}, clientIp: ip });
    expect(session!.device!.geo!.country).toMatchObject({ code: "US", name: "United States" });
    expect(session!.device!.ip).toBe(ip.includes(":") ? "2001:4860:4860::" : "8.8.8.0");
  });

  it("reads an IPv4-mapped address as IPv4, and falls back to session.device.ip", async () => {
    const { session: mapped } = await grpc.createSession({ session: {}, clientIp: `::ffff:${FULL.mapped}` });
    expect(mapped!.device!.ip).toBe("192.0.2.0");
    expect(mapped!.device!.geo!.city).toBe("Testburg");
    const { session: fallback } = await connect.createSession({ session: { device: { ip: FULL.fallback } } });
    expect(fallback!.device!.ip).toBe("192.0.2.0");
    expect(fallback!.device!.geo!.country!.code).toBe("DE");
  });

  it("lets explicit geo values win, group by group", async () => {
    const { session } = await grpc.createSession({
      session: { device: { geo: { country: { code: "AT", name: "Austria" } } } },
      clientIp: FULL.cityV4,
    });
    expect(session!.device!.geo).toMatchObject({ country: { code: "AT", name: "Austria" }, city: "Testburg", postal: "10115" });
    const { session: own } = await connect.createSession({ session: { device: { geo: { city: "Vienna" } } }, clientIp: FULL.cityV4 });
    expect(own!.device!.geo).toMatchObject({ country: { code: "DE" }, city: "Vienna" });
    expect(own!.device!.geo!.postal).toBeUndefined();
    expect(own!.device!.geo!.location).toBeUndefined();
  });

  it("TouchSession replaces device.ip (truncated) and fills only the empty geo groups", async () => {
    const { session } = await grpc.createSession({ session: {}, clientIp: FULL.touch });
    expect(session!.device!.ip).toBe("9.9.9.0");
    expect(session!.device!.geo!.city).toBeUndefined();
    const { session: touched } = await connect.touchSession({ id: session!.id, clientIp: FULL.googleV6 });
    expect(touched!.device!.ip).toBe("2001:4860:4860::");
    expect(touched!.device!.geo!.country!.code).toBe("US");
    const { session: again } = await grpc.touchSession({ id: session!.id, clientIp: FULL.cityV4 });
    expect(again!.device!.ip).toBe("192.0.2.0");
    expect(again!.device!.geo).toMatchObject({ country: { code: "US" }, city: "Testburg", location: "52.52,13.405" });
  });

  it("UpdateSession stores a masked device.ip truncated", async () => {
    const { session } = await grpc.createSession({ session: {} });
    const { session: updated } = await connect.updateSession({
      session: { id: session!.id, device: { ip: FULL.update } },
      updateMask: { paths: ["device.ip"] },
    });
    expect(updated!.device!.ip).toBe("2001:db8:1::");
  });

  it.each(["gRPC", "Connect"])("refuses a client_ip that is not an address, naming the field, not the value (%s)", async (protocol) => {
    const client = protocol === "gRPC" ? grpc : connect;
    const e = await expectCallError(
      client.createSession({ session: {}, clientIp: `${FULL.invalid}:443` }),
      Code.InvalidArgument,
      "client_ip",
    );
    expect(e.message).not.toContain(FULL.invalid);
    const { session } = await client.createSession({ session: {} });
    await expectCallError(client.touchSession({ id: session!.id, clientIp: "not-an-ip" }), Code.InvalidArgument, "client_ip");
    await expectCallError(client.createSession({ session: { device: { ip: "not-an-ip" } } }), Code.InvalidArgument, "session.device.ip");
  });

  it("audits the caller's address truncated too", () => {
    const audits = proc.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === "audit");
    expect(audits.length).toBeGreaterThan(10);
    for (const a of audits) expect(a.client).toBe("127.0.0.0");
  });

  it("stored none of the full addresses, in any document or byte, and logged none", async () => {
    await proc.stop();
    stored = store === "sqlite" ? sqliteBytes(dataDir) : await mongoDocuments(database);
    // The check reads what it should: the truncated addresses are there.
    expect(stored).toContain("192.0.2.0");
    expect(stored).toContain("2001:db8:1::");
    const log = proc.lines.join("\n");
    expect(log).toContain('"msg":"audit"');
    for (const ip of Object.values(FULL)) {
      expect({ ip, inStore: stored.includes(ip) }).toEqual({ ip, inStore: false });
      expect({ ip, inLog: log.includes(ip) }).toEqual({ ip, inLog: false });
    }
  });
});

describe("IP_ANONYMIZATION off (default) and drop, without a city database", () => {
  it.each([
    ["off", "192.0.2.77"],
    ["drop", undefined],
  ])("%s stores %j, and the country is looked up either way", async (mode, expected) => {
    const { proc } = await serve("sqlite", mode === "off" ? {} : { IP_ANONYMIZATION: mode });
    const client = grpcClient(proc.grpcPort);
    try {
      const { session } = await client.createSession({ session: {}, clientIp: "::FFFF:192.0.2.77" });
      expect(session!.device!.ip).toBe(expected);
      expect(session!.device!.geo!.city).toBeUndefined(); // no city database
      const { session: us } = await client.createSession({ session: {}, clientIp: FULL.google });
      expect(us!.device!.geo!.country).toMatchObject({ code: "US", name: "United States" });
      expect(us!.device!.ip).toBe(mode === "off" ? FULL.google : undefined);
    } finally {
      client.close();
      await proc.stop();
    }
  });
});

describe("a GEOIP_CITY_DB that cannot be used", () => {
  it.each([
    ["missing", () => join(dir, "missing.mmdb")],
    ["not a database", () => join(__dirname, "geo.test.ts")],
  ])("stops the service at start with a message naming it (%s)", (_what, path) => {
    const file = path();
    const result = spawnSync(process.execPath, [MAIN], {
      env: { PATH: process.env.PATH ?? "", DATA_DIR: mkdtempSync(join(dir, "data-")), GRPC_PORT: "0", HTTP_PORT: "0", GEOIP_CITY_DB: file },
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(`configuration error: GEOIP_CITY_DB=${file} cannot be used`);
  });
});
