// The docs name files of the tree (README.md and docs/*.md): each named path must exist, so a
// move or a rename that forgets the docs fails here instead of misleading a reader.
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(__dirname, "../..");
const docs = [
  "README.md",
  ...fs
    .readdirSync(path.join(root, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`),
];
// A path starts at a top-level folder of the repository and ends in a file name with an
// extension or in "/" (a folder).
const PATH = /(?<![\w./-])((?:src|test|bench|scripts|proto|docs|web|examples|\.ci)\/[\w./-]*(?:\.[a-z]{1,5}|\/))(?![\w/-])/g;

function namedPaths(file: string): string[] {
  const text = fs.readFileSync(path.join(root, file), "utf8");
  return [...new Set([...text.matchAll(PATH)].map((m) => m[1].replace(/[.]$/, "")))];
}

describe("paths named in the docs exist", () => {
  it.each(docs)("%s", (file) => {
    const missing = namedPaths(file).filter((p) => !p.includes("*") && !fs.existsSync(path.join(root, p)));
    expect(missing).toEqual([]);
  });
});
