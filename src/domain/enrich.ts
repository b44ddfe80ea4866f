// Enrichment of a new session from what the tracker sends: the user agent (os, device, app) and
// the page URL (utm). Pure functions, no I/O; the only state is a bounded cache of parse results.
//
// User agent rules (parseUserAgent):
// - The user agent is trimmed and only its first MAX_USER_AGENT_LENGTH characters are considered
//   (ua-parser is regex-heavy; this bounds the cost of hostile input). Empty or whitespace-only →
//   everything unknown and bot = false (isbot alone would call an empty string a bot).
// - Unknown names are "Other" (os.name, device.name, app.name), unknown versions "", unknown
//   brand/model/type null. app.type is always "browser"; app.name/version are ua-parser's browser.
// - device.type is ua-parser's type (mobile, tablet, smarttv, wearable, console, embedded, xr...).
//   When ua-parser gives none, the OS is a desktop OS (Windows, Mac OS, Chromium OS, Linux and its
//   distributions, the BSDs, Solaris, ...; see DESKTOP_OS_NAMES) and the agent is not a bot, the
//   type is "desktop". Otherwise it stays null. iPadOS 13+ in its default "desktop site" mode sends
//   a Mac user agent and is therefore reported as an Apple Macintosh desktop: the difference is not
//   visible in the user agent.
// - device.name is "<brand> <model>" (e.g. "Apple iPhone"), just the model when it already starts
//   with the brand (ua-parser's "Apple TV"), the brand or the model alone when only one is known,
//   and "Other" when neither is.
// - device.touch is true for the mobile, tablet and wearable types (iPhone, iPad, Android phones
//   and tablets, watches), and for Windows user agents carrying IE 10/11's "Touch" token (a touch
//   screen PC). It follows the type even for bots that announce a mobile device (Googlebot
//   smartphone), since that is the device they emulate.
// - app.bot is isbot's verdict on the (trimmed, capped) user agent.
// - Results are cached per (trimmed, capped) user agent in an LRU cache of DEFAULT_UA_CACHE_SIZE
//   entries; every call returns a fresh copy, so callers may mutate what they get.
//
// UTM rules (parseUtm): see the function's comment.

import UAParser from "ua-parser-js";
import { isbot } from "isbot";
import { UNKNOWN_NAME, type UtmDoc } from "./session";

export interface ParsedUserAgent {
  os: { name: string; version: string };
  device: { name: string; brand: string | null; model: string | null; type: string | null; touch: boolean };
  app: { type: "browser"; name: string; version: string; bot: boolean };
}

/** Only this many characters of a user agent (after trimming) are parsed and used as cache key. */
export const MAX_USER_AGENT_LENGTH = 512;
/** Entries kept by the default cache behind parseUserAgent. */
export const DEFAULT_UA_CACHE_SIZE = 1000;
/** device.type given to non-bot agents on a desktop OS when ua-parser names no type. */
export const DESKTOP_DEVICE_TYPE = "desktop";

const TOUCH_DEVICE_TYPES: ReadonlySet<string> = new Set(["mobile", "tablet", "wearable"]);

/** ua-parser OS names (compared lower-cased) that run on desktop and laptop computers. */
const DESKTOP_OS_NAMES: ReadonlySet<string> = new Set([
  "windows",
  "mac os",
  "macos",
  "chromium os",
  "chrome os",
  "linux",
  "ubuntu",
  "kubuntu",
  "xubuntu",
  "lubuntu",
  "debian",
  "fedora",
  "mint",
  "suse",
  "opensuse",
  "gentoo",
  "arch",
  "slackware",
  "mandriva",
  "mageia",
  "centos",
  "pclinuxos",
  "redhat",
  "red hat",
  "zenwalk",
  "linpus",
  "raspbian",
  "deepin",
  "manjaro",
  "elementary os",
  "sabayon",
  "linspire",
  "vectorlinux",
  "gnu",
  "hurd",
  "dragonfly",
  "solaris",
  "opensolaris",
  "aix",
  "hp-ux",
  "haiku",
  "beos",
  "os/2",
  "amigaos",
  "morphos",
  "openvms",
  "unix",
  "plan 9",
  "risc os",
  "minix",
  "serenityos",
]);

/** IE 10/11 put "Touch" in the platform comment on touch-capable Windows machines. */
const WINDOWS_TOUCH_TOKEN = /;\s*Touch\s*[;)]/;

function isDesktopOs(osName: string | null): boolean {
  if (osName === null) return false;
  const name = osName.toLowerCase();
  return DESKTOP_OS_NAMES.has(name) || name.endsWith("bsd"); // FreeBSD, OpenBSD, NetBSD, PC-BSD...
}

function known(value: string | undefined): string | null {
  return value !== undefined && value.trim() !== "" ? value : null;
}

function deviceName(brand: string | null, model: string | null): string {
  if (brand !== null && model !== null) {
    return model.toLowerCase().startsWith(brand.toLowerCase()) ? model : `${brand} ${model}`;
  }
  return model ?? brand ?? UNKNOWN_NAME;
}

function copyParsed(p: ParsedUserAgent): ParsedUserAgent {
  return {
    os: { name: p.os.name, version: p.os.version },
    device: {
      name: p.device.name,
      brand: p.device.brand,
      model: p.device.model,
      type: p.device.type,
      touch: p.device.touch,
    },
    app: { type: p.app.type, name: p.app.name, version: p.app.version, bot: p.app.bot },
  };
}

function freezeParsed(p: ParsedUserAgent): Readonly<ParsedUserAgent> {
  Object.freeze(p.os);
  Object.freeze(p.device);
  Object.freeze(p.app);
  return Object.freeze(p);
}

const UNKNOWN_USER_AGENT: Readonly<ParsedUserAgent> = freezeParsed({
  os: { name: UNKNOWN_NAME, version: "" },
  device: { name: UNKNOWN_NAME, brand: null, model: null, type: null, touch: false },
  app: { type: "browser", name: UNKNOWN_NAME, version: "", bot: false },
});

/** The cache key and parse input: trimmed, at most MAX_USER_AGENT_LENGTH characters. */
function normalizeUserAgent(userAgent: string): string {
  if (typeof userAgent !== "string") return "";
  return userAgent.trimStart().slice(0, MAX_USER_AGENT_LENGTH).trimEnd();
}

/** Parses a user agent with the ua-parser instance given; `ua` is already normalized, non-empty. */
function parseNormalized(parser: UAParser.UAParserInstance, ua: string): ParsedUserAgent {
  // Only the three parts needed are computed (getResult would also run the engine and CPU rules).
  parser.setUA(ua);
  const browser = parser.getBrowser();
  const os = parser.getOS();
  const device = parser.getDevice();

  const bot = isbot(ua);
  const osName = known(os.name);
  const brand = known(device.vendor);
  const model = known(device.model);
  let type = known(device.type);
  if (type === null && !bot && isDesktopOs(osName)) type = DESKTOP_DEVICE_TYPE;
  const touch =
    (type !== null && TOUCH_DEVICE_TYPES.has(type)) ||
    (osName !== null && osName.toLowerCase() === "windows" && WINDOWS_TOUCH_TOKEN.test(ua));

  return {
    os: { name: osName ?? UNKNOWN_NAME, version: known(os.version) ?? "" },
    device: { name: deviceName(brand, model), brand, model, type, touch },
    app: { type: "browser", name: known(browser.name) ?? UNKNOWN_NAME, version: known(browser.version) ?? "", bot },
  };
}

/**
 * A user agent parser with its own LRU cache (a Map kept in use order: a hit moves its entry to
 * the end, an insert beyond capacity evicts the first). Capacity 0 disables caching.
 */
export class UserAgentParser {
  readonly capacity: number;
  private readonly cache = new Map<string, Readonly<ParsedUserAgent>>();
  private readonly parser = new UAParser();

  constructor(capacity: number = DEFAULT_UA_CACHE_SIZE) {
    if (!Number.isInteger(capacity) || capacity < 0) {
      throw new RangeError(`cache capacity must be a non-negative integer, got ${capacity}`);
    }
    this.capacity = capacity;
  }

  /** See the rules at the top of this file. Returns a fresh object on every call. */
  parse(userAgent: string): ParsedUserAgent {
    const ua = normalizeUserAgent(userAgent);
    if (ua === "") return copyParsed(UNKNOWN_USER_AGENT);

    const hit = this.cache.get(ua);
    if (hit !== undefined) {
      this.cache.delete(ua);
      this.cache.set(ua, hit);
      return copyParsed(hit);
    }

    const parsed = freezeParsed(parseNormalized(this.parser, ua));
    if (this.capacity > 0) {
      this.cache.set(ua, parsed);
      if (this.cache.size > this.capacity) {
        const oldest = this.cache.keys().next();
        if (!oldest.done) this.cache.delete(oldest.value);
      }
    }
    return copyParsed(parsed);
  }

  /** Number of cached user agents. */
  get size(): number {
    return this.cache.size;
  }

  /** Whether the parse result of this user agent is cached (does not refresh its position). */
  has(userAgent: string): boolean {
    return this.cache.has(normalizeUserAgent(userAgent));
  }

  clear(): void {
    this.cache.clear();
  }
}

const defaultParser = new UserAgentParser(DEFAULT_UA_CACHE_SIZE);

/** Parses a user agent into Tracardi's os / device / app fields, through a shared LRU cache. */
export function parseUserAgent(userAgent: string): ParsedUserAgent {
  return defaultParser.parse(userAgent);
}

// ---------------------------------------------------------------------------------------------
// UTM

/** The page URL is not a URL we can read (the caller reports INVALID_ARGUMENT on page_url). */
export class InvalidUrlError extends Error {
  /** The URL as given. */
  readonly url: string;
  constructor(url: string, reason: string, options?: { cause?: unknown }) {
    super(`invalid URL: ${reason}`, options);
    this.name = "InvalidUrlError";
    this.url = url;
  }
}

const UTM_KEYS = ["source", "medium", "campaign", "term", "content"] as const;

const SCHEME = /^([a-z][a-z\d+.-]*):/i;
/** After "host:" — a port, then the end or a path, query or fragment. */
const PORT_THEN_REST = /^\d+(?:[/?#]|$)/;

/** Turns a page URL into a URL object following the rules of parseUtm; throws InvalidUrlError. */
function toUrl(pageUrl: string, input: string): URL {
  let absolute: string;
  const scheme = SCHEME.exec(input);
  if (input.startsWith("//")) {
    absolute = `https:${input}`; // protocol-relative
  } else if (scheme !== null) {
    const rest = input.slice(scheme[0].length);
    const name = scheme[1]!.toLowerCase();
    if (rest.startsWith("//") || name === "http" || name === "https") {
      absolute = input; // "scheme://...", or http(s) that WHATWG completes ("https:host/...")
    } else if (PORT_THEN_REST.test(rest)) {
      absolute = `https://${input}`; // "host:port/..." without a scheme
    } else {
      throw new InvalidUrlError(pageUrl, `"${scheme[1]}:" URLs have no host and are not page URLs`);
    }
  } else if (/^[/?#.\\]/.test(input)) {
    throw new InvalidUrlError(pageUrl, "relative URL; the page URL must be absolute");
  } else {
    absolute = `https://${input}`; // "shop.example/?utm_source=x"
  }
  try {
    return new URL(absolute);
  } catch (error) {
    throw new InvalidUrlError(pageUrl, "not a parsable URL", { cause: error });
  }
}

/**
 * The utm_source / utm_medium / utm_campaign / utm_term / utm_content parameters of a page URL.
 *
 * - Accepted URLs: absolute "scheme://..." (any scheme, so app deep links such as
 *   "myapp://open?utm_source=push" work), protocol-relative "//host/...", and scheme-less
 *   "host/..." or "host:port/..." which are read as "https://" + URL. Rejected with
 *   InvalidUrlError: what WHATWG's URL parser refuses, relative URLs ("/path", "?q", "#f", "./x"),
 *   and host-less schemes such as "mailto:" or "javascript:".
 * - Empty or whitespace-only pageUrl: null (proto3 cannot tell "unset" from ""; nothing to read).
 * - Values are decoded as a query string ("+" is a space, %XX decoded) and trimmed; an empty
 *   value counts as absent, so a parameter's value is its first non-empty occurrence.
 * - Names are matched exactly (lower case, as Google Analytics does); the fragment is not read.
 * - Returns null when none of the five has a value (including when the URL has no utm_* at all,
 *   or only others such as utm_id): "no campaign information".
 */
export function parseUtm(pageUrl: string): UtmDoc | null {
  const input = typeof pageUrl === "string" ? pageUrl.trim() : "";
  if (input === "") return null;
  const params = toUrl(pageUrl, input).searchParams;

  const utm: UtmDoc = { source: null, medium: null, campaign: null, term: null, content: null };
  let found = false;
  for (const key of UTM_KEYS) {
    for (const value of params.getAll(`utm_${key}`)) {
      const trimmed = value.trim();
      if (trimmed !== "") {
        utm[key] = trimmed;
        found = true;
        break;
      }
    }
  }
  return found ? utm : null;
}
