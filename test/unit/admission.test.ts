import { ResourceExhaustedError } from "../../src/domain/errors";
import { Admission, RETRY_AFTER_MS } from "../../src/rpc/admission";

describe("Admission", () => {
  it("admits up to its limit, then refuses at once with TOO_MANY_CALLS and a retry delay", () => {
    const admission = new Admission(2);
    const a = admission.enter();
    admission.enter();
    let refused: unknown;
    try {
      admission.enter();
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(ResourceExhaustedError);
    expect(refused).toMatchObject({ reason: "TOO_MANY_CALLS", retryAfterMs: RETRY_AFTER_MS, metadata: { limit: "2" } });
    // A release is idempotent: freeing twice does not make room for two.
    a();
    a();
    expect(admission.inFlight).toBe(1);
    admission.enter();
    expect(() => admission.enter()).toThrow(ResourceExhaustedError);
  });

  it("run frees the slot when the call's signal aborts, before the call settles", async () => {
    const admission = new Admission(1);
    const controller = new AbortController();
    let finish!: () => void;
    const running = admission.run(controller.signal, () => new Promise<void>((resolve) => (finish = resolve)));
    expect(admission.inFlight).toBe(1);
    await expect(admission.run(new AbortController().signal, async () => "second")).rejects.toBeInstanceOf(ResourceExhaustedError);
    controller.abort();
    expect(admission.inFlight).toBe(0);
    await expect(admission.run(new AbortController().signal, async () => "third")).resolves.toBe("third");
    finish();
    await running;
    expect(admission.inFlight).toBe(0);
  });

  it("run does not start a call whose signal has already aborted", async () => {
    const admission = new Admission(1);
    const controller = new AbortController();
    controller.abort(new Error("gone"));
    const call = jest.fn(async () => 1);
    await expect(admission.run(controller.signal, call)).rejects.toThrow("gone");
    expect(call).not.toHaveBeenCalled();
    expect(admission.inFlight).toBe(0);
  });
});
