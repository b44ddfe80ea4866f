// MONGODB_URI as the service process handles it (issue 10, defect 9): an unparsable URI stops the
// service at start (exit 2, naming the variable, no secret); a valid one is logged without its
// password or any secret query value, even while the database cannot be reached.

import { spawnSync } from "node:child_process";
import { MAIN, startProcess } from "../support/process";
import { eventually } from "../support/tools";

jest.setTimeout(30_000);

describe("MONGODB_URI secrets and validation", () => {
  it.each([
    ["a raw @ in the password", "mongodb://app:p@ss-s3cret@127.0.0.1:1/sessions", ["p@ss-s3cret", "ss-s3cret"]],
    [
      "an unknown option next to a key file password",
      "mongodb://app:hunter22@127.0.0.1:1/?tlsCertificateKeyFilePassword=k3yp4ss&bogusOption=1",
      ["hunter22", "k3yp4ss"],
    ],
  ])("stops at start with exit code 2 on a URI with %s, naming MONGODB_URI and no secret", (_what, uri, secrets) => {
    const result = spawnSync(process.execPath, [MAIN], {
      env: { PATH: process.env.PATH ?? "", MONGODB_URI: uri, GRPC_PORT: "0", HTTP_PORT: "0" },
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("MONGODB_URI");
    for (const secret of secrets) expect(result.stdout + result.stderr).not.toContain(secret);
  });

  it("logs a valid URI without its password or secret options, also while the database is unreachable", async () => {
    const secrets = ["s3cr@t", "s3cr%40t", "k3yp4ss", "pr0xy"];
    const svc = await startProcess({
      // Port 1 on loopback: nothing listens, so the store keeps retrying (and logging) in the background.
      MONGODB_URI:
        "mongodb://app:s3cr%40t@127.0.0.1:1/sessions?tls=true&tlsCertificateKeyFilePassword=k3yp4ss&proxyHost=127.0.0.1&proxyUsername=pu&proxyPassword=pr0xy&serverSelectionTimeoutMS=200&connectTimeoutMS=200",
      LOG_LEVEL: "debug",
    });
    try {
      await eventually(async () => svc.lines.some((l) => l.includes("store unavailable, retrying")), 20_000, "a retry logged");
      const opening = svc.lines
        .map((l) => (l.startsWith("{") ? (JSON.parse(l) as { msg: string; uri?: string }) : undefined))
        .find((e) => e?.msg === "opening store");
      expect(opening?.uri).toBe(
        "mongodb://***@127.0.0.1:1/sessions?tls=true&tlsCertificateKeyFilePassword=***&proxyHost=***&proxyUsername=***&proxyPassword=***&serverSelectionTimeoutMS=200&connectTimeoutMS=200",
      );
      const output = svc.lines.join("\n");
      for (const secret of secrets) expect(output).not.toContain(secret);
    } finally {
      await svc.stop();
    }
  });
});
