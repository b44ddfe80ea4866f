// toRpcStatus (src/rpc/status.ts): the erasure's typed error becomes ABORTED with its ErrorInfo.

import { Code } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb";
import { ErasureContendedError } from "../../src/domain/errors";
import { createLogger } from "../../src/log";
import { toRpcStatus } from "../../src/rpc/status";

describe("toRpcStatus", () => {
  it("maps ErasureContendedError to ABORTED with reason ERASURE_CONTENDED, the profile and the count", () => {
    const status = toRpcStatus(new ErasureContendedError("p-1", 12), createLogger("silent"), "EraseProfile");
    expect(status.code).toBe(Code.Aborted);
    expect(status.message).toContain('"p-1"');
    expect(status.details).toHaveLength(1);
    expect(status.details[0].desc).toBe(ErrorInfoSchema);
    expect(status.details[0].value).toMatchObject({
      reason: "ERASURE_CONTENDED",
      domain: "session.v1",
      metadata: { profile_id: "p-1", erased_sessions: "12" },
    });
  });
});
