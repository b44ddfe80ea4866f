// Expiry: findExpired (the sessions due to end), and the domain's expiry passes
// (src/domain/lifecycle.ts) over this store with a fixed clock: what ends and why, bounded
// passes, and two replicas expiring at once (two store instances on one database, as two service
// processes) ending each session exactly once. The passes rely on findExpired and conditional
// updates only, so every adapter must give the same outcome.

import { Lifecycle } from "../../../src/domain/lifecycle";
import { startExpiry } from "../../../src/domain/jobs";
import { emptySessionDoc, type SessionDoc } from "../../../src/domain/session";
import type { SessionStore } from "../../../src/domain/store";
import { at, fullDoc, ids, type CurrentStore } from "./support";

export function expiryTests(current: CurrentStore): void {
  let store: SessionStore;
  beforeEach(() => {
    store = current().store;
  });

  describe("findExpired", () => {
    // Activity = metadata.time.update, else insert.
    function session(id: string, insert: Date, update: Date | null, status = "active"): SessionDoc {
      const doc = fullDoc(id, insert, { status });
      doc.metadata.time.update = update;
      return doc;
    }

    it("returns the active sessions idle since before idleBefore or inserted before insertedBefore, nothing else", async () => {
      await store.create(session("e-idle", at(0), at(10)));
      await store.create(session("e-idle-never-updated", at(5), null));
      await store.create(session("e-busy", at(0), at(50)));
      await store.create(session("e-too-long", at(-2000), at(55)));
      await store.create(session("e-ended", at(0), at(1), "ended"));
      await store.create(session("e-closed-old", at(-2000), null, "closed"));
      await store.create(session("e-fresh", at(40), null));
      const due = await store.findExpired({ idleBefore: at(30), insertedBefore: at(-1000), limit: 100 });
      expect(ids(due).sort()).toEqual(["e-idle", "e-idle-never-updated", "e-too-long"]);
      expect(due.find((d) => d.id === "e-idle")).toStrictEqual(await store.get("e-idle"));
    });

    it("returns at most `limit`, and stops returning a session once it is no longer active", async () => {
      for (let i = 0; i < 7; i++) await store.create(session(`e-${i}`, at(0), null));
      const first = await store.findExpired({ idleBefore: at(30), insertedBefore: at(-1000), limit: 3 });
      expect(first).toHaveLength(3);
      for (const d of first) {
        await store.update(d.id, { set: [{ path: ["metadata", "status"], value: "ended" }], unset: [] }, { expectedRevision: d.revision });
      }
      const rest = await store.findExpired({ idleBefore: at(30), insertedBefore: at(-1000), limit: 100 });
      expect(rest).toHaveLength(4);
      expect(ids(rest).filter((id) => ids(first).includes(id))).toEqual([]);
    });

    it("sees activity written by an update", async () => {
      const { session: s } = await store.create(session("e-touched", at(0), null));
      await store.update(
        "e-touched",
        { set: [{ path: ["metadata", "time", "update"], value: at(100) }], unset: [] },
        { expectedRevision: s.revision },
      );
      expect(await store.findExpired({ idleBefore: at(30), insertedBefore: at(-1000), limit: 10 })).toEqual([]);
    });
  });

  describe("expiry passes (Lifecycle.expire)", () => {
    const NOW = new Date("2026-11-27T12:00:00Z");
    const minutesAgo = (m: number) => new Date(NOW.getTime() - m * 60_000);
    const clock = { now: () => NOW };
    const OPTIONS = { idleMs: 30 * 60_000, maxDurationMs: 24 * 3600_000 };

    function session(id: string, insert: Date, update: Date | null = null, status = "active"): SessionDoc {
      const doc = emptySessionDoc(id, insert);
      doc.metadata.time.update = update;
      doc.metadata.status = status;
      return doc;
    }

    it("ends idle and over-long active sessions with their reason, and nothing else", async () => {
      await store.create(session("idle", minutesAgo(120), minutesAgo(45)));
      await store.create(session("idle-never-touched", minutesAgo(40)));
      await store.create(session("recent", minutesAgo(120), minutesAgo(10)));
      await store.create(session("too-long", minutesAgo(25 * 60), minutesAgo(1)));
      await store.create(session("already-ended", minutesAgo(120), null, "ended"));
      await store.create(session("fresh", minutesAgo(5)));
      const before = await store.get("idle");

      const pass = await new Lifecycle(store, OPTIONS, clock).expire();
      expect(pass).toEqual({ ended: 3, skipped: 0 });
      const state = async (id: string) => {
        const d = await store.get(id);
        return [d.metadata.status, d.activity.end_reason];
      };
      expect(await state("idle")).toEqual(["ended", "idle"]);
      expect(await state("idle-never-touched")).toEqual(["ended", "idle"]);
      expect(await state("too-long")).toEqual(["ended", "max_duration"]);
      expect(await state("recent")).toEqual(["active", ""]);
      expect(await state("already-ended")).toEqual(["ended", ""]);
      expect(await state("fresh")).toEqual(["active", ""]);
      // Expiry is not activity: update and duration are left alone.
      const after = await store.get("idle");
      expect(after.metadata.time).toEqual(before.metadata.time);
      // A second pass finds nothing.
      expect(await new Lifecycle(store, OPTIONS, clock).expire()).toEqual({ ended: 0, skipped: 0 });
    });

    it("ends at most maxPerPass sessions per pass, in batches, and the next pass goes on", async () => {
      for (let i = 0; i < 9; i++) await store.create(session(`s${i}`, minutesAgo(60)));
      const lifecycle = new Lifecycle(store, { ...OPTIONS, expiryBatch: 2, maxPerPass: 5 }, clock);
      expect((await lifecycle.expire()).ended).toBe(5);
      expect((await lifecycle.expire()).ended).toBe(4);
      expect((await lifecycle.expire()).ended).toBe(0);
    });

    it("drains a backlog at start, pass after pass, without waiting an interval per pass", async () => {
      for (let i = 0; i < 5; i++) await store.create(session(`b${i}`, minutesAgo(60)));
      const lifecycle = new Lifecycle(store, { ...OPTIONS, expiryBatch: 2, maxPerPass: 2 }, clock);
      let ended = 0;
      let passes = 0;
      let drained!: () => void;
      const done = new Promise<void>((resolve) => (drained = resolve));
      const log = {
        info: (_msg: string, fields?: Record<string, unknown>) => {
          passes++;
          ended += Number(fields?.ended);
          if (ended === 5) drained();
        },
        warn: (msg: string) => {
          throw new Error(`unexpected warning: ${msg}`);
        },
      };
      // An hour between passes: only the start and the follow-ups of full passes can run here.
      const runner = startExpiry(lifecycle, 3600_000, log);
      try {
        await done;
      } finally {
        await runner.stop();
      }
      expect(passes).toBe(3);
      expect(
        (await store.findExpired({ idleBefore: minutesAgo(30), insertedBefore: minutesAgo(24 * 60), limit: 10 })).map((d) => d.id),
      ).toEqual([]);
    });

    it("ends each session exactly once when two replicas run passes at the same time", async () => {
      const n = 40;
      for (let i = 0; i < n; i++) await store.create(session(`c${String(i).padStart(2, "0")}`, minutesAgo(60)));
      const head = await store.headRevision();
      const b = await current().openAnother();
      try {
        const [pa, pb] = await Promise.all([
          new Lifecycle(store, { ...OPTIONS, expiryBatch: 8 }, clock).expire(),
          new Lifecycle(b, { ...OPTIONS, expiryBatch: 8 }, clock).expire(),
        ]);
        expect(pa.ended + pb.ended).toBe(n);
      } finally {
        await b.close();
      }
      // The change log: one "ended" update per session, none twice.
      const { changes } = await store.readChanges(head, 1000);
      const ended = changes.filter((c) => c.kind === "updated" && c.doc.metadata.status === "ended").map((c) => c.id);
      expect(ended).toHaveLength(n);
      expect(new Set(ended).size).toBe(n);
      expect(changes).toHaveLength(n);
    });
  });
}
