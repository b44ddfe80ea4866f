// Availability: ping, deadlines (StoreUnavailableError, nothing written) and close.

import { NotFoundError, StoreUnavailableError } from "../../../src/domain/errors";
import type { SessionPatch, SessionStore } from "../../../src/domain/store";
import { fullDoc, ids, rejection, type CurrentStore } from "./support";

export function availabilityTests(current: CurrentStore): void {
  let store: SessionStore;
  beforeEach(() => {
    store = current().store;
  });

  describe("ping, deadlines and close", () => {
    it("ping resolves", async () => {
      await expect(store.ping()).resolves.toBeUndefined();
      await expect(store.ping({ deadline: new Date(Date.now() + 10_000) })).resolves.toBeUndefined();
    });

    it("calls whose deadline has passed reject with StoreUnavailableError and write nothing", async () => {
      const { session } = await store.create(fullDoc("d-1"));
      const options = { deadline: new Date(Date.now() - 1000) };
      const patch: SessionPatch = { set: [{ path: ["os", "version"], value: "late" }], unset: [] };
      const errors = await Promise.all(
        [
          store.create(fullDoc("d-2"), options),
          store.get("d-1", options),
          store.update("d-1", patch, options),
          store.delete("d-1", options),
          store.list({ limit: 10 }, options),
          store.ping(options),
        ].map(rejection),
      );
      for (const err of errors) expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(await store.get("d-1")).toStrictEqual(session);
      expect(await rejection(store.get("d-2"))).toBeInstanceOf(NotFoundError);
    });

    it("calls within their deadline succeed", async () => {
      const options = { deadline: new Date(Date.now() + 10_000) };
      const { session } = await store.create(fullDoc("d-ok"), options);
      expect(await store.get("d-ok", options)).toStrictEqual(session);
      const updated = await store.update("d-ok", { set: [{ path: ["os", "version"], value: "x" }], unset: [] }, options);
      expect(ids(await store.list({ limit: 10 }, options))).toEqual(["d-ok"]);
      expect((await store.delete("d-ok", options)).revision).toBeGreaterThan(updated.revision);
    });

    it("rejects every call after close with StoreUnavailableError", async () => {
      await store.create(fullDoc("c-1"));
      await store.close();
      const errors = await Promise.all(
        [
          store.create(fullDoc("c-2")),
          store.get("c-1"),
          store.update("c-1", { set: [], unset: [] }),
          store.delete("c-1"),
          store.list({ limit: 10 }),
          store.ping(),
        ].map(rejection),
      );
      for (const err of errors) expect(err).toBeInstanceOf(StoreUnavailableError);
    });
  });
}
