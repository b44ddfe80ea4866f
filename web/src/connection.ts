// The dashboard's connection state, shown in #conn: every stream reports whether it is live, and
// the page is "live" when all are, "reconnecting" while one is retrying, "need-key" while the
// server wants a key the tab does not have.

export type StreamState = "connecting" | "live" | "reconnecting" | "need-key";

const RANK: Record<StreamState, number> = { "need-key": 3, reconnecting: 2, connecting: 1, live: 0 };

export class Connection {
  private readonly streams = new Map<string, StreamState>();
  private reconnects = 0;
  private keyWaiters: Array<() => void> = [];

  constructor(
    private readonly badge: HTMLElement,
    private readonly keyForm: HTMLFormElement,
  ) {}

  set(stream: string, state: StreamState): void {
    if (state === "reconnecting" && this.streams.get(stream) !== "reconnecting") this.reconnects += 1;
    this.streams.set(stream, state);
    this.render();
  }

  /** Resolves when the user has given a key (the streams then retry at once). */
  waitForKey(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => resolve();
      this.keyWaiters.push(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  keyGiven(): void {
    const waiters = this.keyWaiters;
    this.keyWaiters = [];
    for (const w of waiters) w();
  }

  private render(): void {
    let state: StreamState = "live";
    for (const s of this.streams.values()) if (RANK[s] > RANK[state]) state = s;
    this.badge.dataset.state = state;
    this.badge.dataset.reconnects = String(this.reconnects);
    this.badge.textContent = state === "need-key" ? "API key needed" : state;
    this.keyForm.hidden = state !== "need-key";
  }
}

/**
 * Runs `open` for ever: when a stream fails it is opened again after a backoff (0.25 s doubling to
 * 5 s, with jitter, reset once a stream has been live), or once a key is given when it failed for
 * want of one. `open` calls `live` on its first message.
 */
export async function keepOpen(
  name: string,
  conn: Connection,
  open: (signal: AbortSignal, live: () => void) => Promise<void>,
  opts: { needsKey: (err: unknown) => boolean; onError: (err: unknown) => void; signal: AbortSignal },
): Promise<void> {
  let delay = 250;
  conn.set(name, "connecting");
  const live = () => {
    conn.set(name, "live");
    delay = 250;
  };
  while (!opts.signal.aborted) {
    try {
      await open(opts.signal, live);
      // The server ended the stream (it does at shutdown): reopen at once.
      if (opts.signal.aborted) return;
      conn.set(name, "reconnecting");
    } catch (err) {
      if (opts.signal.aborted) return;
      if (opts.needsKey(err)) {
        conn.set(name, "need-key");
        opts.onError(err);
        await conn.waitForKey(opts.signal);
        conn.set(name, "connecting");
        continue;
      }
      conn.set(name, "reconnecting");
      opts.onError(err);
    }
    await sleep(delay * (0.75 + Math.random() / 2), opts.signal);
    delay = Math.min(delay * 2, 5000);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}
