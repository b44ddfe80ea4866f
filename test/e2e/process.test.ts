// The service as a process (`npm start` runs dist/src/main.js; `npm test` builds it first):
// configuration errors, durability across kill -9 on the embedded store, graceful SIGTERM.

import { spawn, spawnSync } from "node:child_process";
import * as net from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { grpcClient } from "../support/clients";
import { MAIN, startProcess } from "../support/process";

describe("the service process", () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), "session-proc-"));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  it("refuses a bad configuration with a clear message", () => {
    const result = spawnSync(process.execPath, [MAIN], { env: { PATH: process.env.PATH ?? "", GRPC_PORT: "seventy" }, encoding: "utf8" });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("GRPC_PORT");
    expect(result.stderr).toContain("seventy");
  });

  it("stops with a one-line error naming the port when a port is taken", async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const result = await new Promise<{ status: number | null; output: string }>((resolve) => {
        const child = spawn(process.execPath, [MAIN], {
          env: { PATH: process.env.PATH ?? "", DATA_DIR: dataDir, GRPC_PORT: String(port), HTTP_PORT: "0" },
        });
        let output = "";
        child.stdout.on("data", (b: Buffer) => (output += b.toString()));
        child.stderr.on("data", (b: Buffer) => (output += b.toString()));
        child.on("exit", (status) => resolve({ status, output }));
      });
      expect(result.status).toBe(1);
      const lines = result.output
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.at(-1)).toMatchObject({
        level: "error",
        msg: "cannot start",
        error: `cannot listen on 127.0.0.1:${port} (GRPC_PORT): EADDRINUSE`,
      });
    } finally {
      taken.close();
    }
  });

  it("keeps an acknowledged session after kill -9, and shuts down cleanly on SIGTERM", async () => {
    const first = await startProcess({ DATA_DIR: dataDir });
    const client = grpcClient(first.grpcPort);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push((await client.createSession({ session: { properties: { i } } })).session!.id);
    client.close();
    first.child.kill("SIGKILL");
    expect((await first.exited).signal).toBe("SIGKILL");

    const second = await startProcess({ DATA_DIR: dataDir });
    const again = grpcClient(second.grpcPort);
    for (const [i, id] of ids.entries()) {
      expect((await again.getSession({ id })).session?.properties).toEqual({ i });
    }
    again.close();
    second.child.kill("SIGTERM");
    expect(await second.exited).toEqual({ code: 0, signal: null });
    const messages = second.lines.filter((l) => l.startsWith("{")).map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(messages).toEqual(expect.arrayContaining(["listening", "signal received", "shutting down", "stopped"]));
    for (const line of second.lines.filter((l) => l.startsWith("{"))) expect(() => JSON.parse(line)).not.toThrow();
  });
});
