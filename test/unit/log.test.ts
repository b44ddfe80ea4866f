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
    expect(lines[0]).toMatch(/\n$/);
    expect(lines[0]!.slice(0, -1)).not.toContain("\n");
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: "warn", msg: "shown", uri: "mongodb://***@h/" });
  });

  it("writes level, ISO time, message and the fields, nothing else", () => {
    const lines: string[] = [];
    const log = createLogger("debug", (l) => lines.push(l));
    log.debug("a", { n: 1, nested: { ok: true }, none: null, gone: undefined });
    log.error("b");
    const [a, b] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(a).toEqual({
      level: "debug",
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      msg: "a",
      n: 1,
      nested: { ok: true },
      none: null,
    });
    expect(b).toEqual({ level: "error", time: expect.any(String), msg: "b" });
  });

  it("writes nothing at level silent", () => {
    const lines: string[] = [];
    const log = createLogger("silent", (l) => lines.push(l));
    log.error("hidden");
    log.warn("hidden");
    expect(lines).toEqual([]);
  });

  it("masks credentials and unredacted URIs should a caller pass them", () => {
    const lines: string[] = [];
    const log = createLogger("info", (l) => lines.push(l));
    const fields = { uri: "mongodb://app:s3cret@db:27017/x?proxyPassword=pr0xy", password: "hunter2", token: "t0k", database: "x" };
    log.info("opening store", fields);
    expect(fields.password).toBe("hunter2"); // the caller's object is left as it was
    expect(lines[0]).not.toMatch(/s3cret|pr0xy|hunter2|t0k/);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      uri: "mongodb://***@db:27017/x?proxyPassword=***",
      password: "***",
      token: "***",
      database: "x",
    });
    // A URI already redacted by the caller is logged as it is.
    log.info("opening store", { uri: redactUri("mongodb://u:pw@h/?replicaSet=rs0") });
    expect(JSON.parse(lines[1]!)).toMatchObject({ uri: "mongodb://***@h/?replicaSet=rs0" });
  });
});
