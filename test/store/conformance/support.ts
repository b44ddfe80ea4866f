// Shared by the conformance suite's capability files and the adapters' own tests: the store
// under test, fixed instants, a fully populated document, and small helpers.
//
// Ids in listings are ASCII, so JavaScript's string order equals the byte order both stores sort
// by.

import type { SessionDoc } from "../../../src/domain/session";
import type { SessionStore } from "../../../src/domain/store";

/** What an adapter's factory gives for one test. */
export interface StoreUnderTest {
  /** A fresh, empty store. */
  store: SessionStore;
  /**
   * Another instance of the store on the same database or file, as another service process
   * would open it. The test that opens one closes it.
   */
  openAnother(): Promise<SessionStore>;
  /** Releases and removes everything; must also work when the test has already closed `store`. */
  cleanup(): Promise<void>;
  /**
   * Every record the store keeps (rows of every table, documents of every collection) as JSON
   * text, read past the port: to prove that erased data is in none of them.
   */
  dump(): Promise<string>;
}

/** The store under test of the running test (the suite's beforeEach sets it). */
export type CurrentStore = () => StoreUnderTest;

const BASE_MS = Date.UTC(2024, 4, 30, 7, 44, 23, 243);
/** A fixed instant `minutes` after the base time. */
export const at = (minutes: number): Date => new Date(BASE_MS + minutes * 60_000);

interface DocFields {
  profileId?: string | null;
  status?: string;
  channel?: string;
  /** traffic.channel_group; null: a session without traffic (stored before it was classified). */
  channelGroup?: string | null;
}

/** A document with every field set: Dates, nulls, nested free-form objects, unicode, numbers. */
export function fullDoc(id: string, insert: Date = at(0), fields: DocFields = {}): SessionDoc {
  const profileId = fields.profileId === undefined ? "profile-1" : fields.profileId;
  return {
    id,
    metadata: {
      time: {
        insert,
        create: new Date(insert.getTime() - 1500),
        update: new Date(insert.getTime() + 2750),
        timestamp: insert.getTime() / 1000,
        duration: 2,
        weekday: insert.getUTCDay(),
      },
      channel: fields.channel ?? "web",
      aux: { source: "sdk", nested: { depth: [1, { two: null }] } },
      status: fields.status ?? "active",
    },
    profile: profileId === null ? null : { id: profileId, primary_id: null, metadata: { tags: ["a", "b"], score: 0.25 } },
    device: {
      name: "iPhone",
      brand: "Apple",
      model: "iPhone 15",
      type: "smartphone",
      touch: true,
      ip: "2001:db8::1",
      resolution: "1179x2556",
      geo: {
        country: { name: "Polska", code: "PL" },
        city: "Kraków",
        county: null,
        postal: "30-001",
        latitude: "50.0614",
        longitude: "19.9366",
        location: null,
      },
      color_depth: "24",
      orientation: null,
    },
    os: { name: "iOS", version: "17.4.1" },
    app: { type: "browser", name: "Mobile Safari", version: "17.4", language: "pl-PL", bot: false, resolution: null },
    utm: { source: "newsletter", medium: "email", campaign: "wiosna-2024", term: null, content: "ünïcödé" },
    context: {
      page: { url: "https://example.com/zażółć?q=🙂&x=1", title: "Zażółć gęślą jaźń — 日本語 👩‍💻", referrer: null },
      screen: [1179, 2556],
      flags: { a: true, b: false },
      empty: {},
      emptyList: [],
      numbers: { int: 42, negative: -7, float: 3.141592653589793, maxSafe: 9007199254740991, tiny: 5e-324, huge: 1.5e300 },
    },
    properties: { 日本語: "テキスト", emoji: "🙂", rtl: "مرحبا", list: [{ a: 1 }, { b: [null, "x", 0.5] }], zero: 0 },
    traits: { nested: { deeper: { deepest: { value: "ok", list: [[1, 2], [3]] } } } },
    aux: { nothing: null, quote: "\"'\\", newline: "a\nb\tc" },
    revision: 0,
    session_index: 0,
    previous_session_id: null,
    activity: { page_views: 3, entry_page: "https://example.com/zażółć", exit_page: "https://example.com/koszyk", end_reason: "" },
    merged_from_profile_ids: [],
    traffic:
      fields.channelGroup === null
        ? null
        : {
            referrer: "https://www.google.com/search?q=zażółć",
            referrer_host: "google.com",
            source: "google",
            medium: "organic",
            channel_group: fields.channelGroup ?? "Organic Search",
            click_id: null,
          },
  };
}

/** The error `promise` rejects with; fails the test when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to reject, but it resolved");
}

export const ids = (docs: SessionDoc[]): string[] => docs.map((d) => d.id);
