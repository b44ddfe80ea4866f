// A randomized history in the spirit of etcd's robustness checks: two service processes on one
// MongoDB-wire database (FerretDB in the suite), writers through both, watchers on both that
// disconnect and resume at random. Afterwards every watcher's recorded stream is checked for
// order, uniqueness, no gaps and a final state equal to the database's. Seeded: set WATCH_SEED
// to replay a failing history (the seed is printed on failure).

import { ChangeKind } from "../../gen/session/v1/session_service_pb";
import { grpcClient, grpcWatch, connectWatch, type SessionClient } from "../support/clients";
import { freshDatabase, type FreshDatabase } from "../support/mongo";
import { startProcess, type ServiceProcess } from "../support/process";

const SEED = Number(process.env.WATCH_SEED ?? Date.now() % 1_000_000);
const REPLICAS = 2;
const WRITERS = Number(process.env.REPLICA_WRITERS ?? 4);
const WATCHERS = 20;
// 3,000 updates by default. The suite's FerretDB (scripts/ferretdb.sh: SQLite backend with the
// `_id` index patch) takes 30-60 changes/s under this load on 2 shared cores, so about 50-100 s of
// writes. On a stock FerretDB v1.24 every `_id` lookup scans its collection, so the rate falls as
// the change log grows: there, set REPLICA_WRITES_PER_WRITER=100 (docs/mongodb.md).
const WRITES_PER_WRITER = Number(process.env.REPLICA_WRITES_PER_WRITER ?? 750);
const SESSIONS = 24;
const CHANGES = WRITERS * WRITES_PER_WRITER;
// Generous: at 12 changes/s 3,000 changes would still fit (a hang is caught, not a slow machine).
const TIMEOUT_MS = 60_000 + CHANGES * 80;

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Received {
  revision: bigint;
  id: string;
  kind: ChangeKind;
  traits: unknown;
}

describe(`WatchSessions across ${REPLICAS} replicas on one database (seed ${SEED})`, () => {
  let db: FreshDatabase;
  let replicas: ServiceProcess[];
  let clients: SessionClient[];

  beforeAll(async () => {
    db = await freshDatabase();
    const env = { MONGODB_URI: db.uri, MONGODB_DATABASE: db.dbName, LOG_LEVEL: "info", WATCH_POLL_INTERVAL: "25ms", STORE_TIMEOUT: "30s" };
    replicas = await Promise.all(Array.from({ length: REPLICAS }, () => startProcess(env)));
    clients = replicas.map((r) => grpcClient(r.grpcPort));
  });

  afterAll(async () => {
    clients?.forEach((c) => c.close());
    await Promise.all((replicas ?? []).map((r) => r.stop()));
    await db?.drop();
  });

  it(
    "delivers every change once, in order, to every watcher, and ends in the database's state",
    async () => {
      const rand = prng(SEED);
      const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
      const profiles = ["pa", "pb"];
      const ids: string[] = [];
      for (let i = 0; i < SESSIONS; i++) {
        ids.push((await clients[i % REPLICAS].createSession({ session: { profile: { id: profiles[i % 2] } } })).session!.id);
      }
      const start = (await clients[0].getSession({ id: ids[ids.length - 1] })).session!.revision;

      // Writers: masked updates of random sessions through both replicas; record each ack.
      const acked: Array<{ revision: bigint; id: string }> = [];
      let writing = true;
      let lastAcked = 0n;
      const writer = async (w: number) => {
        const client = clients[w % REPLICAS];
        for (let i = 0; i < WRITES_PER_WRITER; i++) {
          const id = pick(ids);
          const s = (await client.updateSession({ session: { id, traits: { w, i } }, updateMask: { paths: ["traits"] } })).session!;
          acked.push({ revision: s.revision, id });
        }
      };

      // Watchers: half watch everything, half one profile; each disconnects after a random number
      // of messages and resumes from the last revision it received (change or progress).
      const filters = Array.from({ length: WATCHERS }, (_, w) => (w % 2 ? { profileId: profiles[w % 4 === 1 ? 0 : 1] } : {}));
      const records: Received[][] = Array.from({ length: WATCHERS }, () => []);
      let resumes = 0;
      const watcher = async (w: number) => {
        let cursor = start;
        for (;;) {
          const replica = replicas[Math.floor(rand() * REPLICAS)];
          const req = { filter: filters[w], afterRevision: cursor, heartbeatInterval: { seconds: 1n } };
          const stream = rand() < 0.5 ? grpcWatch(replica.grpcPort, req) : connectWatch(replica.httpPort, req);
          const budget = 1 + Math.floor(rand() * 200);
          let caughtUpAfterWrites = false;
          const it = stream.messages[Symbol.asyncIterator]();
          for (let n = 0; n < budget; n++) {
            const r = await it.next();
            if (r.done) throw new Error("stream ended");
            const m = r.value;
            if (m.event.case === "change") {
              const c = m.event.value;
              records[w].push({ revision: c.revision, id: c.session!.id, kind: c.kind, traits: c.session!.traits });
              cursor = c.revision;
            } else if (m.event.case === "progress") {
              cursor = m.event.value.revision;
              // Done once a progress covers every acknowledged write (a replica's feed may still
              // be behind writes acknowledged by the other one).
              if (!writing && cursor >= lastAcked) {
                caughtUpAfterWrites = true;
                break;
              }
            }
          }
          stream.cancel();
          if (caughtUpAfterWrites) return;
          resumes++;
        }
      };

      const watchers = Array.from({ length: WATCHERS }, (_, w) => watcher(w));
      const t0 = Date.now();
      await Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
      const writeMs = Date.now() - t0;
      lastAcked = acked.reduce((max, a) => (a.revision > max ? a.revision : max), 0n);
      writing = false;
      // A progress after the last write is a resume point covering every acknowledged write.
      await Promise.all(watchers);
      const totalMs = Date.now() - t0;
      const delivered = records.reduce((n, r) => n + r.length, 0);
      console.log(
        `watch-replicas (seed ${SEED}): ${acked.length} changes by ${WRITERS} writers in ${(writeMs / 1000).toFixed(1)} s = ` +
          `${((acked.length * 1000) / writeMs).toFixed(1)} changes/s; ${delivered} deliveries to ${WATCHERS} watchers ` +
          `(${resumes} resumes), all caught up ${(totalMs / 1000).toFixed(1)} s after the first write`,
      );

      expect(acked.length).toBe(CHANGES);
      expect(resumes).toBeGreaterThan(WATCHERS);
      const profileOf = new Map(ids.map((id, i) => [id, profiles[i % 2]]));
      const final = new Map<string, unknown>();
      for (const id of ids) final.set(id, (await clients[0].getSession({ id })).session!.traits);
      const ackedSorted = [...acked].sort((a, b) => (a.revision < b.revision ? -1 : 1));

      filters.forEach((filter, w) => {
        const rec = records[w];
        // Ordered and unique.
        for (let i = 1; i < rec.length; i++) {
          if (rec[i].revision <= rec[i - 1].revision)
            throw new Error(`seed ${SEED}: watcher ${w} got ${rec[i].revision} after ${rec[i - 1].revision}`);
        }
        // No gaps: exactly the acknowledged writes its filter matches, all of them.
        const expected = ackedSorted.filter((a) => !("profileId" in filter) || profileOf.get(a.id) === filter.profileId);
        expect({ seed: SEED, watcher: w, revisions: rec.map((r) => r.revision) }).toEqual({
          seed: SEED,
          watcher: w,
          revisions: expected.map((a) => a.revision),
        });
        expect(rec.every((r) => r.kind === ChangeKind.UPDATED)).toBe(true);
        // Final state: the last version each watcher saw of a session is the database's.
        const last = new Map<string, unknown>();
        for (const r of rec) last.set(r.id, r.traits);
        for (const [id, traits] of last) expect({ seed: SEED, id, traits }).toEqual({ seed: SEED, id, traits: final.get(id) });
      });
    },
    TIMEOUT_MS,
  );
});
