// The randomized WatchSessions history checker (issue 10, "An adversarial suite"): two real
// service processes on one store, driven and checked by test/python/history_check.py, an
// independent client in another language (Python, grpcio, the examples' generated code) that
// checks the recorded history against docs/watch.md rather than against this implementation.
// The script's docstring says what it writes, how watchers disconnect, resume and re-snapshot,
// and what it checks. Replica B polls the change log slowly (WATCH_POLL_INTERVAL=500ms) so that the
// cross-replica windows (a change committed on A that B has not read yet) are wide.
// HISTORY_SEED replays the writers' and watchers' random choices (thread timing still varies);
// HISTORY_WRITES sets the calls per writer on the embedded store (MongoDB: a sixteenth of it).
// Figures of the last run: docs/reliability.md.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freshDatabase, type FreshDatabase } from "../support/mongo";
import { startProcess, type ServiceProcess } from "../support/process";
import type { StoreKind } from "../support/server";
import { describeRun, run } from "../support/tools";
import { intFrom, seedFrom } from "./support/prng";

const SEED = seedFrom("HISTORY_SEED") % 1_000_000;
const WRITES: Record<StoreKind, number> = {
  sqlite: intFrom("HISTORY_WRITES", 2500),
  mongodb: Math.max(20, Math.floor(intFrom("HISTORY_WRITES", 2500) / 16)),
};
const WRITERS = 4;
const WATCHERS = 10;
// The script gives up by itself after this (exit 2); jest waits a little longer.
const SCRIPT_TIMEOUT_S = 150;

describe.each<StoreKind>(["sqlite", "mongodb"])("WatchSessions history on two replicas, %s store (Python checker)", (kind) => {
  let dataDir: string;
  let db: FreshDatabase | undefined;
  let replicas: ServiceProcess[] = [];

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "session-history-"));
    if (kind === "mongodb") db = await freshDatabase();
    const store: Record<string, string> =
      kind === "sqlite" ? { DATA_DIR: dataDir } : { MONGODB_URI: db!.uri, MONGODB_DATABASE: db!.dbName };
    replicas = await Promise.all([
      startProcess({ ...store, LOG_LEVEL: "info", WATCH_POLL_INTERVAL: "25ms" }),
      startProcess({ ...store, LOG_LEVEL: "info", WATCH_POLL_INTERVAL: "500ms" }),
    ]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    rmSync(dataDir, { recursive: true, force: true });
    await db?.drop();
  });

  it(
    `delivers to every watcher exactly the changes its filter entitles it to, and initial states equal the state at their revision (seed ${SEED})`,
    async () => {
      const targets = replicas.map((r) => `127.0.0.1:${r.grpcPort}`).join(",");
      const args = [
        "scripts/clients.sh",
        "history",
        targets,
        "--seed",
        String(SEED),
        "--writers",
        String(WRITERS),
        "--writes",
        String(WRITES[kind]),
        "--watchers",
        String(WATCHERS),
        "--timeout",
        String(SCRIPT_TIMEOUT_S),
      ];
      const result = await run("bash", args, { timeoutMs: (SCRIPT_TIMEOUT_S + 60) * 1000 });
      const line = result.stdout.split("\n").find((l) => l.startsWith("HISTORY_SUMMARY "));
      console.log(
        `history ${kind} (HISTORY_SEED=${SEED}): ${line?.slice("HISTORY_SUMMARY ".length) ?? "(no summary)"}${result.stderr ? `\n${result.stderr.slice(0, 6000)}` : ""}`,
      );
      expect({
        exit: result.code,
        violations: result.stderr
          .split("\n")
          .filter((l) => l.startsWith("VIOLATION"))
          .slice(0, 10),
      }).toEqual({ exit: 0, violations: [] });
      const summary = JSON.parse(line!.slice("HISTORY_SUMMARY ".length)) as {
        acknowledged_writes: number;
        changes_checked: number;
        snapshots: number;
        connections: number;
      };
      // The run did what it is meant to: many writes, many resumes and re-snapshots, everything checked.
      expect(summary.acknowledged_writes).toBeGreaterThan(WRITERS * WRITES[kind] * 0.9);
      expect(summary.connections).toBeGreaterThan(WATCHERS * 2);
      expect(summary.snapshots).toBeGreaterThan(0);
      expect(summary.changes_checked).toBeGreaterThan(summary.acknowledged_writes);
      if (result.code !== 0) throw new Error(describeRun("history_check.py", result));
    },
    (SCRIPT_TIMEOUT_S + 90) * 1000,
  );
});
