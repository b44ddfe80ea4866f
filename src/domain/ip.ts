// IP addresses of visitors: strict parsing, one canonical text form, and anonymization
// (IP_ANONYMIZATION). Pure functions, no I/O.
//
// Rules:
// - Accepted: IPv4 in dotted-quad form ("192.0.2.1": four decimal parts 0-255, no leading
//   zeros, which some parsers read as octal) and IPv6 in any RFC 4291 text form ("2001:DB8::1",
//   "::ffff:192.0.2.1", full or compressed), surrounding whitespace ignored. Refused: zone ids
//   ("fe80::1%eth0"), brackets, ports, prefixes ("/24"), and anything over MAX_IP_TEXT_LENGTH
//   characters (the longest valid form is 45).
// - An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket reports for an IPv4
//   client) is the IPv4 address a.b.c.d: it is looked up, anonymized and stored as IPv4.
// - The canonical text is dotted-quad for IPv4 and RFC 5952 for IPv6 (lower case, leading zeros
//   dropped, the longest run of two or more zero groups written "::", the first on a tie).
// - Anonymization: "off" keeps the address, "truncate" zeroes all but the first 24 bits of an
//   IPv4 address and the first 48 bits of an IPv6 one (what Matomo's two-byte masking and Google
//   Analytics' IP anonymization keep of IPv4; /48 is a site's prefix in IPv6), "drop" keeps
//   nothing.

import type { FieldViolation } from "./errors";

export type IpAnonymization = "off" | "truncate" | "drop";
export const IP_ANONYMIZATION_MODES: readonly IpAnonymization[] = ["off", "truncate", "drop"];

/** Longest text accepted as an address (after trimming); "ffff:...:255.255.255.255" is 45. */
export const MAX_IP_TEXT_LENGTH = 64;
/** Prefix lengths kept by "truncate". */
export const TRUNCATE_IPV4_BITS = 24;
export const TRUNCATE_IPV6_BITS = 48;

/** A parsed address: 4 bytes (IPv4, also for IPv4-mapped IPv6) or 16 bytes (IPv6). */
export interface IpAddress {
  readonly version: 4 | 6;
  readonly bytes: Uint8Array;
}

const DECIMAL_OCTET = /^(?:0|[1-9]\d{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!DECIMAL_OCTET.test(parts[i]!)) return undefined;
    const n = Number(parts[i]);
    if (n > 255) return undefined;
    bytes[i] = n;
  }
  return bytes;
}

/** Hex groups (and a trailing dotted IPv4, two groups) of one side of "::", as 16-bit numbers. */
function groups(text: string, allowIpv4Tail: boolean): number[] | undefined {
  if (text === "") return [];
  const parts = text.split(":");
  const out: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (allowIpv4Tail && i === parts.length - 1 && part.includes(".")) {
      const v4 = parseIpv4(part);
      if (!v4) return undefined;
      out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
    } else if (HEX_GROUP.test(part)) {
      out.push(parseInt(part, 16));
    } else {
      return undefined;
    }
  }
  return out;
}

function parseIpv6(text: string): Uint8Array | undefined {
  const gap = text.indexOf("::");
  let words: number[] | undefined;
  if (gap < 0) {
    words = groups(text, true);
    if (!words || words.length !== 8) return undefined;
  } else {
    if (text.indexOf("::", gap + 1) >= 0) return undefined;
    const head = groups(text.slice(0, gap), false);
    const tail = groups(text.slice(gap + 2), true);
    if (!head || !tail || head.length + tail.length > 7) return undefined;
    words = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  const bytes = new Uint8Array(16);
  words.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
}

function isIpv4Mapped(bytes: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/** The address `text` holds, or undefined when it is not one (see the rules above). */
export function parseIp(text: string): IpAddress | undefined {
  if (typeof text !== "string") return undefined;
  const t = text.trim();
  if (t === "" || t.length > MAX_IP_TEXT_LENGTH) return undefined;
  if (!t.includes(":")) {
    const v4 = parseIpv4(t);
    return v4 ? { version: 4, bytes: v4 } : undefined;
  }
  const v6 = parseIpv6(t);
  if (!v6) return undefined;
  return isIpv4Mapped(v6) ? { version: 4, bytes: v6.slice(12) } : { version: 6, bytes: v6 };
}

/** The canonical text of an address (dotted quad; RFC 5952 for IPv6). */
export function formatIp(ip: IpAddress): string {
  const b = ip.bytes;
  if (ip.version === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const words = Array.from({ length: 8 }, (_, i) => (b[2 * i]! << 8) | b[2 * i + 1]!);
  // The longest run of zero groups (at least two), the first one on a tie.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  if (best < 0) return hex(words);
  return `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLen))}`;
}

/** The address with every bit after the first `bits` set to zero. */
export function maskIp(ip: IpAddress, bits: number): IpAddress {
  const bytes = ip.bytes.slice();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - 8 * i));
    bytes[i]! &= keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff;
  }
  return { version: ip.version, bytes };
}

/** Networks of no place: private, shared (CGNAT), loopback, link-local, multicast, reserved. */
const LOCAL_NETWORKS: readonly [version: 4 | 6, prefix: number[], bits: number][] = [
  [4, [0], 8],
  [4, [10], 8],
  [4, [100, 64], 10],
  [4, [127], 8],
  [4, [169, 254], 16],
  [4, [172, 16], 12],
  [4, [192, 168], 16],
  [4, [224], 4],
  [4, [240], 4],
  [6, [], 128], // :: (with the all-zero bytes below)
  [6, [...new Array<number>(15).fill(0), 1], 128], // ::1
  [6, [0xfc], 7],
  [6, [0xfe, 0x80], 10],
  [6, [0xff], 8],
];

/**
 * Whether the address is of no place (see LOCAL_NETWORKS): such addresses are not looked up, as
 * geo databases may still hold stray records for them. Documentation ranges are not local.
 */
export function isLocalIp(ip: IpAddress): boolean {
  return LOCAL_NETWORKS.some(([version, prefix, bits]) => {
    if (version !== ip.version) return false;
    const masked = maskIp(ip, bits).bytes;
    return masked.every((b, i) => b === (prefix[i] ?? 0));
  });
}

/** What may be stored or logged of `ip` under `mode`: its canonical text, truncated, or null. */
export function anonymizeIp(ip: IpAddress, mode: IpAnonymization): string | null {
  if (mode === "drop") return null;
  if (mode === "off") return formatIp(ip);
  return formatIp(maskIp(ip, ip.version === 4 ? TRUNCATE_IPV4_BITS : TRUNCATE_IPV6_BITS));
}

/**
 * A field that must hold an IP address when not empty. The description never repeats the value:
 * it may be a visitor's full address, which is not to reach a log or an error report.
 */
export function checkIp(field: string, value: string | null): FieldViolation[] {
  if (value === null || value.trim() === "" || parseIp(value) !== undefined) return [];
  const long = value.trim().length > MAX_IP_TEXT_LENGTH;
  return [
    {
      field,
      description: long
        ? `must be an IPv4 or IPv6 address (at most ${MAX_IP_TEXT_LENGTH} characters)`
        : "must be an IPv4 or IPv6 address (e.g. 192.0.2.1 or 2001:db8::1), without port, brackets or zone",
    },
  ];
}
