import { createLogger, redactUri, scrubUriParts } from "../../src/log";

describe("redactUri", () => {
  it.each([
    ["mongodb://db:27017/?replicaSet=rs0", "mongodb://db:27017/?replicaSet=rs0"],
    ["mongodb://app:s3cret@db1:27017,db2:27017/sessions?authSource=admin", "mongodb://***@db1:27017,db2:27017/sessions?authSource=admin"],
    ["mongodb://app@db/", "mongodb://***@db/"],
    ["mongodb+srv://app:pa%40ss@cluster.example.net/x", "mongodb+srv://***@cluster.example.net/x"],
    [
      "mongodb://db/?tls=true&tlsCertificateKeyFile=/k.pem&tlsCertificateKeyFilePassword=k3y&authMechanismProperties=AWS_SESSION_TOKEN:t0k&proxyPassword=pr0xy&replicaSet=rs0",
      "mongodb://db/?tls=true&tlsCertificateKeyFile=***&tlsCertificateKeyFilePassword=***&authMechanismProperties=***&proxyPassword=***&replicaSet=rs0",
    ],
    // Option names are case-insensitive for the driver: so is the allowlist; unknown ones are masked.
    ["mongodb://db/?REPLICASET=rs0&futureSecretOption=x", "mongodb://db/?REPLICASET=rs0&futureSecretOption=***"],
  ])("logs %s as %s", (uri, logged) => {
    expect(redactUri(uri)).toBe(logged);
  });

  it.each([
    ["a raw @ in the password", "mongodb://app:p@ss-s3cret@db:27017/", ["p@ss", "ss-s3cret", "app"]],
    ["a raw / in the password", "mongodb://app:s3cret/x@db:27017/", ["s3cret", "app"]],
    ["a raw ? in the password", "mongodb://app:s3c?ret@db:27017/", ["s3c", "ret", "app"]],
    ["garbage", "not a uri with s3cret", ["s3cret"]],
  ])("keeps only the scheme of a string that is not a well-formed URI (%s)", (_what, uri, secrets) => {
    const out = redactUri(uri);
    for (const secret of secrets) expect(out).not.toContain(secret);
    expect(out).toMatch(/\*\*\*$/);
  });
});

describe("scrubUriParts", () => {
  it("removes the userinfo and every query value, raw and decoded, from a message", () => {
    const uri = "mongodb://app:pa%40ss@db/?tlsCertificateKeyFilePassword=k3y%21&appName=svc";
    const msg = "failed for app:pa%40ss with pa@ss and pa%40ss, key k3y! / k3y%21, app svc at db";
    const out = scrubUriParts(msg, uri);
    for (const secret of ["pa@ss", "pa%40ss", "k3y!", "k3y%21"]) expect(out).not.toContain(secret);
    expect(out).toContain("at db");
  });
});

describe("createLogger", () => {
  it("writes one JSON object per line at or above its level", () => {
    const lines: string[] = [];
    const log = createLogger("warn", (l) => lines.push(l));
    log.info("hidden");
    log.warn("shown", { uri: redactUri("mongodb://u:pw@h/") });
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: "warn", msg: "shown", uri: "mongodb://***@h/" });
  });
});
