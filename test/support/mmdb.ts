// Small MaxMind DB files for the geo tests, written by MaxMind's own Go writer library
// (github.com/maxmind/mmdbwriter, through test/support/mmdb-writer/). The writer is built once
// into the tools cache of scripts/tools.sh (~/.cache/session-service/bin) and rebuilt only when
// its sources change (a stamp holds their SHA-256).

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, run } from "./tools";

const SOURCE_DIR = join(ROOT, "test", "support", "mmdb-writer");
const SOURCES = ["go.mod", "go.sum", "main.go"];

/** The path of the built writer, building it when missing or out of date. */
export function mmdbWriter(): string {
  const dir = execFileSync("bash", [join(ROOT, "scripts", "tools.sh"), "--print-dir"], { encoding: "utf8" }).trim();
  const binary = join(dir, "mmdb-writer");
  const stampFile = join(dir, ".mmdb-writer.version");
  const hash = createHash("sha256");
  for (const f of SOURCES) hash.update(readFileSync(join(SOURCE_DIR, f)));
  const stamp = hash.digest("hex");
  if (existsSync(binary) && existsSync(stampFile) && readFileSync(stampFile, "utf8") === stamp) return binary;
  // Built beside and renamed into place: test files in parallel workers may build it at once.
  const building = `${binary}.${process.pid}.tmp`;
  execFileSync("go", ["build", "-buildvcs=false", "-o", building, "."], {
    cwd: SOURCE_DIR,
    stdio: ["ignore", "ignore", "inherit"],
    timeout: 600_000,
  });
  renameSync(building, binary);
  writeFileSync(stampFile, stamp);
  return binary;
}

/** A record in the GeoIP2 City layout (only what the service reads). */
export interface CityRecord {
  country?: { iso_code: string };
  city?: { names: { en: string } };
  subdivisions?: { names: { en: string } }[];
  postal?: { code: string };
  location?: { latitude: number; longitude: number };
}

/** Writes a database of `networks` (CIDR -> record) to `path`. */
export async function writeCityDatabase(path: string, networks: Record<string, CityRecord>, databaseType = "Test-City"): Promise<void> {
  const input = JSON.stringify({
    database_type: databaseType,
    networks: Object.entries(networks).map(([network, record]) => ({ network, record })),
  });
  const r = await run(mmdbWriter(), [path], { input, timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`mmdb-writer failed (exit ${r.code}): ${r.stderr}`);
}

/** The test city database: documentation ranges with made-up places. */
export const TEST_CITIES: Record<string, CityRecord> = {
  "192.0.2.0/24": {
    country: { iso_code: "DE" },
    city: { names: { en: "Testburg" } },
    subdivisions: [{ names: { en: "Testland" } }, { names: { en: "Kreis Test" } }],
    postal: { code: "10115" },
    location: { latitude: 52.52, longitude: 13.405 },
  },
  "2001:db8:1::/48": {
    country: { iso_code: "FR" },
    city: { names: { en: "Sixville" } },
    subdivisions: [{ names: { en: "Ile-de-Test" } }],
    postal: { code: "75001" },
    location: { latitude: -12.5, longitude: -45.25 },
  },
  // A record without a country: the bundled country database supplies it (8.8.8.0/24 is US).
  "8.8.8.0/24": { city: { names: { en: "Resolver City" } }, location: { latitude: 37.75, longitude: -97.82 } },
};
