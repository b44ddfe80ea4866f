// The layout README.md's "Layout" section describes, checked: dependencies point one way
// (rpc and store depend on the domain, never the reverse), unit tests are named after the file
// they test, and no source file outgrows a reading.
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(__dirname, "../..");
const MAX_SOURCE_LINES = 450;

function files(dir: string, ext: string): string[] {
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) return files(rel, ext);
    return e.name.endsWith(ext) ? [rel] : [];
  });
}

/** The src/ files a file imports (relative imports only), as paths from the root. */
function imports(file: string): { target: string; typeOnly: boolean }[] {
  const text = fs.readFileSync(path.join(root, file), "utf8");
  return [...text.matchAll(/^import (type )?[^;]*?from "(\.[^"]+)";/gms)].map((m) => ({
    target: path.relative(root, path.resolve(path.dirname(path.join(root, file)), m[2])),
    typeOnly: m[1] !== undefined,
  }));
}

const sources = files("src", ".ts");

describe("layout", () => {
  it("reads the imports it checks (a parser that finds none would pass every rule)", () => {
    expect(imports("src/domain/watch/feed.ts").map((i) => i.target)).toEqual(
      expect.arrayContaining(["src/domain/store", "src/domain/errors", "src/log"]),
    );
    expect(imports("src/domain/watch/feed.ts").find((i) => i.target === "src/log")?.typeOnly).toBe(true);
    expect(imports("src/server.ts").filter((i) => i.target.startsWith("src/store/")).length).toBeGreaterThan(0);
  });

  it("the domain imports only the domain (and the Logger type)", () => {
    const outside = sources
      .filter((f) => f.startsWith("src/domain/"))
      .flatMap((f) => imports(f).map((i) => ({ f, ...i })))
      .filter((i) => !i.target.startsWith("src/domain/") && !(i.typeOnly && i.target === "src/log"))
      .map((i) => `${i.f} -> ${i.target}`);
    expect(outside).toEqual([]);
  });

  it("the store adapters import no RPC, security, metrics or server code", () => {
    const bad = sources
      .filter((f) => f.startsWith("src/store/"))
      .flatMap((f) => imports(f).map((i) => `${f} -> ${i.target}`))
      .filter((s) => /-> src\/(rpc|security|metrics|server)/.test(s));
    expect(bad).toEqual([]);
  });

  it("the geo adapter (src/geo) imports only the domain", () => {
    const geo = sources.filter((f) => f.startsWith("src/geo/"));
    expect(geo.length).toBeGreaterThan(0);
    const bad = geo.flatMap((f) => imports(f).map((i) => `${f} -> ${i.target}`)).filter((s) => !s.includes("-> src/domain/"));
    expect(bad).toEqual([]);
  });

  it("the RPC edge reaches the store only through the domain's port", () => {
    const bad = sources
      .filter((f) => f.startsWith("src/rpc/"))
      .flatMap((f) => imports(f).map((i) => `${f} -> ${i.target}`))
      .filter((s) => s.includes("-> src/store/"));
    expect(bad).toEqual([]);
  });

  it("each unit test is named after the source file it tests", () => {
    const unnamed = files("test/unit", ".test.ts").filter((t) => {
      const name = t.replace(/^test\/unit\//, "").replace(/\.test\.ts$/, ".ts");
      return !sources.some((s) => s === `src/${name}` || s.endsWith(`/${name}`));
    });
    expect(unnamed).toEqual([]);
  });

  it(`no source file is over ${MAX_SOURCE_LINES} lines`, () => {
    const long = sources
      .map((f) => ({ f, lines: fs.readFileSync(path.join(root, f), "utf8").split("\n").length }))
      .filter((x) => x.lines > MAX_SOURCE_LINES)
      .map((x) => `${x.f}: ${x.lines}`);
    expect(long).toEqual([]);
  });
});
