// The control protocol of the benchmark's server processes (bench/*-server.ts).
//
// A server child prints one line `BENCH {"type":"ready","port":N,...}` on stdout once it
// listens, then reads commands from stdin, one per line:
//   stats  -> prints `BENCH {"type":"stats","rss":...,"heapUsed":...,"cpuUser":...,"cpuSystem":...}`
//   exit   -> closes the server and exits 0 (a --cpu-prof profile is written at this exit)
// When stdin closes (the bench process died), the child exits too, so no server outlives a run.

import * as readline from "node:readline";
import { send } from "./lib/protocol";

export interface ChildServer {
  port: number;
  close(): Promise<void>;
}

export interface Stats {
  type: "stats";
  /** Resident set size, bytes. */
  rss: number;
  heapUsed: number;
  /** CPU time of the whole process (all threads) since it started, microseconds. */
  cpuUser: number;
  cpuSystem: number;
}

function stats(): Stats {
  const mem = process.memoryUsage();
  const cpu = process.cpuUsage();
  return { type: "stats", rss: mem.rss, heapUsed: mem.heapUsed, cpuUser: cpu.user, cpuSystem: cpu.system };
}

export function runChild(name: string, start: () => Promise<ChildServer>): void {
  start().then(
    (server) => {
      let stopping = false;
      const stop = (): void => {
        if (stopping) return;
        stopping = true;
        const force = setTimeout(() => process.exit(0), 5000);
        server.close().then(
          () => {
            clearTimeout(force);
            process.exit(0);
          },
          (err: unknown) => {
            process.stderr.write(`${name}: close failed: ${String(err)}\n`);
            process.exit(1);
          },
        );
      };
      send({ type: "ready", port: server.port, pid: process.pid });
      const rl = readline.createInterface({ input: process.stdin });
      rl.on("line", (line) => {
        const cmd = line.trim();
        if (cmd === "stats") send({ ...stats() });
        else if (cmd === "exit") stop();
      });
      rl.on("close", stop);
    },
    (err: unknown) => {
      process.stderr.write(`${name}: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
