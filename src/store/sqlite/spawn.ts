// Starting a worker script of this folder, both in the built service and under ts-jest.

import path from "node:path";
import { Worker } from "node:worker_threads";

// Under ts-jest the sources run as TypeScript, which a worker thread cannot load by itself: the
// thread then registers a loader that transpiles each .ts file once (cached on disk by content)
// before loading the worker script. The built service (dist/) loads the compiled script directly.
const TS_BOOTSTRAP = `
const { workerData, threadId } = require("node:worker_threads");
const fs = require("node:fs");
const path = require("node:path");
const crypto = require("node:crypto");
const cacheDir = path.join(require("node:os").tmpdir(), "session-service-ts-cache");
let ts;
require.extensions[".ts"] = (module, filename) => {
  const source = fs.readFileSync(filename, "utf8");
  const key = crypto.createHash("sha256").update(filename).update("\\0").update(source).digest("hex");
  const cached = path.join(cacheDir, key + ".js");
  let js;
  try {
    js = fs.readFileSync(cached, "utf8");
  } catch {
    ts ??= require(workerData.typescript);
    js = ts.transpileModule(source, {
      fileName: filename,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, sourceMap: false },
    }).outputText;
    fs.mkdirSync(cacheDir, { recursive: true });
    const tmp = cached + "." + process.pid + "." + threadId;
    fs.writeFileSync(tmp, js);
    fs.renameSync(tmp, cached);
  }
  module._compile(js, filename);
};
require(workerData.script);
`;

/**
 * Starts the worker script `<name>.js` of this folder (`<name>.ts` through TS_BOOTSTRAP when the
 * sources run as TypeScript): worker.ts from the main thread, checkpoint-worker.ts from the writer.
 */
export function startScript(name: "worker" | "checkpoint-worker", workerData: Record<string, unknown>): Worker {
  if (__filename.endsWith(".js")) return new Worker(path.join(__dirname, `${name}.js`), { workerData });
  return new Worker(TS_BOOTSTRAP, {
    eval: true,
    workerData: { ...workerData, script: path.join(__dirname, `${name}.ts`), typescript: require.resolve("typescript") },
  });
}
