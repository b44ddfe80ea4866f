// The dashboard's static files, served by the HTTP port at `/` (index.html) and `/<file>`: what
// `npm run build` wrote to dist/web/ (scripts/build-web.js), read once at startup and kept in
// memory (a few hundred KB). The page talks to the API of the same origin, so it works with the
// port's TLS and API keys as they are configured; it holds no data itself.
//
// Every answer carries a Content-Security-Policy that lets the page load only its own files and
// call only its own origin (no inline script, no framing), and an ETag: browsers revalidate
// (Cache-Control: no-cache) and get 304 while the build is unchanged.

import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type * as http from "node:http";
import type * as http2 from "node:http2";

/** Where `npm run build` puts the dashboard, seen from dist/src/rpc/. */
export const BUILT_DASHBOARD_DIR = path.resolve(__dirname, "../../web");

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".png": "image/png",
  ".svg": "image/svg+xml",
};
const MAX_FILES = 32;
const MAX_TOTAL_BYTES = 8 * 1024 * 1024;

const SECURITY_HEADERS: Record<string, string> = {
  "Content-Security-Policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "X-Frame-Options": "DENY",
  "Cache-Control": "no-cache",
};

interface StaticFile {
  body: Buffer;
  type: string;
  etag: string;
}

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

export class Dashboard {
  private constructor(private readonly files: Map<string, StaticFile>) {}

  /**
   * The files of `dir` (not its subfolders), or undefined when it has no index.html (the
   * dashboard was not built: `npm run build`). Throws when the folder holds more than the limits.
   */
  static load(dir: string): Dashboard | undefined {
    if (!fs.existsSync(path.join(dir, "index.html"))) return undefined;
    const files = new Map<string, StaticFile>();
    let total = 0;
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const type = TYPES[path.extname(entry.name)];
      if (!entry.isFile() || type === undefined) continue;
      const body = fs.readFileSync(path.join(dir, entry.name));
      total += body.length;
      if (files.size >= MAX_FILES || total > MAX_TOTAL_BYTES) {
        throw new Error(`the dashboard folder ${dir} holds more than ${MAX_FILES} files or ${MAX_TOTAL_BYTES} bytes`);
      }
      const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
      files.set(`/${entry.name}`, { body, type, etag });
    }
    files.set("/", files.get("/index.html") as StaticFile);
    return new Dashboard(files);
  }

  /** Answers the request when its path is one of the dashboard's files; false otherwise. */
  serve(req: Request, res: Response): boolean {
    const file = this.files.get((req.url ?? "").split("?", 1)[0]);
    if (file === undefined) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET, HEAD" }).end();
      return true;
    }
    const headers: Record<string, string | number> = { ...SECURITY_HEADERS, ETag: file.etag };
    if (req.headers["if-none-match"] === file.etag) {
      res.writeHead(304, headers).end();
      return true;
    }
    headers["Content-Type"] = file.type;
    headers["Content-Length"] = file.body.length;
    res.writeHead(200, headers);
    if (req.method === "HEAD") res.end();
    else res.end(file.body);
    return true;
  }
}
