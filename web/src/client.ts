// The API client of the dashboard: connect-web over the page's own origin (the HTTP port serves
// both), the Connect protocol in binary, and the API key of this tab.
//
// The key is kept in sessionStorage: it lives as long as the tab, is not shared with other tabs
// or sent anywhere but the Authorization header of the API calls.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { SessionService } from "../../gen/session/v1/session_service_pb";

const KEY_ITEM = "session-service.api-key";

export type Api = Client<typeof SessionService>;

export function storedKey(): string | undefined {
  try {
    return sessionStorage.getItem(KEY_ITEM) ?? undefined;
  } catch {
    return undefined; // storage disabled: the key is asked for again after a reload
  }
}

let key = storedKey();

export function setKey(value: string | undefined): void {
  key = value;
  try {
    if (value === undefined) sessionStorage.removeItem(KEY_ITEM);
    else sessionStorage.setItem(KEY_ITEM, value);
  } catch {
    // storage disabled: the key stays in memory for this page
  }
}

const withKey: Interceptor = (next) => (req) => {
  if (key !== undefined) req.header.set("Authorization", `Bearer ${key}`);
  return next(req);
};

export function createApi(baseUrl: string = location.origin): Api {
  return createClient(SessionService, createConnectTransport({ baseUrl, useBinaryFormat: true, interceptors: [withKey] }));
}

/** The call failed for want of a (valid, sufficient) key: ask the user rather than retry. */
export function needsKey(err: unknown): boolean {
  const code = ConnectError.from(err).code;
  return code === Code.Unauthenticated || code === Code.PermissionDenied;
}

/** The message to show for a failure. */
export function describe(err: unknown): string {
  const e = ConnectError.from(err);
  return `${Code[e.code] ?? e.code}: ${e.rawMessage}`;
}

export { Code, ConnectError };
