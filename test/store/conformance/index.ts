// The store port's contract (src/domain/store.ts) as tests. Every adapter's test file calls
// runStoreConformance once; an adapter that fails here is wrong, whatever the other adapters do.
//
// The suite uses only the port's API (the expiry passes also run the domain's Lifecycle over it).
// `factory` gives a fresh, empty store per test (see StoreUnderTest); each capability file
// registers its describe blocks and reads the store of the running test through `current`.

import { availabilityTests } from "./availability";
import { changeLogTests } from "./changes";
import { crudTests } from "./crud";
import { erasureTests } from "./erasure";
import { expiryTests } from "./expiry";
import { listTests } from "./list";
import { retentionTests } from "./retention";
import { revisionTests } from "./revisions";
import { statsTests } from "./stats";
import { statsWritesTests } from "./stats-writes";
import type { StoreUnderTest } from "./support";
import { visitTests } from "./visits";

export { fullDoc, rejection, type StoreUnderTest } from "./support";

export function runStoreConformance(name: string, factory: () => Promise<StoreUnderTest>): void {
  describe(`SessionStore conformance: ${name}`, () => {
    let underTest: StoreUnderTest;
    const current = () => underTest;

    beforeEach(async () => {
      underTest = await factory();
    });

    afterEach(async () => {
      await underTest.cleanup();
    });

    crudTests(current);
    revisionTests(current);
    listTests(current);
    visitTests(current);
    expiryTests(current);
    retentionTests(current);
    statsTests(current);
    statsWritesTests(current);
    changeLogTests(current);
    erasureTests(current);
    availabilityTests(current);
  });
}
