// Test certificates made with the machine's `openssl` in a temporary directory: CAs, server
// certificates (SAN localhost and 127.0.0.1), client certificates, expired ones. No private key
// is ever committed; call cleanup() to remove the directory.
//
// P-256 keys: generated in milliseconds, and accepted by every client the tests use (node,
// grpc-js, grpcio, Go, curl, grpcurl).

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface CertFiles {
  /** PEM certificate file (for a CA: its self-signed certificate). */
  cert: string;
  /** PEM private key file (unencrypted). */
  key: string;
}

export interface IssueOptions {
  /** Validity in days from now; negative makes a certificate that has already expired. Default 2. */
  days?: number;
}

export class TestCertificates {
  readonly dir: string;
  private counter = 0;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "session-certs-"));
  }

  private openssl(args: string[]): void {
    try {
      execFileSync("openssl", args, { cwd: this.dir, stdio: ["ignore", "pipe", "pipe"] });
    } catch (err) {
      const e = err as { stderr?: Buffer; message: string };
      throw new Error(`openssl ${args[0]} failed: ${e.stderr?.toString() || e.message}`, { cause: err });
    }
  }

  private next(name: string): string {
    return join(this.dir, `${String(++this.counter).padStart(2, "0")}-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`);
  }

  /** A self-signed CA. */
  ca(name = "Test CA"): CertFiles {
    const base = this.next(name);
    const files = { cert: `${base}.crt`, key: `${base}.key` };
    this.openssl([
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      files.key,
      "-out",
      files.cert,
      "-subj",
      `/CN=${name}`,
      "-days",
      "2",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    return files;
  }

  private issue(ca: CertFiles, cn: string, extensions: string, options: IssueOptions): CertFiles {
    const base = this.next(cn);
    const files = { cert: `${base}.crt`, key: `${base}.key` };
    this.openssl([
      "req",
      "-new",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      files.key,
      "-out",
      `${base}.csr`,
      "-subj",
      `/CN=${cn}`,
    ]);
    writeFileSync(`${base}.ext`, extensions);
    this.openssl([
      "x509",
      "-req",
      "-in",
      `${base}.csr`,
      "-CA",
      ca.cert,
      "-CAkey",
      ca.key,
      // A random serial: two certificates for the same name must differ (rotation tests).
      "-set_serial",
      `0x${Date.now().toString(16)}${String(this.counter).padStart(4, "0")}`,
      "-days",
      String(options.days ?? 2),
      "-extfile",
      `${base}.ext`,
      "-out",
      files.cert,
    ]);
    return files;
  }

  /** A server certificate for localhost and 127.0.0.1 signed by `ca`. */
  server(ca: CertFiles, cn = "localhost", options: IssueOptions = {}): CertFiles {
    return this.issue(
      ca,
      cn,
      "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
      options,
    );
  }

  /** A client certificate (for mTLS) signed by `ca`. */
  client(ca: CertFiles, cn = "client", options: IssueOptions = {}): CertFiles {
    return this.issue(ca, cn, "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n", options);
  }

  read(path: string): Buffer {
    return readFileSync(path);
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
