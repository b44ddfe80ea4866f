// API keys (src/security/keys.ts): the AUTH_KEYS_FILE format and its validation, bearer
// authentication, scope authorization of every SessionService method, and re-reading the file
// when it changes on disk.

import * as crypto from "node:crypto";
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SessionService } from "../../gen/session/v1/session_service_pb";
import { createLogger } from "../../src/log";
import { watchFiles } from "../../src/security/file-watch";
import {
  authorize,
  isHealthMethod,
  isPublicMethod,
  KeysFileError,
  KeysWatcher,
  loadKeysFile,
  parseKeysFile,
  requiredScope,
  secretSha256,
  type ApiKey,
  type KeysReloadEvent,
} from "../../src/security/keys";

// timingSafeEqual wrapped in a counting jest.fn (the real comparison still runs), to check that
// authentication compares with every key: node:crypto's exports cannot be spied on otherwise.
jest.mock("node:crypto", () => {
  const actual = jest.requireActual<typeof import("node:crypto")>("node:crypto");
  return { ...actual, timingSafeEqual: jest.fn(actual.timingSafeEqual) };
});

const PATH = "/etc/session/keys.json";
const silent = createLogger("silent");

function keysJson(keys: unknown[]): string {
  return JSON.stringify({ keys });
}

const DASHBOARD = {
  id: "dashboard",
  sha256: secretSha256("dash-secret"),
  scopes: ["sessions.read", "sessions.watch"],
  rate_per_second: 50,
};
const BACKEND = { id: "backend", sha256: secretSha256("backend-secret"), scopes: ["sessions.read", "sessions.write"] };
const ADMIN = { id: "admin", sha256: secretSha256("admin-secret"), scopes: ["*"] };

function problemsOf(text: string): string {
  try {
    parseKeysFile(text, PATH);
  } catch (err) {
    expect(err).toBeInstanceOf(KeysFileError);
    expect((err as Error).message.startsWith(`AUTH_KEYS_FILE ${PATH}: `)).toBe(true);
    return (err as Error).message;
  }
  throw new Error("the file was accepted");
}

describe("keys file", () => {
  it("parses the documented shape", () => {
    const registry = parseKeysFile(keysJson([DASHBOARD, BACKEND]), PATH);
    expect(registry.keys.map((k) => k.id)).toEqual(["dashboard", "backend"]);
    const dash = registry.get("dashboard")!;
    expect([...dash.scopes]).toEqual(["sessions.read", "sessions.watch"]);
    expect(dash.ratePerSecond).toBe(50);
    expect(registry.get("backend")!.ratePerSecond).toBeUndefined();
  });

  it("accepts an empty key list (every call is then refused)", () => {
    const registry = parseKeysFile(keysJson([]), PATH);
    expect(registry.keys).toHaveLength(0);
    expect(registry.authenticate("Bearer anything")).toMatchObject({ ok: false, reason: "API_KEY_INVALID" });
  });

  it.each([
    ["not JSON", "{keys: []}", "not valid JSON"],
    ["not an object", "[]", 'must be a JSON object {"keys": [...]}'],
    ["no keys array", "{}", '"keys" must be an array'],
    ["an unknown top-level field", JSON.stringify({ keys: [], extra: 1 }), 'unknown field "extra"'],
    ["an unknown key field", keysJson([{ ...DASHBOARD, secret: "x" }]), 'keys[0]: unknown field "secret"'],
    ["a key that is not an object", keysJson(["dashboard"]), "keys[0] must be an object"],
    ["a missing id", keysJson([{ ...DASHBOARD, id: undefined }]), "keys[0].id must be"],
    ["an id with spaces", keysJson([{ ...DASHBOARD, id: "my key" }]), "keys[0].id must be"],
    ["a short hash", keysJson([{ ...DASHBOARD, sha256: "abc" }]), "keys[0].sha256 must be the SHA-256 of the secret as 64 hex characters"],
    ["a non-hex hash", keysJson([{ ...DASHBOARD, sha256: "g".repeat(64) }]), "keys[0].sha256 must be the SHA-256"],
    ["an upper-case hash", keysJson([{ ...DASHBOARD, sha256: DASHBOARD.sha256.toUpperCase() }]), "keys[0].sha256 must be lower-case hex"],
    [
      "an unknown scope",
      keysJson([{ ...DASHBOARD, scopes: ["sessions.read", "sessions.delete"] }]),
      'keys[0].scopes: unknown scope "sessions.delete"',
    ],
    ["no scopes", keysJson([{ ...DASHBOARD, scopes: [] }]), "keys[0].scopes must be a non-empty array"],
    ["a repeated scope", keysJson([{ ...DASHBOARD, scopes: ["*", "*"] }]), 'keys[0].scopes lists "*" twice'],
    ["a zero rate", keysJson([{ ...DASHBOARD, rate_per_second: 0 }]), "keys[0].rate_per_second must be a number above 0"],
    ["a string rate", keysJson([{ ...DASHBOARD, rate_per_second: "50" }]), "keys[0].rate_per_second must be a number above 0"],
    ["a duplicate id", keysJson([DASHBOARD, { ...BACKEND, id: "dashboard" }]), 'keys[1].id "dashboard" is also the id of keys[0]'],
    ["a duplicate hash", keysJson([DASHBOARD, { ...BACKEND, sha256: DASHBOARD.sha256 }]), "keys[1].sha256 is also the sha256 of keys[0]"],
  ])("rejects %s, naming the file and the problem", (_name, text, problem) => {
    expect(problemsOf(text)).toContain(problem);
  });

  it("lists every problem of a file at once", () => {
    const message = problemsOf(
      keysJson([
        { ...DASHBOARD, scopes: ["nope"] },
        { ...BACKEND, sha256: "xyz" },
      ]),
    );
    expect(message).toContain('keys[0].scopes: unknown scope "nope"');
    expect(message).toContain("keys[1].sha256 must be");
  });

  it("names the file when it cannot be read", () => {
    expect(() => loadKeysFile("/nonexistent/keys.json")).toThrow("AUTH_KEYS_FILE /nonexistent/keys.json: cannot read it (ENOENT)");
  });
});

describe("authenticate", () => {
  const registry = parseKeysFile(keysJson([DASHBOARD, BACKEND, ADMIN]), PATH);

  it("finds the key of a bearer secret", () => {
    expect(registry.authenticate("Bearer backend-secret")).toMatchObject({ ok: true, key: { id: "backend" } });
    expect(registry.authenticate("bearer admin-secret")).toMatchObject({ ok: true, key: { id: "admin" } });
    expect(registry.authenticate(["Bearer dash-secret"])).toMatchObject({ ok: true, key: { id: "dashboard" } });
  });

  it("answers API_KEY_MISSING without a value", () => {
    for (const value of [undefined, "", "  ", []]) {
      expect(registry.authenticate(value)).toMatchObject({ ok: false, code: "UNAUTHENTICATED", reason: "API_KEY_MISSING" });
    }
  });

  it("answers API_KEY_INVALID for an unknown secret, another scheme or several values, never echoing the secret", () => {
    for (const value of [
      "Bearer wrong-secret",
      "Basic YWRtaW46YWRtaW4=",
      "Bearer",
      "admin-secret",
      ["Bearer admin-secret", "Bearer dash-secret"],
    ]) {
      const result = registry.authenticate(value);
      expect(result).toMatchObject({ ok: false, code: "UNAUTHENTICATED", reason: "API_KEY_INVALID" });
      expect(JSON.stringify(result)).not.toContain('secret"');
      expect(JSON.stringify(result)).not.toContain("admin-secret");
    }
  });

  it("compares the digest with every key whichever key matches (no early exit to time)", () => {
    const spy = crypto.timingSafeEqual as jest.MockedFunction<typeof crypto.timingSafeEqual>;
    for (const secret of ["dash-secret", "admin-secret", "unknown"]) {
      spy.mockClear();
      const result = registry.authenticate(`Bearer ${secret}`);
      expect(result.ok).toBe(secret !== "unknown");
      expect(spy).toHaveBeenCalledTimes(3);
    }
  });
});

describe("authorize", () => {
  const key = (scopes: string[]): ApiKey => parseKeysFile(keysJson([{ ...DASHBOARD, scopes }]), PATH).get("dashboard")!;
  const svc = "/session.v1.SessionService/";

  it.each([
    ["GetSession", "sessions.read"],
    ["ListSessions", "sessions.read"],
    ["GetSessionStats", "sessions.read"],
    ["WatchSessionStats", "sessions.read"],
    ["WatchSessions", "sessions.watch"],
    ["CreateSession", "sessions.write"],
    ["UpdateSession", "sessions.write"],
    ["TouchSession", "sessions.write"],
    ["DeleteSession", "sessions.write"],
    ["MergeProfiles", "profiles.merge"],
    ["EraseProfile", "profiles.erase"],
  ])("%s needs %s", (method, scope) => {
    expect(requiredScope(svc + method)).toBe(scope);
    expect(authorize(key([scope]), svc + method)).toEqual({ ok: true });
    expect(authorize(key(["*"]), svc + method)).toEqual({ ok: true });
    const other = ["sessions.read", "sessions.watch", "sessions.write", "profiles.merge", "profiles.erase"].filter((s) => s !== scope);
    expect(authorize(key(other), svc + method)).toEqual({
      ok: false,
      code: "PERMISSION_DENIED",
      reason: "SCOPE_MISSING",
      message: `API key "dashboard" lacks the scope "${scope}" needed by session.v1.SessionService/${method}`,
      metadata: { scope, method: `session.v1.SessionService/${method}`, key_id: "dashboard" },
    });
  });

  it("has a scope for every method of the service (a new method without one fails here)", () => {
    const missing = SessionService.methods
      .map((m) => `${SessionService.typeName}/${m.name}`)
      .filter((path) => requiredScope(path) === undefined);
    expect(missing).toEqual([]);
  });

  it("denies a method not in the table to every key, even *", () => {
    expect(authorize(key(["*"]), `${svc}PurgeEverything`)).toMatchObject({ ok: false, code: "PERMISSION_DENIED", reason: "SCOPE_MISSING" });
    expect(authorize(key(["*"]), "/other.Service/GetSession")).toMatchObject({ ok: false });
  });

  it("accepts the method with or without its leading slash", () => {
    expect(authorize(key(["sessions.read"]), "session.v1.SessionService/GetSession")).toEqual({ ok: true });
  });

  it("keeps health open, and reflection open unless asked to require a key", () => {
    expect(isPublicMethod("/grpc.health.v1.Health/Check")).toBe(true);
    expect(isPublicMethod("/grpc.health.v1.Health/Watch", { reflectionRequiresKey: true })).toBe(true);
    expect(isPublicMethod("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")).toBe(true);
    expect(isPublicMethod("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")).toBe(true);
    expect(isPublicMethod("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", { reflectionRequiresKey: true })).toBe(false);
    expect(isPublicMethod(`${svc}GetSession`)).toBe(false);
    expect(isPublicMethod("/grpc.health.v1.HealthX/Check")).toBe(false);
    expect(isHealthMethod("grpc.health.v1.Health/Check")).toBe(true);
    expect(isHealthMethod("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")).toBe(false);
    // Any key may use reflection when it requires one.
    expect(authorize(key(["sessions.read"]), "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")).toEqual({ ok: true });
  });
});

describe("KeysWatcher", () => {
  let dir: string;
  let path: string;
  let watcher: KeysWatcher | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "session-keys-"));
    path = join(dir, "keys.json");
  });
  afterEach(() => {
    watcher?.close();
    watcher = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  const nextReload = (w: KeysWatcher): Promise<KeysReloadEvent> =>
    new Promise((resolve) => {
      const off = w.onReload((e) => {
        off();
        resolve(e);
      });
    });
  const nextReject = (w: KeysWatcher): Promise<KeysFileError> =>
    new Promise((resolve) => {
      const off = w.onReject((e) => {
        off();
        resolve(e);
      });
    });

  it("refuses to open a malformed file, naming it", () => {
    writeFileSync(path, keysJson([{ ...DASHBOARD, scopes: ["everything"] }]));
    expect(() => KeysWatcher.open(path, { log: silent })).toThrow(`AUTH_KEYS_FILE ${path}: keys[0].scopes: unknown scope "everything"`);
  });

  it("re-reads a changed file: added, revoked, re-keyed and re-scoped keys", async () => {
    writeFileSync(path, keysJson([DASHBOARD, BACKEND, ADMIN]));
    watcher = KeysWatcher.open(path, { log: silent, debounceMs: 20, pollMs: 100 }).start();
    expect(watcher.current.authenticate("Bearer backend-secret").ok).toBe(true);

    const reloaded = nextReload(watcher);
    // backend removed, admin gets a new secret, dashboard loses sessions.watch, ops added.
    writeFileSync(
      path,
      keysJson([
        { ...DASHBOARD, scopes: ["sessions.read"] },
        { ...ADMIN, sha256: secretSha256("new-admin-secret") },
        { id: "ops", sha256: secretSha256("ops-secret"), scopes: ["sessions.read"] },
      ]),
    );
    const event = await reloaded;
    expect([...event.revoked].sort()).toEqual(["admin", "backend"]);
    expect([...event.changed]).toEqual(["dashboard"]);
    expect(watcher.current).toBe(event.registry);
    expect(watcher.current.authenticate("Bearer backend-secret")).toMatchObject({ ok: false, reason: "API_KEY_INVALID" });
    expect(watcher.current.authenticate("Bearer admin-secret")).toMatchObject({ ok: false, reason: "API_KEY_INVALID" });
    expect(watcher.current.authenticate("Bearer new-admin-secret")).toMatchObject({ ok: true, key: { id: "admin" } });
    expect(watcher.current.authenticate("Bearer ops-secret")).toMatchObject({ ok: true, key: { id: "ops" } });
    const dash = watcher.current.authenticate("Bearer dash-secret");
    expect(dash.ok && authorize(dash.key, "/session.v1.SessionService/WatchSessions")).toMatchObject({
      ok: false,
      reason: "SCOPE_MISSING",
    });
  });

  it("follows a file replaced by a rename (editors, Kubernetes secrets)", async () => {
    writeFileSync(path, keysJson([DASHBOARD]));
    watcher = KeysWatcher.open(path, { log: silent, debounceMs: 20, pollMs: 100 }).start();
    const reloaded = nextReload(watcher);
    writeFileSync(join(dir, "keys.json.tmp"), keysJson([DASHBOARD, BACKEND]));
    renameSync(join(dir, "keys.json.tmp"), path);
    await reloaded;
    expect(watcher.current.authenticate("Bearer backend-secret").ok).toBe(true);

    // The watch still works after the rename: a further change is seen too.
    const again = nextReload(watcher);
    writeFileSync(path, keysJson([BACKEND]));
    expect([...(await again).revoked]).toEqual(["dashboard"]);
  });

  it("keeps the previous keys when the changed file is malformed, and logs an error", async () => {
    const lines: string[] = [];
    writeFileSync(path, keysJson([DASHBOARD]));
    watcher = KeysWatcher.open(path, { log: createLogger("info", (l) => lines.push(l)), debounceMs: 20, pollMs: 100 }).start();

    const rejected = nextReject(watcher);
    writeFileSync(path, '{"keys": [{"id": "dashboard"');
    const err = await rejected;
    expect(err.message).toContain(`AUTH_KEYS_FILE ${path}: not valid JSON`);
    expect(watcher.current.authenticate("Bearer dash-secret")).toMatchObject({ ok: true, key: { id: "dashboard" } });
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.level === "error");
    expect(logged).toMatchObject({ msg: "API keys file rejected; keeping the previous keys", file: path });

    // Fixed again: the fix is picked up.
    const reloaded = nextReload(watcher);
    writeFileSync(path, keysJson([BACKEND]));
    expect([...(await reloaded).revoked]).toEqual(["dashboard"]);
  });

  it("reload() reports no change for identical content", async () => {
    writeFileSync(path, keysJson([DASHBOARD]));
    watcher = KeysWatcher.open(path, { log: silent });
    expect(await watcher.reload()).toBe(false);
    writeFileSync(path, keysJson([DASHBOARD, ADMIN]));
    expect(await watcher.reload()).toBe(true);
    expect(watcher.current.keys).toHaveLength(2);
  });
});

describe("watchFiles", () => {
  it("sees a change by its stat poll where fs.watch cannot watch (here: the directory appears later)", async () => {
    const root = mkdtempSync(join(tmpdir(), "session-watch-"));
    const path = join(root, "later", "keys.json");
    let calls = 0;
    let changed!: () => void;
    const seen = new Promise<void>((resolve) => (changed = resolve));
    const watch = watchFiles(
      [path],
      () => {
        calls++;
        changed();
      },
      { debounceMs: 10, pollMs: 50 },
    );
    try {
      mkdirSync(join(root, "later"));
      writeFileSync(path, "{}");
      await seen;
      expect(calls).toBe(1);
    } finally {
      watch.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
