// The contract's tooling checks: buf lint passes and gen/ is exactly what `npm run generate`
// (buf generate + scripts/descriptors.sh) makes from proto/, so a proto change without
// regeneration fails the suite.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = join(__dirname, "..");
const buf = join(root, "node_modules", ".bin", "buf");

function listFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? listFiles(p) : [p];
  });
}

describe("protobuf contract", () => {
  it("passes buf lint", () => {
    expect(() => execFileSync(buf, ["lint"], { cwd: root, stdio: "pipe" })).not.toThrow();
  });

  it("has gen/ equal to what buf generate makes from proto/", () => {
    const out = mkdtempSync(join(tmpdir(), "gen-check-"));
    try {
      execFileSync(buf, ["generate", "-o", out], { cwd: root, stdio: "pipe" });
      execFileSync("bash", [join(root, "scripts", "descriptors.sh"), join(out, "gen", "descriptors.binpb")], { cwd: root, stdio: "pipe" });
      const fresh = listFiles(join(out, "gen"))
        .map((p) => relative(join(out, "gen"), p))
        .sort();
      const committed = listFiles(join(root, "gen"))
        .map((p) => relative(join(root, "gen"), p))
        .sort();
      expect(committed).toEqual(fresh);
      for (const file of fresh) {
        const same = readFileSync(join(root, "gen", file)).equals(readFileSync(join(out, "gen", file)));
        expect({ file, same }).toEqual({ file, same: true });
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
