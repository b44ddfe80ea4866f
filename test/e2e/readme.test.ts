// The README's "Calling it" section, run: every command of its ```sh blocks runs in order, as a
// user would type it (bash, with grpcurl on PATH), against a real server whose ports replace
// 127.0.0.1:50051 and 127.0.0.1:8080. A command must succeed, unless a "# fails: CODE" comment
// precedes it: then it must fail with that gRPC code and print what the ```text block after it
// shows. A watch (a command that streams) runs in the background, as in its own terminal, from
// the moment it has printed its first message; at the end it must have printed the update the
// section says it prints.
// The "Securing it" section runs the same way, in a fresh directory (where scripts/ and
// examples/ link to the repository's, as in a checkout): it makes its certificates and keys
// file there, and its `... npm start` runs the built service with the variables it sets (on
// free ports, which replace localhost:50051 and localhost:8080 in the commands after it).

import { mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { startProcess, type ServiceProcess } from "../support/process";
import { startTestServer, type TestServer } from "../support/server";
import { ROOT, describeRun, run, spawnStreaming, tool, type StreamingProcess } from "../support/tools";

interface Command {
  /** The command as written (continuation lines and all). */
  text: string;
  /** "# fails: CODE" before it: the gRPC code it must fail with. */
  fails?: string;
  /** The ```text block right after its block: what a failing command prints. */
  output?: string;
}

/** A "## <name>" section of README.md. */
function section(name = "Calling it"): string {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf(`\n## ${name}\n`);
  if (start < 0) throw new Error(`README.md has no "## ${name}" section`);
  const end = readme.indexOf("\n## ", start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

/** Splits a shell block into commands: a newline ends one unless quoted or escaped. */
function splitCommands(block: string): Array<{ text: string; comments: string[] }> {
  const commands: Array<{ text: string; comments: string[] }> = [];
  let comments: string[] = [];
  let current = "";
  let quote: "'" | '"' | undefined;
  const lines = block.split("\n");
  for (const line of lines) {
    if (quote === undefined && current === "") {
      const trimmed = line.trim();
      if (trimmed === "") continue;
      if (trimmed.startsWith("#")) {
        comments.push(trimmed.replace(/^#\s*/, ""));
        continue;
      }
    }
    current += (current === "" ? "" : "\n") + line;
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (quote === undefined && c === "\\") i++;
      else if (quote === undefined && (c === "'" || c === '"')) quote = c;
      else if (quote === '"' && c === "\\") i++;
      else if (c === quote) quote = undefined;
    }
    if (quote === undefined && !line.endsWith("\\")) {
      commands.push({ text: current, comments });
      current = "";
      comments = [];
    }
  }
  if (current !== "") throw new Error(`unterminated command in README: ${current}`);
  return commands;
}

function parse(name?: string): Command[] {
  const blocks = [...section(name).matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ lang: m[1]!, body: m[2]! }));
  const commands: Command[] = [];
  blocks.forEach((block, i) => {
    if (block.lang !== "sh") return;
    for (const { text, comments } of splitCommands(block.body)) {
      const fails = comments.map((c) => /^fails: (\w+)$/.exec(c)?.[1]).find((c) => c !== undefined);
      const next = blocks[i + 1];
      commands.push({ text, fails, output: fails && next?.lang === "text" ? next.body : undefined });
    }
  });
  return commands;
}

const commands = parse();
const isStream = (text: string) => /\/WatchSessions\b|\/WatchSessionStats\b|Health\/Watch\b/.test(text);
const isStatsWatch = (text: string) => /\/WatchSessionStats\b/.test(text);
const squash = (s: string) => s.replace(/\s+/g, " ").trim();
const title = (c: Command) => squash(c.text).slice(0, 110);

describe("README: Calling it", () => {
  let server: TestServer;
  let env: NodeJS.ProcessEnv;
  const watches: StreamingProcess[] = [];
  const statsWatches: StreamingProcess[] = [];

  const localize = (text: string) =>
    text.replaceAll("127.0.0.1:50051", `127.0.0.1:${server.grpcPort}`).replaceAll("127.0.0.1:8080", `127.0.0.1:${server.httpPort}`);

  beforeAll(async () => {
    env = { ...process.env, PATH: `${dirname(tool("grpcurl"))}:${process.env.PATH ?? ""}` };
    server = await startTestServer("sqlite");
  }, 600_000);
  afterAll(async () => {
    for (const w of [...watches, ...statsWatches]) await w.stop();
    await server?.close();
    await server?.cleanup();
  });

  it("has grpcurl list, describe, create and watch commands, a curl call and the Python and Go clients", () => {
    const texts = commands.map((c) => squash(c.text));
    for (const pattern of [
      /^grpcurl .* list$/,
      /^grpcurl .* describe session\.v1\.Session$/,
      /^grpcurl .*session\.v1\.SessionService\/CreateSession$/,
      /^grpcurl .*session\.v1\.SessionService\/WatchSessions$/,
      /^curl .*http:\/\/127\.0\.0\.1:8080\/session\.v1\.SessionService\//,
      /^scripts\/clients\.sh python 127\.0\.0\.1:50051\b/,
      /^scripts\/clients\.sh go 127\.0\.0\.1:50051\b/,
    ]) {
      expect({ pattern: String(pattern), found: texts.some((t) => pattern.test(t)) }).toEqual({ pattern: String(pattern), found: true });
    }
    // Only the default ports, which the test replaces.
    for (const t of texts)
      expect(t.match(/127\.0\.0\.1:(\d+)/g)?.filter((a) => a !== "127.0.0.1:50051" && a !== "127.0.0.1:8080") ?? []).toEqual([]);
  });

  it.each(commands.map((c) => [title(c), c] as const))(
    "runs: %s",
    async (_title, command) => {
      const text = localize(command.text);
      if (isStream(text)) {
        const watch = spawnStreaming("bash", ["-c", `exec ${text}`], { env });
        (isStatsWatch(text) ? statsWatches : watches).push(watch);
        // Open once it has printed its first message (sendInitial: the current state).
        await watch.waitFor((out) => /^\}$/m.test(out), 15_000, `README watch: ${title(command)}`);
        return;
      }
      const r = await run("bash", ["-c", text], { env, timeoutMs: 300_000 });
      if (command.fails) {
        expect({ failed: r.code !== 0 }).toEqual({ failed: true });
        expect(r.stderr).toContain(`Code: ${command.fails}`);
        if (command.output !== undefined) expect(squash(r.stderr)).toBe(squash(command.output));
        return;
      }
      if (r.code !== 0) throw new Error(describeRun(`README command failed: ${text}`, r));
      expect(r.stdout.trim()).not.toBe("");
    },
    300_000,
  );

  it("its watch printed the update made in the other terminal", async () => {
    expect(watches.length).toBeGreaterThan(0);
    for (const watch of watches) {
      const out = await watch.waitFor((o) => o.includes('"kind": "CHANGE_KIND_UPDATED"'), 10_000, "README watch: CHANGE_KIND_UPDATED");
      expect(out).toContain('"kind": "CHANGE_KIND_INITIAL"');
      expect(out).toContain('"initialStateEnd"');
      expect(out.slice(out.indexOf('"kind": "CHANGE_KIND_UPDATED"'))).toContain('"city": "Berlin"');
    }
  });

  it("its stats watch printed the figures, then new ones for the channel set in the other terminal", async () => {
    expect(statsWatches.length).toBeGreaterThan(0);
    for (const watch of statsWatches) {
      const out = await watch.waitFor((o) => o.includes('"key": "web"'), 10_000, "README stats watch: channel web");
      expect(out).toContain('"onlineNow"');
      expect(out.indexOf('"stats"')).toBeLessThan(out.indexOf('"key": "web"'));
    }
  });
});

describe("README: Securing it", () => {
  const secured = parse("Securing it");
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let service: ServiceProcess | undefined;

  const localize = (text: string) =>
    service
      ? text.replaceAll("localhost:50051", `localhost:${service.grpcPort}`).replaceAll("localhost:8080", `localhost:${service.httpPort}`)
      : text;

  beforeAll(() => {
    env = { ...process.env, PATH: `${dirname(tool("grpcurl"))}:${process.env.PATH ?? ""}` };
    dir = mkdtempSync(join(tmpdir(), "session-readme-secure-"));
    for (const link of ["scripts", "examples"]) symlinkSync(join(ROOT, link), join(dir, link));
  }, 600_000);
  afterAll(async () => {
    await service?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("makes certificates and keys, starts the service, and calls it with grpcurl, curl and the Python client", () => {
    const texts = secured.map((c) => squash(c.text));
    for (const pattern of [
      /^openssl req -x509 /,
      /> keys\.json$/,
      /npm start$/,
      /^grpcurl -cacert .* list$/,
      /^curl .*--cacert .*https:\/\/localhost:8080\//,
      /scripts\/clients\.sh python --cacert /,
    ]) {
      expect({ pattern: String(pattern), found: texts.some((t) => pattern.test(t)) }).toEqual({ pattern: String(pattern), found: true });
    }
  });

  it.each(secured.map((c) => [title(c), c] as const))(
    "runs: %s",
    async (_title, command) => {
      const start = /^((?:[A-Z_]+=\S+\s+)+)npm start$/.exec(squash(command.text));
      if (start) {
        const vars = Object.fromEntries(
          start[1]
            .trim()
            .split(/\s+/)
            .map((a) => [a.slice(0, a.indexOf("=")), join(dir, a.slice(a.indexOf("=") + 1))] as const),
        );
        // HOST is an address, not a file.
        vars.HOST = start[1].match(/HOST=(\S+)/)![1];
        service = await startProcess({ ...vars, DATA_DIR: join(dir, "data") });
        expect(service.lines.join("\n")).toContain('"tls":"tls"');
        return;
      }
      const r = await run("bash", ["-c", localize(command.text)], { env, cwd: dir, timeoutMs: 300_000 });
      if (command.fails) {
        expect({ failed: r.code !== 0 }).toEqual({ failed: true });
        expect(r.stderr).toContain(`Code: ${command.fails}`);
        if (command.output !== undefined) expect(squash(r.stderr)).toBe(squash(command.output));
        return;
      }
      if (r.code !== 0) throw new Error(describeRun(`README command failed: ${command.text}`, r));
    },
    300_000,
  );
});
