// The access decision of one call, the same for both engines: the gRPC port (a
// grpc-js server interceptor or the handler wrapper) and the HTTP port (a Connect interceptor)
// gather the method, the authorization value and the client address, and act on the answer.
//
// Order, and why:
// 0. health is always allowed, unlimited: a load balancer probing from one address must not
//    see its checks refused and take the replica out of service;
// 1. the per-address limit, before anything else, so that calls with a wrong key (guessing a
//    secret) are limited like any other;
// 2. public methods (reflection unless it requires a key) need no key;
// 3. without AUTH_KEYS_FILE every method is open (the loopback default of the issue);
// 4. authenticate (UNAUTHENTICATED), then authorize the method's scope (PERMISSION_DENIED);
// 5. the key's own limit, last, so that refused calls spend none of the key's tokens.

import { authorize, isHealthMethod, isPublicMethod, type ApiKey, type AuthFailure, type KeyRegistry } from "./keys";
import type { RateLimited, RateLimiter } from "./rate-limit";

export interface AccessPolicy {
  /** The current keys (KeysWatcher.current); undefined: no AUTH_KEYS_FILE, every method open. */
  keys: () => KeyRegistry | undefined;
  /** Per-key and per-address limits; undefined: none. */
  limiter?: RateLimiter;
  reflectionRequiresKey?: boolean;
}

export interface CallFacts {
  /** "/session.v1.SessionService/GetSession" (or without the leading slash). */
  method: string;
  /** The `authorization` header or metadata value(s). */
  authorization: string | readonly string[] | undefined;
  /** The client address (clientAddress / grpcPeerAddress). */
  address: string;
}

/** Allowed, with the key the call was made with (undefined: public method or no keys file). */
export type AccessResult = { ok: true; key: ApiKey | undefined } | AuthFailure | RateLimited;

export function checkAccess(policy: AccessPolicy, call: CallFacts): AccessResult {
  if (isHealthMethod(call.method)) return { ok: true, key: undefined };
  const byAddress = policy.limiter?.checkAddress(call.address);
  if (byAddress && !byAddress.ok) return byAddress;
  const registry = policy.keys();
  if (!registry || isPublicMethod(call.method, { reflectionRequiresKey: policy.reflectionRequiresKey }))
    return { ok: true, key: undefined };
  const auth = registry.authenticate(call.authorization);
  if (!auth.ok) return auth;
  const allowed = authorize(auth.key, call.method);
  if (!allowed.ok) return allowed;
  const byKey = policy.limiter?.checkKey(auth.key);
  if (byKey && !byKey.ok) return byKey;
  return { ok: true, key: auth.key };
}

interface TrackedCall {
  method: string;
  end: (failure: AuthFailure) => void;
}

/**
 * The long-lived calls (WatchSessions streams) made with each key, so that a keys file reload
 * can end those of a revoked key (UNAUTHENTICATED) and those of a key that lost the method's
 * scope (PERMISSION_DENIED): a stream authorized once would otherwise outlive its key.
 * Feed it KeysWatcher's reload events: `keys.onReload((e) => calls.apply(e))`.
 */
export class KeyedCalls {
  private readonly byKey = new Map<string, Set<TrackedCall>>();

  /** Registers an open call; returns the function to call when the call ends on its own. */
  track(key: ApiKey, method: string, end: (failure: AuthFailure) => void): () => void {
    const entry: TrackedCall = { method, end };
    let set = this.byKey.get(key.id);
    if (!set) this.byKey.set(key.id, (set = new Set()));
    set.add(entry);
    return () => {
      set.delete(entry);
      if (set.size === 0 && this.byKey.get(key.id) === set) this.byKey.delete(key.id);
    };
  }

  get size(): number {
    let n = 0;
    for (const set of this.byKey.values()) n += set.size;
    return n;
  }

  /** Ends the calls the reloaded keys no longer allow; returns how many were ended. */
  apply(event: { registry: KeyRegistry; revoked: ReadonlySet<string>; changed: ReadonlySet<string> }): number {
    let ended = 0;
    for (const id of [...event.revoked, ...event.changed]) {
      const set = this.byKey.get(id);
      if (!set) continue;
      const now = event.registry.get(id);
      for (const call of [...set]) {
        let failure: AuthFailure | undefined;
        if (!now || event.revoked.has(id)) {
          failure = {
            ok: false,
            code: "UNAUTHENTICATED",
            reason: "API_KEY_INVALID",
            message: `API key "${id}" was revoked`,
            metadata: { key_id: id },
          };
        } else {
          const allowed = authorize(now, call.method);
          if (!allowed.ok) failure = allowed;
        }
        if (failure) {
          set.delete(call);
          ended++;
          call.end(failure);
        }
      }
      if (set.size === 0) this.byKey.delete(id);
    }
    return ended;
  }
}
