// kill -9 under write load (issue 10, "An adversarial suite"): the real service process
// (dist/src/main.js), several concurrent writers (creates with request ids, then updates of the
// sessions they created), SIGKILL at a random moment (after a random number of acknowledged
// writes), a restart on the same data, and a check that every acknowledged write is there:
//   - every acknowledged create exists (GetSession);
//   - for every acknowledged update, the stored revision is at least the acknowledged one, and
//     the stored value is the acknowledged one, unless a later write of that session (only the
//     writer's own call in flight at the kill, never acknowledged) replaced it.
// Three rounds per store on the same data, so each round also re-checks the earlier ones. Both
// stores: the embedded SQLite store (one DATA_DIR) and MongoDB (a FerretDB database).
// KILL9_SEED replays the kill moments and the writes (the seed is printed); KILL9_ROUNDS (3).
// Figures of the last run: docs/reliability.md.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { grpcClient, type SessionClient } from "../support/clients";
import { freshDatabase, type FreshDatabase } from "../support/mongo";
import { startProcess, type ServiceProcess } from "../support/process";
import type { StoreKind } from "../support/server";
import { intFrom, rng, seedFrom, type Rng } from "./support/prng";

const SEED = seedFrom("KILL9_SEED");
const ROUNDS = intFrom("KILL9_ROUNDS", 3);
const WRITERS = 8;
// The kill comes after a random number of acknowledged writes in this range (per round).
const KILL_AFTER: Record<StoreKind, [number, number]> = { sqlite: [150, 900], mongodb: [40, 160] };

interface Expected {
  /** The latest acknowledged revision of the session and its value (traits.v). */
  revision: bigint;
  v: number;
  /** The value of a write to this session that was in flight at the kill (may or may not be applied). */
  inflight?: number;
}

interface RoundFigures {
  round: number;
  ackedCreates: number;
  ackedUpdates: number;
  failedCalls: number;
  inflightApplied: number;
  lost: string[];
}

async function writer(
  w: number,
  round: number,
  r: Rng,
  client: SessionClient,
  expected: Map<string, Expected>,
  stats: { creates: number; updates: number; failures: number },
  onAck: () => void,
  killed: () => boolean,
): Promise<void> {
  const mine: string[] = [];
  for (let i = 0; !killed(); i++) {
    const update = mine.length > 0 && r.chance(0.6);
    const v = i + 1;
    if (!update) {
      const id = `k9-r${round}-w${w}-${i}`;
      expected.set(id, { revision: -1n, v: 0, inflight: v }); // in flight until acknowledged
      try {
        const s = (
          await client.createSession(
            { session: { id, profile: { id: `k9-p${w % 3}` }, traits: { v } }, requestId: `k9-req-${id}` },
            { timeoutMs: 10_000 },
          )
        ).session!;
        expected.set(id, { revision: s.revision, v });
        mine.push(id);
        stats.creates++;
        onAck();
      } catch {
        stats.failures++;
        return; // the process is gone (or going): this writer stops
      }
    } else {
      const id = r.pick(mine);
      const e = expected.get(id)!;
      e.inflight = v;
      try {
        const s = (await client.updateSession({ session: { id, traits: { v } }, updateMask: { paths: ["traits"] } }, { timeoutMs: 10_000 }))
          .session!;
        expected.set(id, { revision: s.revision, v });
        stats.updates++;
        onAck();
      } catch {
        stats.failures++;
        return;
      }
    }
  }
}

describe.each<StoreKind>(["sqlite", "mongodb"])("kill -9 under write load, %s store", (kind) => {
  let dataDir: string;
  let db: FreshDatabase | undefined;
  let proc: ServiceProcess | undefined;
  const env = (): Record<string, string> =>
    kind === "sqlite"
      ? { DATA_DIR: dataDir, LOG_LEVEL: "info" }
      : { MONGODB_URI: db!.uri, MONGODB_DATABASE: db!.dbName, LOG_LEVEL: "info" };

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "session-kill9-"));
    if (kind === "mongodb") db = await freshDatabase();
  });

  afterAll(async () => {
    await proc?.stop();
    rmSync(dataDir, { recursive: true, force: true });
    await db?.drop();
  });

  it(`keeps every acknowledged write through ${ROUNDS} kills (seed ${SEED})`, async () => {
    const r = rng(SEED).fork(kind === "sqlite" ? 11 : 12);
    // Every acknowledged write of every round: checked after each restart.
    const expected = new Map<string, Expected>();
    const figures: RoundFigures[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      proc = await startProcess(env());
      const client = grpcClient(proc.grpcPort);
      const killAfter = r.int(...KILL_AFTER[kind]);
      const stats = { creates: 0, updates: 0, failures: 0 };
      let acks = 0;
      let killedAt = false;
      const current = proc;
      const kill = () => {
        if (killedAt) return;
        killedAt = true;
        current.child.kill("SIGKILL");
      };
      const writers = Array.from({ length: WRITERS }, (_, w) =>
        writer(
          w,
          round,
          r.fork(round * 100 + w),
          client,
          expected,
          stats,
          () => ++acks >= killAfter && kill(),
          () => killedAt,
        ),
      );
      // Writers stop at the kill, or on their first failed call: a failure before the kill is
      // reported (the load was not what this test means to apply) and the process killed anyway.
      await Promise.all(writers);
      const killedByLoad = killedAt;
      kill();
      const exit = await current.exited;
      client.close();
      expect({
        round,
        killedAfterAcks: killedByLoad,
        acks,
        failures: stats.failures,
        output: killedByLoad ? "" : current.lines.slice(-10).join("\n"),
      }).toEqual({ round, killedAfterAcks: true, acks, failures: stats.failures, output: "" });
      expect(exit.signal).toBe("SIGKILL");

      // Restart on the same data and check every acknowledged write of every round so far.
      proc = await startProcess(env());
      const check = grpcClient(proc.grpcPort);
      const lost: string[] = [];
      let inflightApplied = 0;
      for (const [id, e] of expected) {
        let stored;
        try {
          stored = (await check.getSession({ id }, { timeoutMs: 10_000 })).session!;
        } catch (err) {
          const code = (err as { code?: number }).code;
          // Never acknowledged (a create in flight at the kill): may be absent.
          if (e.revision < 0n && code === 5) {
            expected.delete(id);
            continue;
          }
          lost.push(`${id}: acknowledged at revision ${e.revision}, GetSession says ${code} ${(err as Error).message}`);
          continue;
        }
        const v = (stored.traits as { v?: number } | undefined)?.v;
        if (e.revision < 0n) {
          // A create in flight at the kill that did commit: it now counts as written.
          if (v !== e.inflight) lost.push(`${id}: in-flight create committed with v=${v}, sent ${e.inflight}`);
          inflightApplied++;
          expected.set(id, { revision: stored.revision, v: v as number });
          continue;
        }
        if (stored.revision < e.revision)
          lost.push(`${id}: acknowledged revision ${e.revision} (v=${e.v}), stored ${stored.revision} (v=${v})`);
        else if (v === e.v) expected.set(id, { revision: stored.revision, v: e.v });
        else if (e.inflight !== undefined && v === e.inflight && stored.revision > e.revision) {
          inflightApplied++;
          expected.set(id, { revision: stored.revision, v });
        } else lost.push(`${id}: acknowledged v=${e.v} at revision ${e.revision}, stored v=${v} at revision ${stored.revision}`);
      }
      for (const e of expected.values()) delete e.inflight;
      check.close();
      await proc.stop();
      proc = undefined;
      figures.push({ round, ackedCreates: stats.creates, ackedUpdates: stats.updates, failedCalls: stats.failures, inflightApplied, lost });
    }
    const total = figures.reduce((n, f) => n + f.ackedCreates + f.ackedUpdates, 0);
    console.log(
      `kill9 ${kind} (KILL9_SEED=${SEED}): ${ROUNDS} rounds, ${WRITERS} writers; ` +
        figures
          .map(
            (f) =>
              `round ${f.round}: ${f.ackedCreates} creates + ${f.ackedUpdates} updates acknowledged, ${f.failedCalls} calls cut by the kill, ${f.inflightApplied} in-flight writes found applied, ${f.lost.length} lost`,
          )
          .join("; ") +
        `; total acknowledged ${total}, sessions checked after the last round ${expected.size}, lost ${figures.reduce((n, f) => n + f.lost.length, 0)}`,
    );
    for (const f of figures) expect({ round: f.round, lost: f.lost.slice(0, 20) }).toEqual({ round: f.round, lost: [] });
    for (const f of figures) expect(f.ackedCreates + f.ackedUpdates).toBeGreaterThanOrEqual(KILL_AFTER[kind][0]);
  }, 180_000);
});
