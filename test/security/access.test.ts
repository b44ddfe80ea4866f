// The access decision of a call (src/security/access.ts): the order of the address limit,
// public methods, authentication, scope and the key's limit. A fake clock drives the limits.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../../src/log";
import { checkAccess, KeyedCalls, type AccessPolicy } from "../../src/security/access";
import { KeysWatcher, parseKeysFile, secretSha256, type AuthFailure, type KeyRegistry } from "../../src/security/keys";
import { RateLimiter } from "../../src/security/rate-limit";

const registry: KeyRegistry = parseKeysFile(
  JSON.stringify({
    keys: [
      { id: "dashboard", sha256: secretSha256("dash-secret"), scopes: ["sessions.read", "sessions.watch"], rate_per_second: 2 },
      { id: "admin", sha256: secretSha256("admin-secret"), scopes: ["*"] },
    ],
  }),
  "keys.json",
);

const GET = "/session.v1.SessionService/GetSession";
const DELETE = "/session.v1.SessionService/DeleteSession";
const HEALTH = "/grpc.health.v1.Health/Check";
const REFLECTION = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";

function policy(extra: Partial<AccessPolicy> = {}): AccessPolicy {
  return { keys: () => registry, limiter: new RateLimiter({ now: () => 0 }), ...extra };
}
const call = (method: string, authorization?: string, address = "10.0.0.1") => ({ method, authorization, address });

describe("checkAccess", () => {
  it("opens every method when there is no keys file", () => {
    const p = policy({ keys: () => undefined });
    expect(checkAccess(p, call(DELETE))).toEqual({ ok: true, key: undefined });
  });

  it("answers UNAUTHENTICATED API_KEY_MISSING / API_KEY_INVALID", () => {
    expect(checkAccess(policy(), call(GET))).toMatchObject({ ok: false, code: "UNAUTHENTICATED", reason: "API_KEY_MISSING" });
    expect(checkAccess(policy(), call(GET, "Bearer guess"))).toMatchObject({
      ok: false,
      code: "UNAUTHENTICATED",
      reason: "API_KEY_INVALID",
    });
  });

  it("answers PERMISSION_DENIED SCOPE_MISSING naming the scope, and allows a method in scope", () => {
    expect(checkAccess(policy(), call(DELETE, "Bearer dash-secret"))).toMatchObject({
      ok: false,
      code: "PERMISSION_DENIED",
      reason: "SCOPE_MISSING",
      metadata: { scope: "sessions.write" },
    });
    expect(checkAccess(policy(), call(GET, "Bearer dash-secret"))).toMatchObject({ ok: true, key: { id: "dashboard" } });
    expect(checkAccess(policy(), call(DELETE, "Bearer admin-secret"))).toMatchObject({ ok: true, key: { id: "admin" } });
  });

  it("keeps health open, and reflection open unless it requires a key", () => {
    expect(checkAccess(policy(), call(HEALTH))).toEqual({ ok: true, key: undefined });
    expect(checkAccess(policy(), call(REFLECTION))).toEqual({ ok: true, key: undefined });
    const strict = policy({ reflectionRequiresKey: true });
    expect(checkAccess(strict, call(REFLECTION))).toMatchObject({ ok: false, reason: "API_KEY_MISSING" });
    expect(checkAccess(strict, call(REFLECTION, "Bearer dash-secret"))).toMatchObject({ ok: true, key: { id: "dashboard" } });
  });

  it("limits a key after authorization: calls refused for scope spend none of its tokens", () => {
    const p = policy();
    for (let i = 0; i < 5; i++) expect(checkAccess(p, call(DELETE, "Bearer dash-secret")).ok).toBe(false);
    expect(checkAccess(p, call(GET, "Bearer dash-secret")).ok).toBe(true);
    expect(checkAccess(p, call(GET, "Bearer dash-secret")).ok).toBe(true);
    expect(checkAccess(p, call(GET, "Bearer dash-secret"))).toMatchObject({ ok: false, reason: "KEY_RATE_LIMITED", retryAfterMs: 500 });
    // A key without rate_per_second is not limited.
    for (let i = 0; i < 100; i++) expect(checkAccess(p, call(GET, "Bearer admin-secret")).ok).toBe(true);
  });

  it("limits an address before authentication, so that guessing keys is limited too", () => {
    const p = policy({ limiter: new RateLimiter({ perAddressRate: 3, now: () => 0 }) });
    for (let i = 0; i < 3; i++) expect(checkAccess(p, call(GET, `Bearer guess-${i}`))).toMatchObject({ reason: "API_KEY_INVALID" });
    expect(checkAccess(p, call(GET, "Bearer admin-secret"))).toMatchObject({ ok: false, reason: "ADDRESS_RATE_LIMITED" });
    expect(checkAccess(p, call(REFLECTION))).toMatchObject({ ok: false, reason: "ADDRESS_RATE_LIMITED" });
    // Health is never limited: a load balancer's probes must not take the replica out of service.
    for (let i = 0; i < 100; i++) expect(checkAccess(p, call(HEALTH))).toEqual({ ok: true, key: undefined });
    expect(checkAccess(p, call(GET, "Bearer admin-secret", "10.0.0.2"))).toMatchObject({ ok: true, key: { id: "admin" } });
  });

  it("sees a reloaded registry at the next call", () => {
    let current = registry;
    const p = policy({ keys: () => current });
    expect(checkAccess(p, call(GET, "Bearer admin-secret")).ok).toBe(true);
    current = parseKeysFile(JSON.stringify({ keys: [] }), "keys.json");
    expect(checkAccess(p, call(GET, "Bearer admin-secret"))).toMatchObject({ ok: false, reason: "API_KEY_INVALID" });
  });
});

describe("KeyedCalls", () => {
  const WATCH = "/session.v1.SessionService/WatchSessions";
  const keysOf = (keys: unknown[]) => parseKeysFile(JSON.stringify({ keys }), "keys.json");
  const dash = { id: "dashboard", sha256: secretSha256("dash-secret"), scopes: ["sessions.read", "sessions.watch"] };
  const ops = { id: "ops", sha256: secretSha256("ops-secret"), scopes: ["*"] };

  it("ends the calls of revoked keys and of keys that lost the scope, and only those", () => {
    const before = keysOf([dash, ops]);
    const calls = new KeyedCalls();
    const ended: Array<[string, string]> = [];
    const open = (id: string, tag: string) => calls.track(before.get(id)!, WATCH, (f) => ended.push([tag, `${f.code} ${f.reason}`]));
    open("dashboard", "dash-1");
    open("dashboard", "dash-2");
    open("ops", "ops-1");
    const finished = open("ops", "ops-2");
    finished(); // ended on its own before the reload
    expect(calls.size).toBe(3);

    // dashboard loses sessions.watch; ops is revoked.
    const after = keysOf([{ ...dash, scopes: ["sessions.read"] }]);
    expect(calls.apply({ registry: after, revoked: new Set(["ops"]), changed: new Set(["dashboard"]) })).toBe(3);
    expect(ended.sort()).toEqual([
      ["dash-1", "PERMISSION_DENIED SCOPE_MISSING"],
      ["dash-2", "PERMISSION_DENIED SCOPE_MISSING"],
      ["ops-1", "UNAUTHENTICATED API_KEY_INVALID"],
    ]);
    expect(calls.size).toBe(0);
  });

  it("keeps the calls a changed key still allows", () => {
    const before = keysOf([dash]);
    const calls = new KeyedCalls();
    const end = jest.fn();
    calls.track(before.get("dashboard")!, WATCH, end);
    const after = keysOf([{ ...dash, scopes: ["sessions.watch"], rate_per_second: 5 }]);
    expect(calls.apply({ registry: after, revoked: new Set(), changed: new Set(["dashboard"]) })).toBe(0);
    expect(end).not.toHaveBeenCalled();
    expect(calls.size).toBe(1);
  });

  it("ends a revoked key's open call when the keys file changes on disk", async () => {
    const dir = mkdtempSync(join(tmpdir(), "session-access-"));
    const path = join(dir, "keys.json");
    writeFileSync(path, JSON.stringify({ keys: [dash, ops] }));
    const keys = KeysWatcher.open(path, { log: createLogger("silent"), debounceMs: 20, pollMs: 100 }).start();
    try {
      const calls = new KeyedCalls();
      keys.onReload((e) => calls.apply(e));
      const auth = keys.current.authenticate("Bearer ops-secret");
      if (!auth.ok) throw new Error("ops must authenticate");
      const ended = new Promise<AuthFailure>((resolve) => calls.track(auth.key, WATCH, resolve));
      writeFileSync(path, JSON.stringify({ keys: [dash] }));
      expect(await ended).toEqual({
        ok: false,
        code: "UNAUTHENTICATED",
        reason: "API_KEY_INVALID",
        message: 'API key "ops" was revoked',
        metadata: { key_id: "ops" },
      });
    } finally {
      keys.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
