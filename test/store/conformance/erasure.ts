// Erasure (eraseSessions, eraseTraces; "Erasure" in src/domain/store.ts), run through the
// domain's Erasure with small batches: before/after reads of the sessions, the change log (read
// from revision 0: tombstones only), idempotency records, visit claims, every stored record (past
// the port), and a retry after a run that stopped half-way.

import { erasedDoc, Erasure } from "../../../src/domain/erasure";
import { NotFoundError } from "../../../src/domain/errors";
import type { SessionDoc } from "../../../src/domain/session";
import type { ChangeRecord, SessionStore } from "../../../src/domain/store";
import { at, fullDoc, rejection, type CurrentStore } from "./support";

/** Marks the person's data: no stored record may hold it after the erasure. */
const SECRET = "secret-of-the-erased-person";
const PERSON = "person-to-forget";

/** A session of the person, with their secret in a free-form field and a visit number. */
function personDoc(id: string, minutes: number): SessionDoc {
  const doc = fullDoc(id, at(minutes), { profileId: PERSON });
  doc.traits = { note: `${SECRET}-${id}` };
  return doc;
}

async function allChanges(store: SessionStore): Promise<ChangeRecord[]> {
  const out: ChangeRecord[] = [];
  for (let after = 0; ;) {
    const batch = await store.readChanges(after, 100);
    out.push(...batch.changes);
    if (batch.changes.length < 100) return out;
    after = batch.safeRevision;
  }
}

export function erasureTests(current: CurrentStore): void {
  let store: SessionStore;
  beforeEach(() => {
    store = current().store;
  });

  describe("erasure (eraseSessions, eraseTraces)", () => {
    /** The person's 5 sessions (created, updated, touched), and another person's 2. */
    async function seed(): Promise<{ mine: string[]; theirs: SessionDoc[] }> {
      const mine: string[] = [];
      for (let i = 0; i < 5; i++) {
        const id = `erase-me-${i}`;
        await store.create(personDoc(id, i), { numberVisitIn: PERSON, requestId: `req-${id}` });
        mine.push(id);
      }
      await store.update("erase-me-1", { set: [{ path: ["properties", "again"], value: `${SECRET}-updated` }], unset: [] });
      await store.update("erase-me-1", { set: [{ path: ["metadata", "channel"], value: "app" }], unset: [] });
      const theirs: SessionDoc[] = [];
      for (let i = 0; i < 2; i++) {
        const r = await store.create(fullDoc(`keep-me-${i}`, at(10 + i), { profileId: "someone-else" }), { numberVisitIn: "someone-else" });
        theirs.push(r.session);
      }
      return { mine, theirs };
    }

    /** Nothing of the person anywhere: reads, the log from 0, idempotency, visit numbering, every record. */
    async function expectForgotten(mine: string[], theirs: SessionDoc[]): Promise<void> {
      for (const id of mine) expect(await rejection(store.get(id))).toBeInstanceOf(NotFoundError);
      expect(await store.list({ profileId: PERSON, limit: 100 })).toEqual([]);
      expect((await store.stats({ profileId: PERSON, onlineSince: at(0) })).total).toBe(0);
      // The maintained counts (unfiltered statistics) lost the erased sessions too.
      const all = await store.stats({ groupBy: "channel", onlineSince: at(0) });
      const listed = await store.list({ limit: 1000 });
      expect(all.total).toBe(listed.length);
      expect(all.groups.reduce((n, g) => n + g.count, 0)).toBe(listed.length);
      for (const t of theirs) expect(await store.get(t.id)).toStrictEqual(t);

      const log = await allChanges(store);
      const ofMine = log.filter((c) => mine.includes(c.id));
      // created x5, 2 updates, and the 5 erasures: every one a tombstone of the id and revision.
      expect(ofMine).toHaveLength(12);
      for (const c of ofMine) {
        expect(c).toStrictEqual({
          revision: c.revision,
          kind: "deleted",
          id: c.id,
          doc: erasedDoc(c.id, null, c.revision),
          before: null,
          erased: true,
        });
      }
      // The other person's history is untouched.
      const ofTheirs = log.filter((c) => c.id.startsWith("keep-me-"));
      expect(ofTheirs.map((c) => [c.kind, c.erased ?? false, c.doc.traits])).toEqual(theirs.map((t) => ["created", false, t.traits]));

      const dump = await current().dump();
      expect(dump).not.toContain(SECRET);
      expect(dump).not.toContain(PERSON);
    }

    it("deletes every session of the profile and leaves tombstones only, in batches", async () => {
      const { mine, theirs } = await seed();
      expect(await store.get("erase-me-1")).toMatchObject({ properties: { again: `${SECRET}-updated` } });
      // The dump sees the data before (so its absence afterwards means something).
      const dumped = await current().dump();
      expect(dumped).toContain(`${SECRET}-erase-me-3`);
      expect(dumped).toContain(PERSON);
      const before = await store.headRevision();

      expect(await new Erasure(store, undefined, { batchSize: 2 }).erase(PERSON)).toEqual({ erased: 5 });
      // One revision per erased session.
      expect(await store.headRevision()).toBe(before + 5);
      await expectForgotten(mine, theirs);

      // Idempotency records are gone: the same request_id creates anew; numbering starts at 1.
      const again = await store.create(personDoc("erase-me-0", 20), { numberVisitIn: PERSON, requestId: "req-erase-me-0" });
      expect(again.created).toBe(true);
      expect([again.session.session_index, again.session.previous_session_id]).toEqual([1, null]);
    });

    it("is idempotent: a second erasure erases nothing and writes no change", async () => {
      const { mine, theirs } = await seed();
      const erasure = new Erasure(store, undefined, { batchSize: 3 });
      expect(await erasure.erase(PERSON)).toEqual({ erased: 5 });
      const head = await store.headRevision();
      expect(await erasure.erase(PERSON)).toEqual({ erased: 0 });
      expect(await erasure.erase("never-had-sessions")).toEqual({ erased: 0 });
      expect(await store.headRevision()).toBe(head);
      await expectForgotten(mine, theirs);
    });

    it("finishes on a retry after a run that stopped half-way (after one batch, and before the traces)", async () => {
      const { mine, theirs } = await seed();
      // A run that stopped after its first batch: 2 sessions gone, erased with the profile id.
      const first = await store.eraseSessions(PERSON, 2);
      expect([first.erased, first.more]).toEqual([2, true]);
      expect(await store.list({ profileId: PERSON, limit: 100 })).toHaveLength(3);
      const live = (await store.readChanges(first.revision - 2, 10)).changes;
      expect(live.map((c) => [c.kind, c.erased, c.doc.profile?.id, c.before?.profileId])).toEqual([
        ["deleted", true, PERSON, PERSON],
        ["deleted", true, PERSON, PERSON],
      ]);
      // Traces wait while sessions of the profile are left.
      expect(await store.eraseTraces(PERSON, 10)).toEqual({ done: false, sessionsLeft: true });

      // Another run stopped after the sessions, before the traces.
      const rest = await store.eraseSessions(PERSON, 10);
      expect([rest.erased, rest.more]).toEqual([3, false]);

      // The retry finds no session left and removes the traces.
      expect(await new Erasure(store, undefined, { batchSize: 2 }).erase(PERSON)).toEqual({ erased: 0 });
      await expectForgotten(mine, theirs);
    });

    it("leaves other profiles' sessions merged from the profile, and an earlier session with the same id", async () => {
      // An earlier session "reused-id" of someone else, deleted plainly: its history is theirs.
      await store.create(fullDoc("reused-id", at(0), { profileId: "earlier-owner" }));
      await store.delete("reused-id");
      await store.create(personDoc("reused-id", 1), { numberVisitIn: PERSON });
      // A session that moved from the person to another profile (MergeProfiles) stays.
      await store.create(fullDoc("moved-away", at(2), { profileId: PERSON }), { numberVisitIn: PERSON });
      const moved = await store.update(
        "moved-away",
        {
          set: [
            { path: ["profile", "id"], value: "merge-target" },
            { path: ["merged_from_profile_ids"], value: [PERSON] },
          ],
          unset: [],
        },
        { numberVisitIn: "merge-target" },
      );

      expect(await new Erasure(store, undefined, { batchSize: 2 }).erase(PERSON)).toEqual({ erased: 1 });
      expect(await store.get("moved-away")).toStrictEqual(moved);
      const log = await allChanges(store);
      const reused = log.filter((c) => c.id === "reused-id");
      expect(reused.map((c) => [c.kind, c.erased ?? false])).toEqual([
        ["created", false],
        ["deleted", false],
        ["deleted", true],
        ["deleted", true],
      ]);
      expect(reused[1].doc.profile?.id).toBe("earlier-owner");
      expect((await current().dump()).includes(SECRET)).toBe(false);
    });
  });
}
