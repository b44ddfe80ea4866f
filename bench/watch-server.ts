// A service replica for `npm run bench:watch` (bench/watch-bench.ts): the real service
// (startServer) on the store the bench passes in the environment:
//   BENCH_DATA_DIR                       embedded SQLite store in that directory (shared by replicas)
//   BENCH_MONGODB_URI, BENCH_MONGODB_DB  MongoDB store (FerretDB), shared by replicas
//   BENCH_WATCH_POLL_MS                  WATCH_POLL_INTERVAL in ms (optional; the service's default otherwise)
// It speaks the protocol of bench/child.ts (ready / stats / exit) plus two commands of its own:
//   gc       -> runs a full GC (node --expose-gc) and prints `BENCH {"type":"gc"}`
//   watchers -> prints `BENCH {"type":"watchers","watchers":N,"waiting":N,"head":N}` (the feed's
//               open watchers, pending waits and head revision)
//   loop     -> prints `BENCH {"type":"loop","p50":ms,"p99":ms,"max":ms}`: event-loop delay since
//               the previous `loop` command (perf_hooks.monitorEventLoopDelay, 10 ms resolution)

import * as readline from "node:readline";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { loadConfig } from "../src/config";
import { createLogger } from "../src/log";
import { startServer, type RunningServer } from "../src/server";
import { runChild } from "./child";
import { send } from "./lib/protocol";

let running: RunningServer | undefined;
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

runChild("watch-server", async () => {
  const env: Record<string, string> = {
    GRPC_PORT: "0",
    HTTP_PORT: "0",
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL || "silent",
    SHUTDOWN_GRACE: "1s",
  };
  if (process.env.BENCH_MONGODB_URI) {
    env.MONGODB_URI = process.env.BENCH_MONGODB_URI;
    env.MONGODB_DATABASE = process.env.BENCH_MONGODB_DB || "bench";
  } else if (process.env.BENCH_DATA_DIR) {
    env.DATA_DIR = process.env.BENCH_DATA_DIR;
  } else {
    throw new Error("set BENCH_DATA_DIR or BENCH_MONGODB_URI");
  }
  if (process.env.BENCH_WATCH_POLL_MS) env.WATCH_POLL_INTERVAL = `${process.env.BENCH_WATCH_POLL_MS}ms`;
  const config = loadConfig(env);
  const log = createLogger(config.logLevel);
  running = await startServer(config, log);
  const server = running;
  return { port: server.grpcPort, close: () => server.close() };
});

// The extra commands; runChild's own reader ignores them (and handles stats / exit / EOF).
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = line.trim();
  if (cmd === "gc") {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc) {
      gc();
      gc();
    }
    send({ type: "gc", available: gc !== undefined });
  } else if (cmd === "loop") {
    const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
    send({ type: "loop", p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) });
    loopDelay.reset();
  } else if (cmd === "watchers") {
    send({
      type: "watchers",
      watchers: running?.feed.watchers ?? 0,
      waiting: running?.feed.waiting ?? 0,
      head: running?.feed.headRevision ?? 0,
    });
  }
});
