// Builds the dashboard (web/) into dist/web/: esbuild bundles web/src/main.ts with its imports
// (connect-web, the generated code) into app.js; index.html and app.css are copied. Run by
// `npm run build`; the HTTP port serves dist/web/ at `/` (src/rpc/dashboard.ts).
const fs = require("fs");
const path = require("path");
const esbuild = require("esbuild");

const root = path.join(__dirname, "..");
const out = path.join(root, "dist", "web");
fs.mkdirSync(out, { recursive: true });
esbuild.buildSync({
  entryPoints: [path.join(root, "web", "src", "main.ts")],
  outfile: path.join(out, "app.js"),
  bundle: true,
  format: "iife",
  target: ["es2022"],
  minify: true,
  sourcemap: "linked",
  legalComments: "linked",
  logLevel: "warning",
});
for (const file of ["index.html", "app.css"]) fs.copyFileSync(path.join(root, "web", file), path.join(out, file));
