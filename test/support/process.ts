// Runs the built service (dist/src/main.js, made by `npm test` before jest) as a child process.

import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";

export const MAIN = join(__dirname, "..", "..", "dist", "src", "main.js");

export interface ServiceProcess {
  child: ChildProcessWithoutNullStreams;
  grpcPort: number;
  httpPort: number;
  /** The metrics port, when METRICS_PORT was set. */
  metricsPort?: number;
  /** Everything it printed, line by line. */
  lines: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then resolves when it has exited. */
  stop(): Promise<void>;
}

/** Starts the service and resolves once it logs that it is listening. */
export function startProcess(env: Record<string, string>): Promise<ServiceProcess> {
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? "", GRPC_PORT: "0", HTTP_PORT: "0", ...env },
  });
  const lines: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  };
  return new Promise((resolve, reject) => {
    child.stderr.on("data", (d: Buffer) => lines.push(d.toString()));
    createInterface({ input: child.stdout }).on("line", (line) => {
      lines.push(line);
      if (!line.startsWith("{")) return;
      const entry = JSON.parse(line) as { msg: string; grpc_port?: number; http_port?: number; metrics_port?: number | string };
      if (entry.msg !== "listening") return;
      const metricsPort = typeof entry.metrics_port === "number" ? entry.metrics_port : undefined;
      resolve({ child, grpcPort: entry.grpc_port!, httpPort: entry.http_port!, metricsPort, lines, exited, stop });
    });
    void exited.then(({ code }) => reject(new Error(`service exited with ${code} before listening:\n${lines.join("\n")}`)));
  });
}
