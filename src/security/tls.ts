// TLS and mTLS for both ports: loads TLS_CERT_FILE / TLS_KEY_FILE (and
// TLS_CLIENT_CA_FILE for client certificates), validates them, and re-reads them when they change
// so that new connections get the new certificate and CA while open connections go on.
//
// How rotation reaches each server:
// - HTTP port (node:http2 secure server with allowHTTP1): `followRotation(server, tls)` calls
//   server.setSecureContext() with the new material; node uses it for new handshakes only.
// - gRPC port (grpc-js): `grpcServerCredentials(tls)` builds credentials on grpc-js's
//   certificate-provider API (grpc.experimental, grpc-js >= 1.10), fed by this module. grpc-js
//   calls setSecureContext() on its own http2 server whenever the provider reports new material,
//   also for servers behind server.createConnectionInjector(). ServerCredentials.createSsl is
//   fixed at creation, and grpc-js's FileWatcherCertificateProvider would hand it files as read
//   (a certificate written before its key, a truncated file) without the checks made here.
//
// A changed file that does not validate (unreadable, not PEM, key not matching the certificate,
// expired) is rejected: the previous material stays in use and an error is logged.

import { X509Certificate, createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import type { SecureServerOptions } from "node:http2";
import { createSecureContext, type SecureContextOptions } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../log";
import { watchFiles, type FileWatch } from "./file-watch";

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** When set, clients must present a certificate signed by this CA (mTLS). */
  clientCaFile?: string;
}

/** Bad TLS settings or files; the message names the variable, the file and the problem. */
export class TlsConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TlsConfigError";
  }
}

/**
 * The TLS files named by the environment, or undefined when TLS is off. TLS_CERT_FILE and
 * TLS_KEY_FILE go together; TLS_CLIENT_CA_FILE needs them (mTLS without TLS means nothing).
 */
export function tlsFilesFromEnv(env: Record<string, string | undefined>): TlsFiles | undefined {
  const cert = env.TLS_CERT_FILE?.trim() || undefined;
  const key = env.TLS_KEY_FILE?.trim() || undefined;
  const ca = env.TLS_CLIENT_CA_FILE?.trim() || undefined;
  if (!cert !== !key) {
    throw new TlsConfigError(
      `${cert ? "TLS_CERT_FILE" : "TLS_KEY_FILE"} is set without ${cert ? "TLS_KEY_FILE" : "TLS_CERT_FILE"}: set both (or neither, for plaintext)`,
    );
  }
  if (!cert || !key) {
    if (ca) throw new TlsConfigError("TLS_CLIENT_CA_FILE is set without TLS_CERT_FILE and TLS_KEY_FILE: client certificates need TLS");
    return undefined;
  }
  return ca ? { certFile: cert, keyFile: key, clientCaFile: ca } : { certFile: cert, keyFile: key };
}

/** One validated version of the files. */
export interface TlsMaterial {
  /** The certificate chain, leaf first (PEM). */
  cert: Buffer;
  key: Buffer;
  /** CA bundle for client certificates (PEM); undefined without mTLS. */
  ca: Buffer | undefined;
  /** Of the leaf certificate: tells versions apart in logs and tests. */
  fingerprint256: string;
  notAfter: Date;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function readOrThrow(variable: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new TlsConfigError(`${variable} ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

function parseCertificates(variable: string, path: string, pem: Buffer): X509Certificate[] {
  const blocks = pem.toString("utf8").match(PEM_CERT) ?? [];
  if (blocks.length === 0)
    throw new TlsConfigError(`${variable} ${path}: no PEM certificate in it (expected "-----BEGIN CERTIFICATE-----")`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new TlsConfigError(`${variable} ${path}: certificate ${i + 1} cannot be parsed (${(err as Error).message})`);
    }
  });
}

/** Validates one version of the files' contents; throws TlsConfigError naming the file and problem. */
export function validateTlsMaterial(
  files: TlsFiles,
  cert: Buffer,
  key: Buffer,
  ca: Buffer | undefined,
  now: Date = new Date(),
): TlsMaterial {
  const leaf = parseCertificates("TLS_CERT_FILE", files.certFile, cert)[0];
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new TlsConfigError(`TLS_KEY_FILE ${files.keyFile}: not an unencrypted PEM private key (${(err as Error).message})`);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new TlsConfigError(`TLS_KEY_FILE ${files.keyFile} is not the private key of the certificate in TLS_CERT_FILE ${files.certFile}`);
  }
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  // Serving an expired (or not yet valid) certificate fails every client's handshake: refuse it.
  if (now.getTime() > notAfter.getTime())
    throw new TlsConfigError(`TLS_CERT_FILE ${files.certFile}: the certificate expired on ${notAfter.toISOString()}`);
  if (now.getTime() < notBefore.getTime())
    throw new TlsConfigError(`TLS_CERT_FILE ${files.certFile}: the certificate is not valid before ${notBefore.toISOString()}`);
  if (ca !== undefined) parseCertificates("TLS_CLIENT_CA_FILE", files.clientCaFile ?? "", ca);
  try {
    // What the servers will do with it: catches anything the checks above do not (e.g. a chain
    // OpenSSL will not load).
    createSecureContext({ cert, key, ca });
  } catch (err) {
    throw new TlsConfigError(
      `TLS_CERT_FILE ${files.certFile} / TLS_KEY_FILE ${files.keyFile}: OpenSSL rejects them (${(err as Error).message})`,
    );
  }
  return { cert, key, ca, fingerprint256: leaf.fingerprint256, notAfter };
}

/** Reads and validates the files now (at start: the service does not start without them). */
export function loadTlsMaterial(files: TlsFiles, now?: Date): TlsMaterial {
  const cert = readOrThrow("TLS_CERT_FILE", files.certFile);
  const key = readOrThrow("TLS_KEY_FILE", files.keyFile);
  const ca = files.clientCaFile !== undefined ? readOrThrow("TLS_CLIENT_CA_FILE", files.clientCaFile) : undefined;
  return validateTlsMaterial(files, cert, key, ca, now);
}

export interface TlsWatcherOptions {
  log: Logger;
  /** Quiet time after a change before re-reading: a certificate and its key are written in turn. */
  debounceMs?: number;
  /** Stat poll interval, the fallback when fs.watch misses a change. */
  pollMs?: number;
}

function sameBuffer(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.equals(b);
}

/**
 * The current TLS material, re-read when the files change (after `start()`). Both servers
 * subscribe to it: one reload, one validation, the same certificate on both ports.
 */
export class TlsWatcher {
  private material: TlsMaterial;
  private readonly changeListeners = new Set<(material: TlsMaterial) => void>();
  private readonly rejectListeners = new Set<(err: TlsConfigError) => void>();
  private watch: FileWatch | undefined;
  /** Fingerprint of the last rejected contents: a bad version is reported once. */
  private lastRejected: string | undefined;

  private constructor(
    readonly files: TlsFiles,
    private readonly options: TlsWatcherOptions,
  ) {
    this.material = loadTlsMaterial(files);
  }

  /** Loads and validates the files; throws TlsConfigError (stop the service) when they are bad. */
  static open(files: TlsFiles, options: TlsWatcherOptions): TlsWatcher {
    return new TlsWatcher(files, options);
  }

  get current(): TlsMaterial {
    return this.material;
  }

  /** Whether clients must present a certificate (TLS_CLIENT_CA_FILE is set). */
  get mutual(): boolean {
    return this.files.clientCaFile !== undefined;
  }

  /** Options for tls.createSecureContext / server.setSecureContext from the current material. */
  secureContextOptions(): SecureContextOptions {
    const { cert, key, ca } = this.material;
    return ca ? { cert, key, ca } : { cert, key };
  }

  start(): this {
    const paths = [this.files.certFile, this.files.keyFile, ...(this.files.clientCaFile ? [this.files.clientCaFile] : [])];
    if (this.watch) return this;
    this.watch = watchFiles(paths, () => this.reload(), {
      debounceMs: this.options.debounceMs ?? 500,
      pollMs: this.options.pollMs ?? 5000,
    });
    // A change between open() and now has no event of its own.
    this.reload().catch((err: unknown) => this.options.log.error("TLS files reload failed", { error: String(err) }));
    return this;
  }

  close(): void {
    this.watch?.close();
    this.watch = undefined;
  }

  /** Called with each new valid material. */
  onChange(listener: (material: TlsMaterial) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Called when changed files do not validate (the previous material stays in use). */
  onReject(listener: (err: TlsConfigError) => void): () => void {
    this.rejectListeners.add(listener);
    return () => this.rejectListeners.delete(listener);
  }

  /** Re-reads the files now; true when new material was installed. */
  async reload(): Promise<boolean> {
    let next: TlsMaterial;
    let version = "";
    try {
      const read = async (variable: string, path: string): Promise<Buffer> => {
        try {
          return await readFile(path);
        } catch (err) {
          throw new TlsConfigError(
            `${variable} ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
          );
        }
      };
      const [cert, key, ca] = await Promise.all([
        read("TLS_CERT_FILE", this.files.certFile),
        read("TLS_KEY_FILE", this.files.keyFile),
        this.files.clientCaFile !== undefined ? read("TLS_CLIENT_CA_FILE", this.files.clientCaFile) : Promise.resolve(undefined),
      ]);
      const cur = this.material;
      if (cert.equals(cur.cert) && key.equals(cur.key) && sameBuffer(ca, cur.ca)) return false;
      version = [cert, key, ca ?? Buffer.alloc(0)].map((b) => b.toString("base64")).join("|");
      if (version === this.lastRejected) return false;
      next = validateTlsMaterial(this.files, cert, key, ca);
    } catch (err) {
      const error = err instanceof TlsConfigError ? err : new TlsConfigError(String(err));
      this.lastRejected = version || undefined;
      this.options.log.error("TLS files rejected; keeping the previous certificate", { error: error.message });
      for (const l of this.rejectListeners) l(error);
      return false;
    }
    this.material = next;
    this.lastRejected = undefined;
    this.options.log.info("TLS files reloaded", {
      fingerprint256: next.fingerprint256,
      not_after: next.notAfter.toISOString(),
      client_ca: next.ca !== undefined,
    });
    for (const l of this.changeListeners) l(next);
    return true;
  }
}

/**
 * Options for the HTTP port's `http2.createSecureServer`: HTTP/2 and HTTP/1.1 over TLS chosen by
 * ALPN (Connect, gRPC-Web and gRPC clients all work there), client certificates required when
 * TLS_CLIENT_CA_FILE is set. Pair with `followRotation(server, tls)`.
 */
export function httpsServerOptions(tls: TlsWatcher): SecureServerOptions {
  return {
    ...tls.secureContextOptions(),
    allowHTTP1: true,
    requestCert: tls.mutual,
    rejectUnauthorized: tls.mutual,
  };
}

/**
 * Keeps a node TLS server (https, http2 secure, tls) on the current material: new handshakes use
 * the new certificate and CA; established connections keep theirs. Returns the unsubscribe.
 */
export function followRotation(
  server: { setSecureContext(options: SecureContextOptions): void },
  tls: TlsWatcher,
  log?: Logger,
): () => void {
  return tls.onChange(() => {
    try {
      server.setSecureContext(tls.secureContextOptions());
    } catch (err) {
      // Validated already; should OpenSSL still refuse, the server keeps its previous context.
      log?.error("cannot install the reloaded TLS files", { error: (err as Error).message });
    }
  });
}

type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;
type CaListener = grpc.experimental.CaCertificateUpdateListener;

/**
 * grpc-js's CertificateProvider interface over a TlsWatcher. Listeners get the current material
 * on the next tick (grpc-js registers its server's watcher only after adding the listener, so a
 * synchronous call would be lost and the server would refuse every connection) and then every
 * change. It never reports null after start: grpc-js would then drop all new connections.
 */
class WatcherCertificateProvider implements grpc.experimental.CertificateProvider {
  private readonly identity = new Set<IdentityListener>();
  private readonly ca = new Set<CaListener>();
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly tls: TlsWatcher) {}

  private subscribe(): void {
    this.unsubscribe ??= this.tls.onChange((m) => {
      for (const l of this.identity) l({ certificate: m.cert, privateKey: m.key });
      for (const l of this.ca) l(m.ca ? { caCertificate: m.ca } : null);
    });
  }

  private maybeUnsubscribe(): void {
    if (this.identity.size === 0 && this.ca.size === 0) {
      this.unsubscribe?.();
      this.unsubscribe = undefined;
    }
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identity.add(listener);
    this.subscribe();
    process.nextTick(() => {
      const m = this.tls.current;
      if (this.identity.has(listener)) listener({ certificate: m.cert, privateKey: m.key });
    });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identity.delete(listener);
    this.maybeUnsubscribe();
  }

  addCaCertificateListener(listener: CaListener): void {
    this.ca.add(listener);
    this.subscribe();
    process.nextTick(() => {
      const m = this.tls.current;
      if (this.ca.has(listener)) listener(m.ca ? { caCertificate: m.ca } : null);
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.ca.delete(listener);
    this.maybeUnsubscribe();
  }
}

/**
 * grpc-js server credentials on the current material, following rotation. With
 * TLS_CLIENT_CA_FILE, clients must present a certificate signed by that CA.
 *
 * Note on grpc-js 1.14's createCertificateProviderServerCredentials(a, b, require): its
 * parameters are named (caCertificateProvider, identityCertificateProvider, …) but it passes
 * them on as (identity, ca, …); the first argument *is* the identity provider (certificate and
 * key), the second the CA provider or null. One provider serves both here, so only the
 * TLS-without-mTLS case depends on the order, and the TLS tests cover that case.
 */
export function grpcServerCredentials(tls: TlsWatcher): grpc.ServerCredentials {
  const provider = new WatcherCertificateProvider(tls);
  return grpc.experimental.createCertificateProviderServerCredentials(provider, tls.mutual ? provider : null, tls.mutual);
}
