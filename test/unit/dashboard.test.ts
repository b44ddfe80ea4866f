// The dashboard's static files: what is served, with which headers, and what is refused.

import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { Dashboard } from "../../src/rpc/dashboard";

let dir: string;
let server: http.Server;
let base: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "dashboard-"));
  fs.writeFileSync(path.join(dir, "index.html"), "<!doctype html><title>t</title>");
  fs.writeFileSync(path.join(dir, "app.js"), "console.log(1)");
  fs.writeFileSync(path.join(dir, "notes.unknown"), "not served");
  fs.mkdirSync(path.join(dir, "sub"));
  fs.writeFileSync(path.join(dir, "sub", "inner.js"), "not served");
  const dashboard = Dashboard.load(dir) as Dashboard;
  server = http.createServer((req, res) => {
    if (!dashboard.serve(req, res)) res.writeHead(404, { "X-Not-Dashboard": "1" }).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("Dashboard", () => {
  it("serves index.html at / and the built files by name, with a strict CSP", async () => {
    const root = await fetch(`${base}/`);
    expect(root.status).toBe(200);
    expect(root.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(await root.text()).toBe("<!doctype html><title>t</title>");
    expect(root.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(root.headers.get("content-security-policy")).toContain("connect-src 'self'");
    expect(root.headers.get("x-content-type-options")).toBe("nosniff");
    const js = await fetch(`${base}/app.js?v=1`);
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(await js.text()).toBe("console.log(1)");
  });

  it("answers a matching If-None-Match with 304 and HEAD without a body", async () => {
    const first = await fetch(`${base}/app.js`);
    const etag = first.headers.get("etag") as string;
    expect(etag).toMatch(/^"[\w-]{22}"$/);
    const again = await fetch(`${base}/app.js`, { headers: { "If-None-Match": etag } });
    expect(again.status).toBe(304);
    const head = await fetch(`${base}/app.js`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe("14");
    expect(await head.text()).toBe("");
  });

  it("leaves other paths to the caller and refuses other methods", async () => {
    for (const p of ["/notes.unknown", "/sub/inner.js", "/sub%2Finner.js", "/index.html/", "/nope"]) {
      const res = await fetch(`${base}${p}`);
      expect([p, res.status, res.headers.get("x-not-dashboard")]).toEqual([p, 404, "1"]);
    }
    const post = await fetch(`${base}/`, { method: "POST", body: "x" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
  });

  it("is undefined for a folder with no index.html (not built)", () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), "dashboard-empty-"));
    try {
      expect(Dashboard.load(empty)).toBeUndefined();
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });

  it("refuses a folder over its limits", () => {
    const big = fs.mkdtempSync(path.join(os.tmpdir(), "dashboard-big-"));
    try {
      fs.writeFileSync(path.join(big, "index.html"), "x");
      for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(big, `f${i}.js`), "x");
      expect(() => Dashboard.load(big)).toThrow(/more than 32 files/);
    } finally {
      fs.rmSync(big, { recursive: true, force: true });
    }
  });
});
