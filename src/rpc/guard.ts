// The security of one call, the same on both ports: the access decision of
// src/security/access.ts turned into typed errors (mapped to codes in status.ts like every other
// error), the audit line of each state-changing call, and the open streams of each key, so that
// a keys file reload ends the watches of a revoked key. The engines (grpc-server.ts,
// connect-server.ts) gather the method, the authorization value and the client address.

import { anonymizeIp, parseIp, type IpAnonymization } from "../domain/ip";
import { DomainError, PermissionDeniedError, ResourceExhaustedError, UnauthenticatedError } from "../domain/errors";
import type { Logger } from "../log";
import { checkAccess, KeyedCalls, type AccessPolicy } from "../security/access";
import { requiredScope, type ApiKey, type AuthFailure } from "../security/keys";
import type { RateLimited } from "../security/rate-limit";

/** The canonical names of the gRPC codes, by number: the audit log's `code`. */
const CODE_NAMES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

export function codeName(code: number): string {
  return CODE_NAMES[code] ?? String(code);
}

/** A refusal of checkAccess as the typed error the engines answer with. */
export function accessError(refusal: AuthFailure | RateLimited): DomainError {
  if (refusal.code === "RESOURCE_EXHAUSTED")
    return new ResourceExhaustedError(refusal.reason, refusal.message, refusal.retryAfterMs, refusal.metadata);
  if (refusal.code === "UNAUTHENTICATED") return new UnauthenticatedError(refusal.reason, refusal.message, refusal.metadata);
  return new PermissionDeniedError(refusal.reason, refusal.message, refusal.metadata);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a request of any method of the service (typed per method by the handlers)
type Message = any;

/** The ids an audit line names, taken from the request (and, for a create, the answer). */
function auditIds(method: string, req: Message, res: Message): Record<string, unknown> {
  const name = method.slice(method.lastIndexOf("/") + 1);
  switch (name) {
    case "CreateSession":
      return { session_id: res?.session?.id || req?.session?.id || undefined, profile_id: req?.session?.profile?.id || undefined };
    case "UpdateSession":
      return { session_id: req?.session?.id || undefined };
    case "TouchSession":
    case "DeleteSession":
      return { session_id: req?.id || undefined };
    case "MergeProfiles":
      return { source_profile_ids: req?.sourceProfileIds, target_profile_id: req?.targetProfileId || undefined };
    case "EraseProfile":
      return {
        profile_id: req?.profileId || undefined,
        erased_sessions: res?.erasedSessions === undefined ? undefined : Number(res.erasedSessions),
      };
    default:
      return {};
  }
}

/**
 * For the audit line of a refused call: the key a PERMISSION_DENIED or KEY_RATE_LIMITED refusal
 * names (the caller proved it holds that key; only the scope or rate was wrong).
 */
export function refusedKey(err: unknown): { id: string } | undefined {
  const id = err instanceof DomainError ? err.metadata.key_id : undefined;
  return id !== undefined && !(err instanceof UnauthenticatedError) ? { id } : undefined;
}

export interface StreamRevocation {
  /** Aborted, with the typed error as its reason, when the stream's key is revoked or loses the scope. */
  signal: AbortSignal | undefined;
  /** Stops tracking (call when the stream ends). */
  release(): void;
}

const UNTRACKED: StreamRevocation = { signal: undefined, release: () => undefined };

export class CallGuard {
  constructor(
    private readonly policy: AccessPolicy,
    private readonly calls: KeyedCalls,
    /** Where audit lines go (null: no audit, e.g. benchmarks of the bare engines). */
    private readonly auditLog: Logger | null,
    /**
     * IP_ANONYMIZATION applies to the caller's address in audit lines too: when browsers call
     * the HTTP port directly, it is the visitor's address.
     */
    private readonly ipAnonymization: IpAnonymization = "off",
  ) {}

  /** The caller's address as an audit line may show it (an unparsable one, e.g. "unknown", as is). */
  private auditAddress(address: string): string | null {
    if (this.ipAnonymization === "off") return address;
    const ip = parseIp(address);
    return ip ? anonymizeIp(ip, this.ipAnonymization) : this.ipAnonymization === "drop" ? null : address;
  }

  /** Every call allowed, nothing audited: the engines' default when no guard is given. */
  static open(): CallGuard {
    return new CallGuard({ keys: () => undefined }, new KeyedCalls(), null);
  }

  /**
   * Decides whether the call may run: returns its key (undefined: a public method or no keys
   * file), or throws UnauthenticatedError, PermissionDeniedError or ResourceExhaustedError.
   */
  admit(method: string, authorization: string | readonly string[] | undefined, address: string): ApiKey | undefined {
    const result = checkAccess(this.policy, { method, authorization, address });
    if (!result.ok) throw accessError(result);
    return result.key;
  }

  /** For a stream made with `key`: the signal that ends it when the key no longer allows it. */
  trackStream(key: ApiKey | undefined, method: string): StreamRevocation {
    if (key === undefined) return UNTRACKED;
    const revoked = new AbortController();
    const release = this.calls.track(key, method, (failure) => revoked.abort(accessError(failure)));
    return { signal: revoked.signal, release };
  }

  /**
   * One JSON line for a state-changing call (a method whose scope is sessions.write,
   * profiles.merge or profiles.erase), whatever its outcome, refusals included: who (key id, never the secret;
   * null without keys), from where, what, on which ids, and the result code. Ids are the
   * client's strings; JSON encoding keeps them from forging lines.
   */
  audit(method: string, key: { id: string } | undefined, address: string, code: number, req: Message, res?: Message): void {
    if (this.auditLog === null) return;
    const scope = requiredScope(method);
    if (scope !== "sessions.write" && scope !== "profiles.merge" && scope !== "profiles.erase") return;
    this.auditLog.info("audit", {
      method: method.startsWith("/") ? method.slice(1) : method,
      key_id: key?.id ?? null,
      client: this.auditAddress(address),
      ...auditIds(method, req, res),
      code: codeName(code),
    });
  }
}
