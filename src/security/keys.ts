// API keys with scopes: the AUTH_KEYS_FILE registry, authentication of a bearer
// secret, authorization of a method by scope, and re-reading the file when it changes.
//
// The file holds only the SHA-256 of each secret, never the secret:
//   {"keys": [{"id": "dashboard", "sha256": "<64 lower-case hex>", "scopes": ["sessions.read"], "rate_per_second": 50}]}
// This module knows nothing of gRPC or Connect: it answers with plain results carrying the gRPC
// code, the google.rpc.ErrorInfo reason, a message and metadata, which the RPC edge turns into
// its typed errors (src/domain/errors.ts, src/rpc/status.ts).

import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import type { Logger } from "../log";
import { watchFiles, type FileWatch } from "./file-watch";

export const SCOPES = ["sessions.read", "sessions.watch", "sessions.write", "profiles.merge", "profiles.erase", "*"] as const;
export type Scope = (typeof SCOPES)[number];

/** The scope each method of session.v1.SessionService needs. A method not listed is denied to every key. */
export const METHOD_SCOPES: Readonly<Record<string, Scope>> = {
  "session.v1.SessionService/GetSession": "sessions.read",
  "session.v1.SessionService/ListSessions": "sessions.read",
  "session.v1.SessionService/GetSessionStats": "sessions.read",
  "session.v1.SessionService/WatchSessionStats": "sessions.read",
  "session.v1.SessionService/WatchSessions": "sessions.watch",
  "session.v1.SessionService/CreateSession": "sessions.write",
  "session.v1.SessionService/UpdateSession": "sessions.write",
  "session.v1.SessionService/TouchSession": "sessions.write",
  "session.v1.SessionService/DeleteSession": "sessions.write",
  "session.v1.SessionService/MergeProfiles": "profiles.merge",
  "session.v1.SessionService/EraseProfile": "profiles.erase",
};

// Health stays open so that load balancers and orchestrators need no secret; reflection only
// describes the API (no data), so it is open unless the operator asks for a key.
const HEALTH_SERVICES = new Set(["grpc.health.v1.Health"]);
const REFLECTION_SERVICES = new Set(["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]);

export interface ApiKey {
  readonly id: string;
  /** SHA-256 of the secret, lower-case hex, as in the file (tells a changed secret on reload). */
  readonly sha256: string;
  readonly scopes: ReadonlySet<Scope>;
  /** Token bucket rate of this key (rate-limit.ts); undefined: not limited. */
  readonly ratePerSecond: number | undefined;
}

export type AuthFailureReason = "API_KEY_MISSING" | "API_KEY_INVALID" | "SCOPE_MISSING";

/** Why a call is refused: `code` is the gRPC status, `reason` the google.rpc.ErrorInfo reason. */
export interface AuthFailure {
  ok: false;
  code: "UNAUTHENTICATED" | "PERMISSION_DENIED";
  reason: AuthFailureReason;
  message: string;
  /** google.rpc.ErrorInfo metadata; never holds a secret. */
  metadata: Record<string, string>;
}

export type AuthenticateResult = { ok: true; key: ApiKey } | AuthFailure;
export type AuthorizeResult = { ok: true } | AuthFailure;

/** A malformed keys file. The message names the file and every problem found. */
export class KeysFileError extends Error {
  constructor(
    readonly path: string,
    readonly problems: string[],
  ) {
    super(`AUTH_KEYS_FILE ${path}: ${problems.join("; ")}`);
    this.name = "KeysFileError";
  }
}

/** "/pkg.Service/Method" (gRPC path) or "pkg.Service/Method" → "pkg.Service/Method". */
function normalizeMethod(method: string): string {
  return method.startsWith("/") ? method.slice(1) : method;
}

function serviceOf(method: string): string {
  const m = normalizeMethod(method);
  const slash = m.indexOf("/");
  return slash < 0 ? m : m.slice(0, slash);
}

/** Whether `method` belongs to the health service (open, and exempt from rate limits). */
export function isHealthMethod(method: string): boolean {
  return HEALTH_SERVICES.has(serviceOf(method));
}

/**
 * Whether `method` needs no API key: health always, reflection unless `reflectionRequiresKey`.
 * Every other method needs a key, including ones this module has never heard of.
 */
export function isPublicMethod(method: string, options: { reflectionRequiresKey?: boolean } = {}): boolean {
  const service = serviceOf(method);
  if (HEALTH_SERVICES.has(service)) return true;
  return REFLECTION_SERVICES.has(service) && !options.reflectionRequiresKey;
}

/** The scope `method` needs, or undefined for a method missing from the table (denied). */
export function requiredScope(method: string): Scope | undefined {
  return METHOD_SCOPES[normalizeMethod(method)];
}

function sha256(data: string): Buffer {
  return createHash("sha256").update(data, "utf8").digest();
}

/** Lower-case hex SHA-256 of a secret: the value to write in the keys file. */
export function secretSha256(secret: string): string {
  return sha256(secret).toString("hex");
}

interface StoredKey {
  key: ApiKey;
  digest: Buffer;
}

const missing = (message: string): AuthFailure => ({
  ok: false,
  code: "UNAUTHENTICATED",
  reason: "API_KEY_MISSING",
  message,
  metadata: {},
});
const invalid = (message: string): AuthFailure => ({
  ok: false,
  code: "UNAUTHENTICATED",
  reason: "API_KEY_INVALID",
  message,
  metadata: {},
});

/** The keys of one version of the file. Immutable: a reload makes a new registry. */
export class KeyRegistry {
  private readonly stored: StoredKey[];
  private readonly byId: Map<string, ApiKey>;

  constructor(keys: ApiKey[]) {
    this.stored = keys.map((key) => ({ key, digest: Buffer.from(key.sha256, "hex") }));
    this.byId = new Map(keys.map((k) => [k.id, k]));
  }

  get keys(): readonly ApiKey[] {
    return this.stored.map((s) => s.key);
  }

  get(id: string): ApiKey | undefined {
    return this.byId.get(id);
  }

  /**
   * Authenticates the value of an `authorization` header or metadata entry ("Bearer <secret>";
   * the scheme is case-insensitive as in RFC 9110). Several values (repeated gRPC metadata) are
   * refused rather than guessed between.
   *
   * Constant time: the presented secret is hashed and its digest compared with every key's
   * digest with timingSafeEqual, without stopping at a match, so the time taken does not depend
   * on which key (if any) matched nor on how many leading bytes agree.
   */
  authenticate(authorization: string | readonly string[] | undefined): AuthenticateResult {
    let value: string | undefined;
    if (Array.isArray(authorization)) {
      if (authorization.length > 1) return invalid("send exactly one authorization value");
      value = authorization[0];
    } else {
      value = authorization as string | undefined;
    }
    if (value === undefined || value.trim() === "") {
      return missing("this method requires an API key: send 'authorization: Bearer <secret>'");
    }
    const match = /^\s*bearer\s+(\S+)\s*$/i.exec(value);
    if (!match) return invalid("the authorization value must be 'Bearer <secret>'");
    const digest = sha256(match[1]);
    let found: ApiKey | undefined;
    for (const s of this.stored) {
      // Both are 32-byte digests, so timingSafeEqual never throws on a length mismatch.
      if (timingSafeEqual(digest, s.digest) && found === undefined) found = s.key;
    }
    return found ? { ok: true, key: found } : invalid("the API key is not valid");
  }
}

/**
 * Whether `key` may call `method` ("/session.v1.SessionService/GetSession" or without the
 * leading slash). `*` grants every method in the table; a method not in the table is denied to
 * every key (a method added to the service without a scope fails closed, and its test says so).
 * Reflection methods are allowed to any key (asked only when reflection requires a key).
 */
export function authorize(key: ApiKey, method: string): AuthorizeResult {
  const name = normalizeMethod(method);
  if (REFLECTION_SERVICES.has(serviceOf(name))) return { ok: true };
  const scope = requiredScope(name);
  if (scope === undefined) {
    return {
      ok: false,
      code: "PERMISSION_DENIED",
      reason: "SCOPE_MISSING",
      message: `no scope grants ${name}`,
      metadata: { method: name, key_id: key.id },
    };
  }
  if (key.scopes.has("*") || key.scopes.has(scope)) return { ok: true };
  return {
    ok: false,
    code: "PERMISSION_DENIED",
    reason: "SCOPE_MISSING",
    message: `API key "${key.id}" lacks the scope "${scope}" needed by ${name}`,
    metadata: { scope, method: name, key_id: key.id },
  };
}

const KEY_FIELDS = new Set(["id", "sha256", "scopes", "rate_per_second"]);
// Ids appear in logs and the audit log: a plain, short charset keeps them unambiguous there.
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const SCOPE_SET = new Set<string>(SCOPES);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Parses and validates the text of a keys file; throws KeysFileError listing every problem. */
export function parseKeysFile(text: string, path: string): KeyRegistry {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new KeysFileError(path, [`not valid JSON (${(err as Error).message})`]);
  }
  if (!isObject(doc)) throw new KeysFileError(path, ['must be a JSON object {"keys": [...]}']);
  const problems: string[] = [];
  for (const field of Object.keys(doc)) if (field !== "keys") problems.push(`unknown field "${field}" (only "keys" is allowed)`);
  if (!Array.isArray(doc.keys)) {
    problems.push('"keys" must be an array');
    throw new KeysFileError(path, problems);
  }

  const keys: ApiKey[] = [];
  const ids = new Map<string, number>();
  const hashes = new Map<string, number>();
  doc.keys.forEach((entry: unknown, i: number) => {
    const at = `keys[${i}]`;
    if (!isObject(entry)) {
      problems.push(`${at} must be an object`);
      return;
    }
    const before = problems.length;
    for (const field of Object.keys(entry)) {
      if (!KEY_FIELDS.has(field)) problems.push(`${at}: unknown field "${field}" (allowed: id, sha256, scopes, rate_per_second)`);
    }
    const { id, sha256: hash, scopes, rate_per_second: rate } = entry;
    if (typeof id !== "string" || !ID_PATTERN.test(id)) {
      problems.push(`${at}.id must be 1-128 characters of letters, digits, ".", "_", ":" or "-", starting with a letter or digit`);
    } else if (ids.has(id)) {
      problems.push(`${at}.id "${id}" is also the id of keys[${ids.get(id)}]`);
    } else {
      ids.set(id, i);
    }
    if (typeof hash !== "string" || !/^[0-9a-fA-F]{64}$/.test(hash)) {
      problems.push(`${at}.sha256 must be the SHA-256 of the secret as 64 hex characters`);
    } else if (hash !== hash.toLowerCase()) {
      problems.push(`${at}.sha256 must be lower-case hex`);
    } else if (hashes.has(hash)) {
      // Two ids for one secret would make the key id (audit log, rate limit) ambiguous.
      problems.push(`${at}.sha256 is also the sha256 of keys[${hashes.get(hash)}]: each key needs its own secret`);
    } else {
      hashes.set(hash, i);
    }
    const scopeSet = new Set<Scope>();
    if (!Array.isArray(scopes) || scopes.length === 0) {
      problems.push(`${at}.scopes must be a non-empty array of scopes (${SCOPES.join(", ")})`);
    } else {
      for (const s of scopes) {
        if (typeof s !== "string" || !SCOPE_SET.has(s))
          problems.push(`${at}.scopes: unknown scope ${JSON.stringify(s)} (known: ${SCOPES.join(", ")})`);
        else if (scopeSet.has(s as Scope)) problems.push(`${at}.scopes lists "${s}" twice`);
        else scopeSet.add(s as Scope);
      }
    }
    if (rate !== undefined && (typeof rate !== "number" || !Number.isFinite(rate) || rate <= 0)) {
      problems.push(`${at}.rate_per_second must be a number above 0 (omit it for no limit)`);
    }
    if (problems.length === before) {
      keys.push({ id: id as string, sha256: hash as string, scopes: scopeSet, ratePerSecond: rate as number | undefined });
    }
  });
  if (problems.length > 0) throw new KeysFileError(path, problems);
  return new KeyRegistry(keys);
}

function cannotRead(path: string, err: unknown): KeysFileError {
  return new KeysFileError(path, [`cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`]);
}

/** Reads and validates the keys file at start (synchronously: the service cannot start without it). */
export function loadKeysFile(path: string): KeyRegistry {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw cannotRead(path, err);
  }
  return parseKeysFile(text, path);
}

export interface KeysReloadEvent {
  registry: KeyRegistry;
  /** Ids that no longer authenticate: removed, or their secret changed. Their open watches must end (UNAUTHENTICATED). */
  revoked: ReadonlySet<string>;
  /** Ids still present whose scopes or rate changed: open watches should be authorized again. */
  changed: ReadonlySet<string>;
}

export interface KeysWatcherOptions {
  log: Logger;
  /** Quiet time after a change before re-reading (an editor writes in several steps). */
  debounceMs?: number;
  /** Stat poll interval, the fallback when fs.watch misses a change. */
  pollMs?: number;
}

function sameKey(a: ApiKey, b: ApiKey): boolean {
  return a.ratePerSecond === b.ratePerSecond && a.scopes.size === b.scopes.size && [...a.scopes].every((s) => b.scopes.has(s));
}

/**
 * The current registry of AUTH_KEYS_FILE, re-read when the file changes. A malformed file on
 * reload keeps the previous keys and logs an error (the operator fixes the file; the service
 * goes on with the keys it had). Create with `KeysWatcher.open` (throws KeysFileError at start).
 */
export class KeysWatcher {
  private registry: KeyRegistry;
  private lastText: string;
  /** The last rejected content: the same bad file is reported once, not at every spurious event. */
  private lastRejected: string | undefined;
  private readonly reloadListeners = new Set<(event: KeysReloadEvent) => void>();
  private readonly rejectListeners = new Set<(err: KeysFileError) => void>();
  private watch: FileWatch | undefined;

  private constructor(
    readonly path: string,
    text: string,
    private readonly options: KeysWatcherOptions,
  ) {
    this.lastText = text;
    this.registry = parseKeysFile(text, path);
  }

  static open(path: string, options: KeysWatcherOptions): KeysWatcher {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      throw cannotRead(path, err);
    }
    return new KeysWatcher(path, text, options);
  }

  get current(): KeyRegistry {
    return this.registry;
  }

  /** Starts watching the file (fs.watch on its directory plus a stat poll). */
  start(): this {
    if (this.watch) return this;
    this.watch = watchFiles([this.path], () => this.reload(), {
      debounceMs: this.options.debounceMs ?? 200,
      pollMs: this.options.pollMs ?? 2000,
    });
    // A change between open() and now has no event of its own.
    this.reload().catch((err: unknown) => this.options.log.error("API keys reload failed", { error: String(err) }));
    return this;
  }

  close(): void {
    this.watch?.close();
    this.watch = undefined;
  }

  /** Called with each new registry (only when the file's content changed and is valid). */
  onReload(listener: (event: KeysReloadEvent) => void): () => void {
    this.reloadListeners.add(listener);
    return () => this.reloadListeners.delete(listener);
  }

  /** Called when a changed file is malformed or unreadable (the previous keys stay). */
  onReject(listener: (err: KeysFileError) => void): () => void {
    this.rejectListeners.add(listener);
    return () => this.rejectListeners.delete(listener);
  }

  /** Re-reads the file now; true when a new registry was installed. */
  async reload(): Promise<boolean> {
    let text: string;
    let next: KeyRegistry;
    try {
      try {
        text = await readFile(this.path, "utf8");
      } catch (err) {
        throw cannotRead(this.path, err);
      }
      if (text === this.lastText || text === this.lastRejected) return false;
      try {
        next = parseKeysFile(text, this.path);
      } catch (err) {
        this.lastRejected = text;
        throw err;
      }
    } catch (err) {
      const error = err instanceof KeysFileError ? err : new KeysFileError(this.path, [String(err)]);
      this.options.log.error("API keys file rejected; keeping the previous keys", { file: this.path, error: error.message });
      for (const l of this.rejectListeners) l(error);
      return false;
    }
    const previous = this.registry;
    const revoked = new Set<string>();
    const changed = new Set<string>();
    for (const old of previous.keys) {
      const now = next.get(old.id);
      if (!now || now.sha256 !== old.sha256) revoked.add(old.id);
      else if (!sameKey(old, now)) changed.add(old.id);
    }
    this.registry = next;
    this.lastText = text;
    this.lastRejected = undefined;
    this.options.log.info("API keys file reloaded", {
      file: this.path,
      keys: next.keys.length,
      revoked: [...revoked],
      changed: [...changed],
    });
    const event: KeysReloadEvent = { registry: next, revoked, changed };
    for (const l of this.reloadListeners) l(event);
    return true;
  }
}
