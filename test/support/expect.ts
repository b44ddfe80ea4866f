// Assertions shared by the end-to-end tests (jest only: the benches import clients.ts, not this).

import { Code } from "@connectrpc/connect";
import { CallError } from "./clients";

/**
 * Awaits a call that must fail with `code` and this service's ErrorInfo; with `field`, the
 * offending field must be named: in google.rpc.BadRequest for INVALID_ARGUMENT, in ErrorInfo
 * metadata "field" for the other codes (e.g. RESOURCE_EXHAUSTED SESSION_TOO_LARGE).
 */
export async function expectCallError(call: Promise<unknown>, code: Code, field?: string): Promise<CallError> {
  const err = await call.then(
    () => {
      throw new Error(`expected ${Code[code]}, got success`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CallError);
  const e = err as CallError;
  expect({ code: Code[e.code], message: e.message }).toEqual({ code: Code[code], message: expect.any(String) });
  expect(e.errorInfo?.domain).toBe("session.v1");
  if (field !== undefined) {
    if (code === Code.InvalidArgument) expect(e.fields).toContain(field);
    else expect(e.errorInfo?.metadata.field).toBe(field);
  }
  return e;
}
