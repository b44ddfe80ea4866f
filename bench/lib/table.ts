// Output: aligned Markdown tables, ratios, sizes and JSON result files.

import * as fs from "node:fs";

/** A Markdown table: the first column left-aligned, the others right-aligned. */
export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(" | ")} |`;
  return [line(head), `|${w.map((n, i) => (i === 0 ? "-".repeat(n + 2) : "-".repeat(n + 1) + ":")).join("|")}|`, ...rows.map(line)].join(
    "\n",
  );
}

/** `a / b` as "0.52x". */
export const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}x`;

export const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

/** Milliseconds with 2 decimals below 10, 1 above; "n/a" for NaN. */
export const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(x < 10 ? 2 : 1) : "n/a");

/** Writes `--json FILE` results. */
export function writeJson(file: string, value: unknown): void {
  fs.writeFileSync(file, JSON.stringify(value, null, 2) + "\n");
}
