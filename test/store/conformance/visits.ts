// Visit numbering (numberVisitIn): per-profile numbers and the chain of previous sessions, also
// under concurrency and when an update moves a session to another profile.

import { AlreadyExistsError, RevisionConflictError } from "../../../src/domain/errors";
import type { SessionDoc } from "../../../src/domain/session";
import type { SessionPatch, SessionStore } from "../../../src/domain/store";
import { at, fullDoc, rejection, type CurrentStore } from "./support";

export function visitTests(current: CurrentStore): void {
  let store: SessionStore;
  beforeEach(() => {
    store = current().store;
  });

  describe("visit numbering (numberVisitIn)", () => {
    const visit = (d: SessionDoc) => [d.id, d.session_index, d.previous_session_id];

    it("numbers a profile's sessions 1, 2, 3 with the previous one's id, per profile, stored with the session", async () => {
      const a1 = await store.create(fullDoc("v-a1", at(0), { profileId: "pa" }), { numberVisitIn: "pa" });
      const b1 = await store.create(fullDoc("v-b1", at(1), { profileId: "pb" }), { numberVisitIn: "pb" });
      const a2 = await store.create(fullDoc("v-a2", at(2), { profileId: "pa" }), { numberVisitIn: "pa" });
      const a3 = await store.create(fullDoc("v-a3", at(3), { profileId: "pa" }), { numberVisitIn: "pa" });
      expect([a1, b1, a2, a3].map((r) => visit(r.session))).toEqual([
        ["v-a1", 1, null],
        ["v-b1", 1, null],
        ["v-a2", 2, "v-a1"],
        ["v-a3", 3, "v-a2"],
      ]);
      expect(await store.get("v-a3")).toStrictEqual(a3.session);
      // Without the option nothing is numbered: the document is stored as given.
      const plain = await store.create(fullDoc("v-plain", at(4), { profileId: "pa" }));
      expect(visit(plain.session)).toEqual(["v-plain", 0, null]);
    });

    it("gives concurrent creates of one profile distinct, contiguous numbers, each chained to the one before", async () => {
      const n = 12;
      const results = await Promise.all(
        Array.from({ length: n }, (_, i) => store.create(fullDoc(`v-c${i}`, at(i), { profileId: "pc" }), { numberVisitIn: "pc" })),
      );
      const byIndex = new Map(results.map((r) => [r.session.session_index, r.session]));
      expect([...byIndex.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
      for (let k = 2; k <= n; k++) expect(byIndex.get(k)!.previous_session_id).toBe(byIndex.get(k - 1)!.id);
      expect(byIndex.get(1)!.previous_session_id).toBeNull();
    });

    it("takes no number for a replayed requestId; after a duplicate id the chain skips any number it took", async () => {
      await store.create(fullDoc("v-r1", at(0), { profileId: "pr" }), { numberVisitIn: "pr", requestId: "req-v" });
      const replay = await store.create(fullDoc("v-r1-again", at(1), { profileId: "pr" }), { numberVisitIn: "pr", requestId: "req-v" });
      expect(visit(replay.session)).toEqual(["v-r1", 1, null]);
      const next = await store.create(fullDoc("v-r2", at(2), { profileId: "pr" }), { numberVisitIn: "pr" });
      expect(visit(next.session)).toEqual(["v-r2", 2, "v-r1"]);
      // A failed create may leave its number unused (the port allows gaps), never a wrong chain.
      expect(await rejection(store.create(fullDoc("v-r1", at(3), { profileId: "pr" }), { numberVisitIn: "pr" }))).toBeInstanceOf(
        AlreadyExistsError,
      );
      const after = await store.create(fullDoc("v-r3", at(4), { profileId: "pr" }), { numberVisitIn: "pr" });
      expect(after.session.session_index).toBeGreaterThan(2);
      expect(after.session.previous_session_id).toBe("v-r2");
    });

    it("numbers the creates of one profile issued together (one group commit) in order", async () => {
      const results = await Promise.all(
        ["v-g0", "v-g1", "v-g2", "v-g3"].map((id, i) => store.create(fullDoc(id, at(i), { profileId: "pg" }), { numberVisitIn: "pg" })),
      );
      const chain = results.map((r) => r.session).sort((a, b) => a.session_index - b.session_index);
      expect(chain.map((s) => s.session_index)).toEqual([1, 2, 3, 4]);
      for (let i = 1; i < chain.length; i++) expect(chain[i]!.previous_session_id).toBe(chain[i - 1]!.id);
      // Twice more together, now that the store has seen the profile.
      const more = await Promise.all(
        ["v-g4", "v-g5", "v-g6"].map((id, i) => store.create(fullDoc(id, at(10 + i), { profileId: "pg" }), { numberVisitIn: "pg" })),
      );
      const next = more.map((r) => r.session).sort((a, b) => a.session_index - b.session_index);
      expect(next.map((s) => [s.session_index, s.previous_session_id])).toEqual([
        [5, chain[3]!.id],
        [6, next[0]!.id],
        [7, next[1]!.id],
      ]);
      for (const s of next) expect(await store.get(s.id)).toStrictEqual(s);
    });

    it("numbers a session anew in the profile an update moves it to, atomically with the patch", async () => {
      await store.create(fullDoc("v-t1", at(0), { profileId: "pt" }), { numberVisitIn: "pt" });
      const { session } = await store.create(fullDoc("v-s1", at(1), { profileId: "ps" }), { numberVisitIn: "ps" });
      const patch: SessionPatch = {
        set: [
          { path: ["profile", "id"], value: "pt" },
          { path: ["merged_from_profile_ids"], value: ["ps"] },
        ],
        unset: [],
      };
      const moved = await store.update("v-s1", patch, { expectedRevision: session.revision, numberVisitIn: "pt" });
      expect([moved.profile?.id, moved.merged_from_profile_ids, ...visit(moved)]).toEqual(["pt", ["ps"], "v-s1", 2, "v-t1"]);
      expect(await store.get("v-s1")).toStrictEqual(moved);
      const stale = await rejection(store.update("v-s1", patch, { expectedRevision: session.revision, numberVisitIn: "pt" }));
      expect(stale).toBeInstanceOf(RevisionConflictError);
      const next = await store.create(fullDoc("v-t3", at(2), { profileId: "pt" }), { numberVisitIn: "pt" });
      expect(next.session.session_index).toBeGreaterThan(2);
      expect(next.session.previous_session_id).toBe("v-s1");
    });
  });
}
