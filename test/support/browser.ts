// A real headless browser for end-to-end tests of the dashboard: Debian's Chromium (installed by
// scripts/chromium.sh when missing; playwright downloads nothing) driven by playwright-core.
// One browser per test file, a fresh context and page per test (its own sessionStorage), and PNG
// screenshots saved as test artifacts in test-artifacts/ (git-ignored). Every step is bounded: a
// browser that hangs is killed, so it cannot keep jest waiting.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type BrowserServer, type Page } from "playwright-core";
import { ROOT, run } from "./tools";

/** Where screenshots go (git-ignored); one folder per test file. */
export const ARTIFACTS = join(ROOT, "test-artifacts");

const LAUNCH_TIMEOUT_MS = 30_000;
const CLOSE_TIMEOUT_MS = 5_000;
/** playwright's own bound on each action and wait that names no timeout. */
const ACTION_TIMEOUT_MS = 10_000;

/** The Chromium executable, installed by scripts/chromium.sh when missing (quiet when present). */
export async function chromiumExecutable(): Promise<string> {
  const r = await run("bash", ["scripts/chromium.sh"], { timeoutMs: 300_000 });
  const path = r.stdout.trim().split("\n").pop() ?? "";
  if (r.code !== 0 || !path) throw new Error(`scripts/chromium.sh failed (exit ${r.code ?? r.signal}): ${r.stderr}`);
  return path;
}

/** Resolves with `promise`, or rejects after `ms` (the promise is then left to itself). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export interface TestPage {
  page: Page;
  /** Uncaught errors and console errors of the page, for assertion messages and checks. */
  errors: string[];
}

export class TestBrowser {
  private readonly contexts = new Set<BrowserContext>();

  private constructor(
    private readonly server: BrowserServer,
    readonly browser: Browser,
    /** The folder this file's screenshots go to. */
    readonly artifacts: string,
  ) {}

  /**
   * Launches headless Chromium as a browser server (so the process can be killed if it hangs)
   * and connects to it. `name` names the artifacts folder (the test file's name).
   */
  static async launch(name: string): Promise<TestBrowser> {
    const executablePath = await chromiumExecutable();
    // Chromium's sandbox cannot work as root (containers, CI): it refuses to start without this.
    const args = process.getuid?.() === 0 ? ["--no-sandbox"] : [];
    const server = await chromium.launchServer({ executablePath, headless: true, args, timeout: LAUNCH_TIMEOUT_MS });
    let browser: Browser;
    try {
      browser = await chromium.connect(server.wsEndpoint(), { timeout: LAUNCH_TIMEOUT_MS });
    } catch (err) {
      await server.kill();
      throw err;
    }
    const artifacts = join(ARTIFACTS, name);
    mkdirSync(artifacts, { recursive: true });
    return new TestBrowser(server, browser, artifacts);
  }

  /**
   * A new page in a context of its own (fresh storage), with bounded default timeouts.
   * `ignoreHTTPSErrors` accepts the test's own certificates (Chromium trusts the system's CAs).
   */
  async newPage(options: { ignoreHTTPSErrors?: boolean } = {}): Promise<TestPage> {
    const context = await within(
      this.browser.newContext({ viewport: { width: 1280, height: 900 }, ignoreHTTPSErrors: options.ignoreHTTPSErrors ?? false }),
      ACTION_TIMEOUT_MS,
      "new context",
    );
    this.contexts.add(context);
    context.setDefaultTimeout(ACTION_TIMEOUT_MS);
    const page = await within(context.newPage(), ACTION_TIMEOUT_MS, "new page");
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
    page.on("console", (msg) => {
      if (msg.type() === "error") errors.push(`console.error: ${msg.text()}`);
    });
    return { page, errors };
  }

  /** Closes the pages opened since the last call (after each test). */
  async closePages(): Promise<void> {
    const contexts = [...this.contexts];
    this.contexts.clear();
    await Promise.all(contexts.map((c) => within(c.close(), CLOSE_TIMEOUT_MS, "close context").catch(() => undefined)));
  }

  /** Saves a full-page PNG screenshot as `<name>.png` in the artifacts folder; returns its path. */
  async screenshot(page: Page, name: string): Promise<string> {
    const path = join(this.artifacts, `${name}.png`);
    await page.screenshot({ path, fullPage: true, type: "png", timeout: ACTION_TIMEOUT_MS });
    return path;
  }

  /** Closes everything; a browser that does not close in time is killed. */
  async close(): Promise<void> {
    await this.closePages();
    try {
      await within(this.browser.close(), CLOSE_TIMEOUT_MS, "close browser");
      await within(this.server.close(), CLOSE_TIMEOUT_MS, "close browser server");
    } catch {
      await within(this.server.kill(), CLOSE_TIMEOUT_MS, "kill browser").catch(() => undefined);
    }
  }
}
