import { DEFAULT_RETENTION_INTERVAL_MS, DEFAULT_TRIM_INTERVAL_MS, startJobs } from "../../src/domain/jobs";
import type { ExpiryPass, Lifecycle } from "../../src/domain/lifecycle";
import type { SessionDoc } from "../../src/domain/session";
import type { CallOptions, ListQuery, SessionStore } from "../../src/domain/store";

const HOUR = 3600_000;

function fakeLifecycle(passes: ExpiryPass[] = []) {
  const expire = jest.fn(async (): Promise<ExpiryPass> => passes.shift() ?? { ended: 0, skipped: 0 });
  return { lifecycle: { expire, maxPerPass: 10 } as unknown as Lifecycle, expire };
}

function fakeStore() {
  const trimChanges = jest.fn(async (_before: Date, _options?: CallOptions) => 0);
  // The retention sweep's reads: an empty store (the sweep itself is tested on real stores).
  const list = jest.fn(async (_query: ListQuery, _options?: CallOptions): Promise<SessionDoc[]> => []);
  const store = { trimChanges, list } as unknown as SessionStore;
  return { store, trimChanges, list };
}

function fakeLog() {
  return { info: jest.fn(), warn: jest.fn() };
}

describe("background jobs", () => {
  beforeEach(() => {
    jest.useFakeTimers({ now: new Date("2026-01-01T00:00:00Z") });
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it("runs an expiry pass at once, then every interval, and at once again after a full pass", async () => {
    const { lifecycle, expire } = fakeLifecycle([{ ended: 10, skipped: 0 }]);
    const log = fakeLog();
    const jobs = startJobs(fakeStore().store, lifecycle, log, { expiryIntervalMs: 60_000, changeRetentionMs: HOUR });
    await jest.advanceTimersByTimeAsync(1);
    // The first pass ended maxPerPass sessions: the next one followed without waiting an interval.
    expect(expire).toHaveBeenCalledTimes(2);
    expect(log.info).toHaveBeenCalledWith("sessions expired", { ended: 10, skipped: 0 });
    await jest.advanceTimersByTimeAsync(60_000);
    expect(expire).toHaveBeenCalledTimes(3);
    await jobs.stop();
  });

  it("trims the change log to the retention window every trim interval", async () => {
    const { store, trimChanges } = fakeStore();
    const jobs = startJobs(store, fakeLifecycle().lifecycle, fakeLog(), { expiryIntervalMs: HOUR, changeRetentionMs: 2 * HOUR });
    await jest.advanceTimersByTimeAsync(DEFAULT_TRIM_INTERVAL_MS - 1);
    expect(trimChanges).not.toHaveBeenCalled();
    await jest.advanceTimersByTimeAsync(1);
    expect(trimChanges).toHaveBeenCalledTimes(1);
    expect(trimChanges.mock.calls[0][0].getTime()).toBe(Date.now() - 2 * HOUR);
    await jest.advanceTimersByTimeAsync(DEFAULT_TRIM_INTERVAL_MS);
    expect(trimChanges).toHaveBeenCalledTimes(2);
    await jobs.stop();
  });

  it("logs a failed trim and tries again on the next tick", async () => {
    const { store, trimChanges } = fakeStore();
    trimChanges.mockRejectedValueOnce(new Error("store down"));
    const log = fakeLog();
    const jobs = startJobs(store, fakeLifecycle().lifecycle, log, {
      expiryIntervalMs: HOUR,
      changeRetentionMs: HOUR,
      trimIntervalMs: 1000,
    });
    await jest.advanceTimersByTimeAsync(1000);
    expect(log.warn).toHaveBeenCalledWith("change log trim failed", { error: "Error: store down" });
    await jest.advanceTimersByTimeAsync(1000);
    expect(trimChanges).toHaveBeenCalledTimes(2);
    expect(log.warn).toHaveBeenCalledTimes(1);
    await jobs.stop();
  });

  it("runs the retention sweep hourly with a session retention, and never without", async () => {
    const { store, list } = fakeStore();
    const log = fakeLog();
    list.mockRejectedValueOnce(new Error("timeout"));
    const jobs = startJobs(store, fakeLifecycle().lifecycle, log, {
      expiryIntervalMs: HOUR,
      changeRetentionMs: HOUR,
      sessionRetentionMs: 48 * HOUR,
    });
    await jest.advanceTimersByTimeAsync(DEFAULT_RETENTION_INTERVAL_MS - 1);
    expect(list).not.toHaveBeenCalled();
    await jest.advanceTimersByTimeAsync(1);
    expect(list).toHaveBeenCalledTimes(1);
    expect(list.mock.calls[0][0].insertTo?.getTime()).toBe(Date.now() - 48 * HOUR);
    expect(log.warn).toHaveBeenCalledWith("retention sweep failed; retried on the next tick", { error: "Error: timeout" });
    await jest.advanceTimersByTimeAsync(DEFAULT_RETENTION_INTERVAL_MS);
    expect(list).toHaveBeenCalledTimes(2);
    await jobs.stop();

    const { store: keeping, list: noList } = fakeStore();
    const kept = startJobs(keeping, fakeLifecycle().lifecycle, log, { expiryIntervalMs: HOUR, changeRetentionMs: HOUR });
    await jest.advanceTimersByTimeAsync(3 * DEFAULT_RETENTION_INTERVAL_MS);
    expect(noList).not.toHaveBeenCalled();
    await kept.stop();
  });

  it("never runs a job twice at once, and stop() waits for the run in progress", async () => {
    const { store, trimChanges } = fakeStore();
    let finish!: () => void;
    trimChanges.mockImplementationOnce(() => new Promise<number>((resolve) => (finish = () => resolve(0))));
    const jobs = startJobs(store, fakeLifecycle().lifecycle, fakeLog(), {
      expiryIntervalMs: HOUR,
      changeRetentionMs: HOUR,
      trimIntervalMs: 1000,
    });
    await jest.advanceTimersByTimeAsync(5000);
    expect(trimChanges).toHaveBeenCalledTimes(1);
    // The run in progress is asked to stop (its signal aborts) and awaited.
    expect(trimChanges.mock.calls[0][1]?.signal?.aborted).toBe(false);
    let stopped = false;
    const stopping = jobs.stop().then(() => (stopped = true));
    await jest.advanceTimersByTimeAsync(0);
    expect(trimChanges.mock.calls[0][1]?.signal?.aborted).toBe(true);
    expect(stopped).toBe(false);
    finish();
    await stopping;
    expect(stopped).toBe(true);
    await jest.advanceTimersByTimeAsync(10_000);
    expect(trimChanges).toHaveBeenCalledTimes(1);
  });
});
