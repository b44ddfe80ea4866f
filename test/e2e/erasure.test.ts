// EraseProfile end to end, on both stores, over gRPC and Connect: watchers open during the
// erasure get erased DELETED changes carrying only the id and profile id; a watch resumed from
// revision 0 afterwards shows tombstones only; a kill -9 of the built service half-way through,
// then the retry finishes the job; PERMISSION_DENIED without the profiles.erase scope.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { SessionSchema, type Session } from "../../gen/session/v1/session_pb";
import { ChangeKind, type WatchSessionsResponse } from "../../gen/session/v1/session_service_pb";
import { secretSha256 } from "../../src/security/keys";
import { connectClient, connectWatch, grpcClient, grpcWatch, type SessionClient, type WatchStream } from "../support/clients";
import { expectCallError } from "../support/expect";
import { freshDatabase, type FreshDatabase } from "../support/mongo";
import { startProcess, type ServiceProcess } from "../support/process";
import { startTestServer, type StoreKind, type TestServer } from "../support/server";

const STORES: StoreKind[] = (process.env.E2E_STORES ?? "sqlite,mongodb").split(",") as StoreKind[];
const SECRET = "secret-note-of-the-person";

type Change = { kind: ChangeKind; session: Session; revision: bigint; erased: boolean };

/** The changes of a watch stream, as they come (heartbeats skipped). */
class Changes {
  readonly got: Change[] = [];
  /** The initial state (send_initial) has ended: the stream is live. */
  initialEnded = false;
  private wake: (() => void) | undefined;
  private failure: unknown;

  constructor(readonly stream: WatchStream) {
    void (async () => {
      try {
        for await (const m of stream.messages as AsyncIterable<WatchSessionsResponse>) {
          if (m.event.case === "initialStateEnd") this.initialEnded = true;
          if (m.event.case === "change") {
            const { kind, session, revision, erased } = m.event.value;
            this.got.push({ kind, session: session!, revision, erased });
          }
          this.wake?.();
        }
      } catch (err) {
        this.failure = err;
        this.wake?.();
      }
    })();
  }

  /** Resolves once `cond` holds for what has come (bounded by `timeoutMs`). */
  async until(cond: (got: Change[]) => boolean, timeoutMs = 30_000): Promise<Change[]> {
    const end = Date.now() + timeoutMs;
    while (!cond(this.got)) {
      if (this.failure !== undefined) throw this.failure as Error;
      if (Date.now() > end) throw new Error(`not reached in time; got ${this.got.length} changes`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 200);
      });
    }
    return this.got;
  }
}

/** A session message holding nothing but these fields. */
const only = (id: string, profileId?: string): Uint8Array =>
  toBinary(SessionSchema, create(SessionSchema, { id, profile: profileId === undefined ? undefined : { id: profileId } }));
const bytes = (s: Session): Uint8Array => toBinary(SessionSchema, s);

/** Creates `n` sessions of the profile, `parallel` at a time. */
async function createSessions(client: SessionClient, profileId: string, prefix: string, n: number, parallel = 50): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
  for (let i = 0; i < n; i += parallel) {
    await Promise.all(
      ids.slice(i, i + parallel).map((id) =>
        client.createSession({
          session: { id, profile: { id: profileId }, traits: { note: `${SECRET} ${id}` } },
          requestId: `req-${id}`,
          pageUrl: "https://shop.example/?utm_source=news",
        }),
      ),
    );
  }
  return ids;
}

async function countSessions(client: SessionClient, profileId: string): Promise<number> {
  let n = 0;
  for (let pageToken = ""; ;) {
    const page = await client.listSessions({ profileId, pageSize: 1000, pageToken });
    n += page.sessions.length;
    if (!page.nextPageToken) return n;
    pageToken = page.nextPageToken;
  }
}

/** The history from revision 0 up to `head`, read by a resumed watch. */
async function history(stream: WatchStream, head: bigint): Promise<Change[]> {
  const changes = new Changes(stream);
  try {
    return await changes.until((got) => got.length > 0 && got[got.length - 1].revision >= head);
  } finally {
    stream.cancel();
  }
}

describe.each(STORES)("EraseProfile on %s", (kind) => {
  describe.each([
    ["gRPC", grpcClient, grpcWatch],
    ["Connect", connectClient, connectWatch],
  ] as const)("over %s", (protocol, makeClient, openWatch) => {
    let server: TestServer;
    let client: SessionClient;
    const port = (): number => (protocol === "gRPC" ? server.grpcPort : server.httpPort);
    const watch = (req: Parameters<typeof openWatch>[1]): WatchStream => openWatch(port(), req);

    beforeAll(async () => {
      server = await startTestServer(kind);
      client = makeClient(port());
    });

    afterAll(async () => {
      client.close();
      await server.close();
      await server.cleanup();
    });

    it("sends open watchers erased DELETED changes with only the id and profile id; history keeps tombstones only", async () => {
      const person = `person-${protocol}`;
      // A watcher from before the person's sessions exist: this process's change feed then
      // holds their changes in memory too.
      const start = await client.createSession({ session: { id: `start-${protocol}`, profile: { id: "someone-else" } } });
      const everything = new Changes(watch({ afterRevision: start.session!.revision - 1n }));
      await everything.until((got) => got.length === 1);
      const mine = await createSessions(client, person, `mine-${protocol}`, 4);
      await client.updateSession({ session: { id: mine[1], properties: { more: SECRET } }, updateMask: { paths: ["properties.more"] } });
      const other = await client.createSession({ session: { id: `other-${protocol}`, profile: { id: "someone-else" } } });
      // And one filtered by the person, live (its initial state has ended) before the erasure.
      const byProfile = new Changes(watch({ filter: { profileId: person }, sendInitial: true }));
      await byProfile.until((got) => got.length === 4 && byProfile.initialEnded);
      await everything.until((got) => got.length === 7);
      const firstOfMine = everything.got.find((c) => mine.includes(c.session.id))!.revision;
      const before = [byProfile.got.length, everything.got.length];

      expect(await client.eraseProfile({ profileId: person })).toMatchObject({ erasedSessions: 4n });

      for (const [watcher, from] of [
        [byProfile, before[0]],
        [everything, before[1]],
      ] as const) {
        const live = (await watcher.until((got) => got.length >= from + 4)).slice(from);
        expect(live.map((c) => [c.kind, c.erased, c.session.id]).sort()).toEqual(mine.map((id) => [ChangeKind.DELETED, true, id]).sort());
        for (const c of live) expect(bytes(c.session)).toEqual(only(c.session.id, person));
      }
      byProfile.stream.cancel();
      const head = everything.got[everything.got.length - 1].revision;

      // Resumed from before the person's first change, while the feed still holds it in memory.
      const recent = await history(watch({ afterRevision: firstOfMine - 1n }), head);
      expect(recent.filter((c) => mine.includes(c.session.id))).toHaveLength(4 + 1 + 4);
      for (const c of recent.filter((c) => mine.includes(c.session.id))) expect(bytes(c.session)).toEqual(only(c.session.id));
      everything.stream.cancel();

      // Resumed from 0, unfiltered and filtered by the person: tombstones of the id only.
      for (const filter of [{}, { profileId: person }]) {
        const past = await history(watch({ filter, afterRevision: 0n }), head);
        const ofMine = past.filter((c) => mine.includes(c.session.id));
        // Each session's create, the update, the erasures.
        expect(ofMine).toHaveLength(4 + 1 + 4);
        for (const c of ofMine) {
          expect([c.kind, c.erased]).toEqual([ChangeKind.DELETED, true]);
          expect(bytes(c.session)).toEqual(only(c.session.id));
        }
      }
      const all = await history(watch({ afterRevision: 0n }), head);
      expect(all.find((c) => c.session.id === other.session!.id)?.session.profile?.id).toBe("someone-else");

      // No read returns the person; the idempotency keys are forgotten, so is the numbering.
      for (const id of mine) await expectCallError(client.getSession({ id }), Code.NotFound);
      expect(await countSessions(client, person)).toBe(0);
      const again = await client.createSession({ session: { id: mine[0], profile: { id: person } }, requestId: `req-${mine[0]}` });
      expect([again.session!.operation?.new, again.session!.sessionIndex]).toEqual([true, 1]);
      // Erasing again erases just that one; then nothing.
      expect(await client.eraseProfile({ profileId: person })).toMatchObject({ erasedSessions: 1n });
      expect(await client.eraseProfile({ profileId: person })).toMatchObject({ erasedSessions: 0n });
    });

    it("refuses a missing or malformed profile_id with INVALID_ARGUMENT naming it", async () => {
      for (const profileId of ["", "has space", "x".repeat(129)]) {
        const err = await expectCallError(client.eraseProfile({ profileId }), Code.InvalidArgument, "profile_id");
        expect(err.fields).toEqual(["profile_id"]);
      }
    });
  });

  it("finishes after a kill -9 of the service half-way through, on the retry", async () => {
    const total = kind === "sqlite" ? 3000 : 150;
    const batch = kind === "sqlite" ? "2" : "5";
    let dataDir: string | undefined;
    let db: FreshDatabase | undefined;
    if (kind === "sqlite") dataDir = mkdtempSync(join(tmpdir(), "erase-kill9-"));
    else db = await freshDatabase();
    const env = (): Record<string, string> => ({
      ERASE_BATCH_SIZE: batch,
      ...(dataDir !== undefined ? { DATA_DIR: dataDir } : { MONGODB_URI: db!.uri, MONGODB_DATABASE: db!.dbName }),
    });
    let proc: ServiceProcess | undefined = await startProcess(env());
    let watcher: Changes | undefined;
    try {
      let client = grpcClient(proc.grpcPort);
      const person = "person-killed-mid-erasure";
      const mine = await createSessions(client, person, "k", total, kind === "sqlite" ? 100 : 10);

      // A live watcher of the person: it sees the erasure go, and the test kills the service
      // once 20 sessions are gone.
      const marker = await client.createSession({ session: { id: "k-marker", profile: { id: person } } });
      watcher = new Changes(grpcWatch(proc.grpcPort, { filter: { profileId: person }, afterRevision: marker.session!.revision - 1n }));
      await watcher.until((got) => got.length === 1);
      mine.push("k-marker");
      const erasing = client.eraseProfile({ profileId: person }).catch((err: unknown) => err);
      await watcher.until((got) => got.filter((c) => c.erased).length >= 20, 60_000);
      proc.child.kill("SIGKILL");
      expect((await proc.exited).signal).toBe("SIGKILL");
      expect(await erasing).toBeInstanceOf(Error);
      client.close();

      proc = await startProcess(env());
      client = grpcClient(proc.grpcPort);
      const left = await countSessions(client, person);
      // Half-way: some erased, some left.
      expect(left).toBeGreaterThan(0);
      expect(left).toBeLessThan(mine.length - 19);
      const retry = await client.eraseProfile({ profileId: person }, { timeoutMs: 120_000 });
      expect(retry.erasedSessions).toBe(BigInt(left));
      expect(await countSessions(client, person)).toBe(0);
      const head = (await client.createSession({ session: { id: "after-all", profile: { id: "someone-else" } } })).session!.revision;
      const past = await history(grpcWatch(proc.grpcPort, { afterRevision: 0n }), head);
      const ids = new Set(mine);
      const ofMine = past.filter((c) => ids.has(c.session.id));
      // Each session's create and its erasure, all tombstones of the id only.
      expect(ofMine).toHaveLength(2 * mine.length);
      expect(ofMine.every((c) => c.kind === ChangeKind.DELETED && c.erased && c.session.profile === undefined)).toBe(true);
      expect(past.some((c) => JSON.stringify(c.session.traits ?? {}).includes(SECRET))).toBe(false);
      client.close();
    } catch (err) {
      // What the service said last, to tell why.
      throw new Error(`${String(err)}\nthe service's last lines:\n${proc?.lines.slice(-20).join("\n")}`, { cause: err });
    } finally {
      watcher?.stream.cancel();
      await proc?.stop();
      if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
      await db?.drop();
    }
  }, 240_000);
});

describe("EraseProfile with API keys", () => {
  const secrets = { eraser: "eraser-s3cret-value-0123456789", everyoneElse: "others-s3cret-value-0123456789" };
  let dir: string;
  let server: TestServer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "erase-keys-"));
    const keys = {
      keys: [
        { id: "eraser", sha256: secretSha256(secrets.eraser), scopes: ["profiles.erase"] },
        {
          id: "everyone-else",
          sha256: secretSha256(secrets.everyoneElse),
          scopes: ["sessions.read", "sessions.write", "sessions.watch", "profiles.merge"],
        },
      ],
    };
    writeFileSync(join(dir, "keys.json"), JSON.stringify(keys));
    server = await startTestServer("sqlite", { AUTH_KEYS_FILE: join(dir, "keys.json") });
  });

  afterAll(async () => {
    await server.close();
    await server.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ["gRPC", () => server.grpcPort, grpcClient],
    ["Connect", () => server.httpPort, connectClient],
  ] as const)("needs the profiles.erase scope over %s", async (protocol, port, makeClient) => {
    const others = makeClient(port(), { secret: secrets.everyoneElse });
    const eraser = makeClient(port(), { secret: secrets.eraser });
    try {
      await others.createSession({ session: { id: `keyed-${protocol}`, profile: { id: "keyed-person" } } });
      const denied = await expectCallError(others.eraseProfile({ profileId: "keyed-person" }), Code.PermissionDenied);
      expect(denied.errorInfo?.reason).toBe("SCOPE_MISSING");
      expect(denied.errorInfo?.metadata.scope).toBe("profiles.erase");
      expect((await others.getSession({ id: `keyed-${protocol}` })).session?.id).toBe(`keyed-${protocol}`);
      expect(await eraser.eraseProfile({ profileId: "keyed-person" })).toMatchObject({ erasedSessions: 1n });
      await expectCallError(others.getSession({ id: `keyed-${protocol}` }), Code.NotFound);
    } finally {
      others.close();
      eraser.close();
    }
  });
});
