import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ts from "typescript";
import { durationSeconds, insertTimeFields, systemClock } from "../../src/domain/time";

describe("insertTimeFields", () => {
  it("gives the epoch timestamp and weekday of the documented example (a Thursday is 4)", () => {
    const insert = new Date("2024-05-30T07:44:23Z");
    const fields = insertTimeFields(insert);
    expect(fields.timestamp).toBe(1717055063);
    expect(fields.weekday).toBe(4);
    expect(fields.insert).toBe(insert);
  });

  it("keeps the millisecond fraction in the timestamp", () => {
    expect(insertTimeFields(new Date("2024-05-30T07:44:23.243Z")).timestamp).toBeCloseTo(1717055063.243, 6);
  });

  it("numbers the days 0 = Sunday ... 6 = Saturday", () => {
    expect(insertTimeFields(new Date("2024-06-02T12:00:00Z")).weekday).toBe(0); // Sunday
    expect(insertTimeFields(new Date("2024-06-03T12:00:00Z")).weekday).toBe(1); // Monday
    expect(insertTimeFields(new Date("2024-06-01T12:00:00Z")).weekday).toBe(6); // Saturday
  });

  it("takes the weekday in UTC, not in the offset the date was written with", () => {
    // Saturday evening in UTC-5 is already Sunday in UTC.
    expect(insertTimeFields(new Date("2024-06-01T23:30:00-05:00")).weekday).toBe(0);
    // Sunday early morning in UTC+14 is still Saturday in UTC.
    expect(insertTimeFields(new Date("2024-06-02T02:00:00+14:00")).weekday).toBe(6);
  });

  it("takes the weekday in UTC whatever the process time zone is", () => {
    // The test process usually runs in UTC, where local and UTC days agree; run the real
    // time.ts (transpiled, unchanged) in processes whose local zone differs from UTC.
    const dir = mkdtempSync(join(tmpdir(), "time-test-"));
    try {
      const source = readFileSync(join(__dirname, "../../src/domain/time.ts"), "utf8");
      const js = ts.transpileModule(source, {
        compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 },
      }).outputText;
      const file = join(dir, "time.js");
      writeFileSync(file, js);
      const script =
        `const t = require(${JSON.stringify(file)});` +
        `const local = new Date(process.argv[1]).getDay();` +
        `process.stdout.write(JSON.stringify({ local, weekday: t.insertTimeFields(new Date(process.argv[1])).weekday }));`;
      const run = (tz: string, iso: string): { local: number; weekday: number } => {
        const r = spawnSync(process.execPath, ["-e", script, iso], { env: { ...process.env, TZ: tz }, encoding: "utf8" });
        expect(r.stderr).toBe("");
        return JSON.parse(r.stdout) as { local: number; weekday: number };
      };
      const chicago = run("America/Chicago", "2024-06-02T03:00:00Z"); // Saturday 22:00 in Chicago
      expect(chicago.local).toBe(6); // the zone really is in effect
      expect(chicago.weekday).toBe(0);
      const kiritimati = run("Pacific/Kiritimati", "2024-06-01T12:00:00Z"); // Sunday 02:00 at UTC+14
      expect(kiritimati.local).toBe(0);
      expect(kiritimati.weekday).toBe(6);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("durationSeconds", () => {
  const insert = new Date("2024-05-30T07:44:23.500Z");
  const after = (ms: number) => new Date(insert.getTime() + ms);

  it("is 0 at the insert instant", () => {
    expect(durationSeconds(insert, insert)).toBe(0);
  });

  it("counts whole seconds, rounding down", () => {
    expect(durationSeconds(insert, after(999))).toBe(0);
    expect(durationSeconds(insert, after(1000))).toBe(1);
    expect(durationSeconds(insert, after(1999))).toBe(1);
    expect(durationSeconds(insert, after(59_999))).toBe(59);
    expect(durationSeconds(insert, after(3_600_000))).toBe(3600);
    expect(durationSeconds(insert, after(2 * 86_400_000 + 1))).toBe(172_800);
  });

  it("gives whole numbers also across second boundaries of the wall clock", () => {
    // insert at .500, update at the next wall-clock second's .100: 0.6 s elapsed.
    expect(durationSeconds(insert, new Date("2024-05-30T07:44:24.100Z"))).toBe(0);
    expect(Number.isInteger(durationSeconds(insert, after(12_345)))).toBe(true);
  });

  it("is never negative when the clock stepped back", () => {
    expect(durationSeconds(insert, after(-1))).toBe(0);
    expect(durationSeconds(insert, after(-5000))).toBe(0);
  });
});

describe("systemClock", () => {
  it("returns the current time", () => {
    const before = Date.now();
    const now = systemClock.now().getTime();
    expect(now).toBeGreaterThanOrEqual(before);
    expect(now).toBeLessThanOrEqual(Date.now());
  });
});
