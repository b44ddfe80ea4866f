// Structured logs: one JSON object per line on stdout, written by pino:
// {"level":"info","time":"<ISO 8601>", ...fields, "msg":"..."}. Callers never pass secrets;
// connection URIs go through redactUri before they are logged, and pino's redaction masks them
// again (and any field named like a credential) should a caller forget.

import pino from "pino";

export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * Top-level fields masked in every line: credentials ("***"), URIs (through redactUri), and
 * visitors' addresses (no line is meant to carry one: IP_ANONYMIZATION promises that the full
 * address is never logged). Only top-level paths: a wildcard ("*.password") makes pino's
 * redaction about three times slower.
 */
const REDACTED = ["uri", "password", "secret", "token", "authorization", "api_key", "client_ip", "ip"];

/**
 * A logger at `level` ("silent": nothing) writing each line to `write`, by default
 * process.stdout.write: synchronous for files and pipes on Linux, so the last lines before
 * process.exit are kept (pino.destination's synchronous mode would instead sleep 100 ms at a
 * time on a full non-blocking pipe, blocking the event loop).
 */
export function createLogger(level: LogLevel | "silent" = "info", write: (line: string) => void = (l) => process.stdout.write(l)): Logger {
  const logger = pino(
    {
      level,
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACTED, censor: (value, path) => (path.at(-1) === "uri" && typeof value === "string" ? redactUri(value) : "***") },
    },
    { write },
  );
  return {
    debug: (msg, fields) => (fields ? logger.debug(fields, msg) : logger.debug(msg)),
    info: (msg, fields) => (fields ? logger.info(fields, msg) : logger.info(msg)),
    warn: (msg, fields) => (fields ? logger.warn(fields, msg) : logger.warn(msg)),
    error: (msg, fields) => (fields ? logger.error(fields, msg) : logger.error(msg)),
  };
}

/**
 * Query options of a MongoDB URI whose values are never secret; every other option's value is
 * masked in logs (an allowlist: options added to the driver later are masked until listed here).
 */
const PLAIN_URI_OPTIONS = new Set(
  [
    "appName",
    "authMechanism",
    "authSource",
    "compressors",
    "connectTimeoutMS",
    "directConnection",
    "heartbeatFrequencyMS",
    "journal",
    "loadBalanced",
    "localThresholdMS",
    "maxConnecting",
    "maxIdleTimeMS",
    "maxPoolSize",
    "maxStalenessSeconds",
    "minPoolSize",
    "readConcernLevel",
    "readPreference",
    "replicaSet",
    "retryReads",
    "retryWrites",
    "serverSelectionTimeoutMS",
    "socketTimeoutMS",
    "srvMaxHosts",
    "srvServiceName",
    "ssl",
    "timeoutMS",
    "tls",
    "tlsAllowInvalidCertificates",
    "tlsAllowInvalidHostnames",
    "tlsInsecure",
    "w",
    "waitQueueTimeoutMS",
    "wtimeoutMS",
    "zlibCompressionLevel",
  ].map((k) => k.toLowerCase()),
);

// scheme :// [userinfo @] hosts [/ database] [? options]. Userinfo, hosts and database hold no
// raw "@ / ? #" (the driver rejects such URIs: reserved characters must be percent-encoded), so
// a raw "@" or "/" in a password makes the string fail to match rather than leak.
// Hosts are names or [IPv6] with numeric ports and option keys are words, so that a password
// cut by a raw "?" cannot pass for a host ("user:pass?rest@host" has no valid host list).
const HOST = String.raw`(?:[A-Za-z0-9._%-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?`;
const MONGO_URI = new RegExp(String.raw`^(mongodb(?:\+srv)?):\/\/(?:([^@/?#]*)@)?(${HOST}(?:,${HOST})*)(\/[^@/?#]*)?(?:\?([^#]*))?$`);

/**
 * A connection URI as it may be logged: scheme, hosts and database; user and password become
 * "***", and so does the value of every query option not known to be harmless (passwords of
 * key files, authMechanismProperties, proxy passwords...). A string that does not have the
 * shape of a URI (e.g. a password with a raw "@") keeps only its scheme.
 */
export function redactUri(uri: string): string {
  const m = MONGO_URI.exec(uri);
  if (!m) {
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri)?.[1];
    return scheme ? `${scheme}://***` : "***";
  }
  const [, scheme, userinfo, hosts, path, query] = m;
  let out = `${scheme}://${userinfo !== undefined ? "***@" : ""}${hosts}${path ?? ""}`;
  if (query) {
    const options: string[] = [];
    for (const pair of query.split("&").filter(Boolean)) {
      const eq = pair.indexOf("=");
      const key = eq < 0 ? pair : pair.slice(0, eq);
      if (!/^\w+$/.test(key)) return `${scheme}://***`;
      options.push(PLAIN_URI_OPTIONS.has(key.toLowerCase()) ? pair : `${key}=***`);
    }
    out += `?${options.join("&")}`;
  }
  return out;
}

/**
 * Removes from `text` (e.g. a driver's error message about `uri`) every part of `uri` that could
 * be secret: the userinfo and each query value, raw and percent-decoded.
 */
export function scrubUriParts(text: string, uri: string): string {
  const parts = new Set<string>();
  const rest = uri.replace(/^[a-z0-9+.-]+:\/\//i, "");
  // Up to the last "@" is userinfo, even with raw "@" or "/" in the password (over-scrubbing a
  // message is harmless; leaking a password is not).
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    parts.add(userinfo);
    for (const piece of userinfo.split(":")) parts.add(piece);
  }
  const q = rest.indexOf("?", at + 1);
  if (q >= 0) {
    for (const pair of rest.slice(q + 1).split("&")) {
      const eq = pair.indexOf("=");
      if (eq >= 0) parts.add(pair.slice(eq + 1));
    }
  }
  let out = text;
  for (const part of [...parts].sort((a, b) => b.length - a.length)) {
    if (part.length < 2) continue;
    let decoded = part;
    try {
      decoded = decodeURIComponent(part);
    } catch {
      // not percent-encoded: the raw form is enough
    }
    for (const s of new Set([part, decoded])) out = out.split(s).join("***");
  }
  return out;
}
