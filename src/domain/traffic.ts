// Where a visit came from: the page URL's utm_* and click-id parameters, the referrer and the
// service's own domains, classified into source, medium and Google Analytics 4's default channel
// group. Pure functions, no I/O, never throwing; the rules and their order are in
// docs/traffic.md, the facts about sites in traffic-hosts.ts.
//
// Source and medium, first that applies:
// 1. UTM: utm_source or utm_medium (what the client sent in `utm`, else the page URL's) gives
//    both, a missing one "(not set)".
// 2. A click id on the page URL (CLICK_IDS): its platform and medium ("google" / "cpc").
// 3. A referrer on one of the own domains (OWN_DOMAINS, and the page URL's own host):
//    "(direct)" / "internal"; the channel group is then Direct, as for GA4's unwanted referrals:
//    moving between pages of one's own sites does not make a new source.
// 4. A referrer on a known site: its name and the medium of its kind ("organic", "social",
//    "video", "email", "shopping").
// 5. Any other referrer with a host: the host / "referral".
// 6. Nothing (no referrer, or one without a readable host): "(direct)" / "(none)".
// The channel group then follows from source, medium and utm_campaign by GA4's rules
// (channelGroup). Every step is linear in the length of its input (URLs are bounded by
// MAX_STRING_LENGTH before they get here), and a malformed URL classifies as what can be read
// of it.

import { CLICK_IDS, COUNTRY_SECOND_LEVELS, SITES, type SiteFact, type SiteKind } from "./traffic-hosts";
import type { TrafficDoc, UtmDoc } from "./session";

export const DIRECT_SOURCE = "(direct)";
export const NO_MEDIUM = "(none)";
export const NOT_SET = "(not set)";
export const INTERNAL_MEDIUM = "internal";

/** The channel groups, in the order their rules are tried (docs/traffic.md). */
export const CHANNEL_GROUPS = [
  "Direct",
  "Cross-network",
  "Paid Shopping",
  "Paid Search",
  "Paid Social",
  "Paid Video",
  "Display",
  "Paid Other",
  "Organic Shopping",
  "Organic Social",
  "Organic Video",
  "Organic Search",
  "Referral",
  "Email",
  "Affiliates",
  "Audio",
  "SMS",
  "Mobile Push Notifications",
  "Unassigned",
] as const;
export type ChannelGroup = (typeof CHANNEL_GROUPS)[number];

const MEDIUM_OF_KIND: Record<SiteKind, string> = {
  search: "organic",
  social: "social",
  video: "video",
  email: "email",
  shopping: "shopping",
};

/** Host names longer than DNS allows are not host names. */
const MAX_HOST_LENGTH = 253;

/**
 * Values by domain name, found for a host that is the domain or a subdomain of it, the most
 * specific domain first. A lookup tries only the host's last `maxLabels` suffixes (the most labels
 * of any domain kept), so its cost follows the host's length, not the number of domains.
 */
export class DomainMap<T> {
  private readonly map = new Map<string, T>();
  private maxLabels = 0;

  set(domain: string, value: T): void {
    this.map.set(domain, value);
    this.maxLabels = Math.max(this.maxLabels, domain.split(".").length);
  }

  get size(): number {
    return this.map.size;
  }

  /** The value of the most specific domain `host` (normalized) is in, or undefined. */
  find(host: string): T | undefined {
    if (this.map.size === 0 || host === "" || host.length > MAX_HOST_LENGTH) return undefined;
    // Start of the suffix with 1, 2, ... maxLabels labels, from the end of the host.
    const starts: number[] = [];
    let end = host.length;
    while (starts.length < this.maxLabels && end > 0) {
      const dot = host.lastIndexOf(".", end - 1);
      starts.push(dot + 1);
      if (dot === -1) break;
      end = dot;
    }
    for (let i = starts.length - 1; i >= 0; i--) {
      const value = this.map.get(host.slice(starts[i]));
      if (value !== undefined) return value;
    }
    return undefined;
  }
}

const byHost = new DomainMap<SiteFact>();
const byBrand = new Map<string, SiteFact>();
const byName = new Map<string, SiteFact>();
for (const site of SITES) {
  for (const host of site.hosts) byHost.set(host, site);
  for (const brand of site.brands ?? []) byBrand.set(brand, site);
  byName.set(site.source, site);
  for (const alias of site.aliases ?? []) byName.set(alias, site);
}
const clickIds = new Map(CLICK_IDS.map((c, rank) => [c.param, { ...c, rank }]));

/** Lower case, without a trailing dot or a leading "www." (www2., m. stay: they are real hosts). */
export function normalizeHost(host: string): string {
  let h = host.toLowerCase();
  if (h.endsWith(".")) h = h.slice(0, -1);
  return h.startsWith("www.") ? h.slice(4) : h;
}

/** The known site a host belongs to: the most specific host entry, else a brand's country domain. */
export function siteOfHost(host: string): SiteFact | null {
  if (host === "" || host.length > MAX_HOST_LENGTH) return null;
  const site = byHost.find(host);
  if (site !== undefined) return site;
  // <brand>.<tld> or <brand>.<co|com|...>.<tld>: the last two or three labels.
  const last = host.lastIndexOf(".");
  if (last <= 0) return null;
  const second = host.lastIndexOf(".", last - 1);
  const label2 = host.slice(second + 1, last);
  const brand2 = byBrand.get(label2);
  if (brand2 !== undefined) return brand2;
  if (second <= 0 || !COUNTRY_SECOND_LEVELS.has(label2)) return null;
  const third = host.lastIndexOf(".", second - 1);
  return byBrand.get(host.slice(third + 1, second)) ?? null;
}

/** The known site a source value names: its name or alias ("fb"), else a host ("m.facebook.com"). */
function siteOfSource(source: string): SiteFact | null {
  return byName.get(source) ?? (source.includes(".") ? siteOfHost(normalizeHost(source)) : null);
}

const PAID_MEDIA = new Set(["ppc", "retargeting"]);
const DISPLAY_MEDIA = new Set(["display", "banner", "expandable", "interstitial", "cpm"]);
const SOCIAL_MEDIA = new Set(["social", "social-network", "social-media", "sm", "social network", "social media"]);
const REFERRAL_MEDIA = new Set(["referral", "app", "link"]);
const EMAIL_NAMES = new Set(["email", "e-mail", "e_mail", "e mail"]);

/** GA4's paid medium: contains "cp" (cpc, cpm, cpv...), is "ppc" or "retargeting", or starts with "paid". */
function isPaid(medium: string): boolean {
  return medium.includes("cp") || PAID_MEDIA.has(medium) || medium.startsWith("paid");
}

/** GA4's shopping campaign: contains "shopping", or "shop" at the start or after anything but a-d, f-z. */
function isShoppingCampaign(campaign: string): boolean {
  if (campaign.includes("shopping")) return true;
  for (let i = campaign.indexOf("shop"); i !== -1; i = campaign.indexOf("shop", i + 1)) {
    if (i === 0) return true;
    const c = campaign[i - 1]!;
    if (!(c >= "a" && c <= "z") || c === "e") return true;
  }
  return false;
}

/**
 * The default channel group of a source, medium and campaign (compared in lower case), by GA4's
 * rules in GA4's order (docs/traffic.md); the first that matches wins.
 */
export function channelGroup(source: string, medium: string, campaign: string | null): ChannelGroup {
  const s = source.toLowerCase();
  const m = medium.toLowerCase();
  const c = (campaign ?? "").toLowerCase();
  const kind = siteOfSource(s)?.kind;
  const paid = isPaid(m);
  const shoppingCampaign = isShoppingCampaign(c);
  if (s === DIRECT_SOURCE && (m === NO_MEDIUM || m === NOT_SET || m === INTERNAL_MEDIUM)) return "Direct";
  if (c.includes("cross-network")) return "Cross-network";
  if (paid) {
    if (kind === "shopping" || shoppingCampaign) return "Paid Shopping";
    if (kind === "search") return "Paid Search";
    if (kind === "social") return "Paid Social";
    if (kind === "video") return "Paid Video";
  }
  if (DISPLAY_MEDIA.has(m)) return "Display";
  if (paid) return "Paid Other";
  if (kind === "shopping" || shoppingCampaign) return "Organic Shopping";
  if (kind === "social" || SOCIAL_MEDIA.has(m)) return "Organic Social";
  if (kind === "video" || m.includes("video")) return "Organic Video";
  if (kind === "search" || m === "organic") return "Organic Search";
  if (REFERRAL_MEDIA.has(m)) return "Referral";
  if (kind === "email" || EMAIL_NAMES.has(s) || EMAIL_NAMES.has(m)) return "Email";
  if (m === "affiliate") return "Affiliates";
  if (m === "audio") return "Audio";
  if (s === "sms" || m === "sms") return "SMS";
  if (m.endsWith("push") || m.includes("mobile") || m.includes("notification") || s === "firebase") return "Mobile Push Notifications";
  return "Unassigned";
}

const SCHEME = /^[a-z][a-z\d+.-]*:\/\//i;

/** A URL as far as it can be read: "scheme://...", "//host/...", or "host/..." read as https; null when unreadable. */
function readUrl(raw: string): URL | null {
  const input = raw.trim();
  if (input === "") return null;
  const absolute = SCHEME.test(input) ? input : input.startsWith("//") ? `https:${input}` : `https://${input}`;
  try {
    return new URL(absolute);
  } catch {
    return null;
  }
}

/** The click-id parameter of a page URL (names compared in lower case; first in CLICK_IDS order), or null. */
export function findClickId(url: URL | null): (typeof CLICK_IDS)[number] | null {
  if (url === null || url.search === "") return null;
  let best: ((typeof CLICK_IDS)[number] & { rank: number }) | null = null;
  for (const [name, value] of url.searchParams) {
    if (value.trim() === "") continue;
    const found = clickIds.get(name.toLowerCase());
    if (found && (best === null || found.rank < best.rank)) best = found;
  }
  return best === null ? null : { param: best.param, source: best.source, medium: best.medium };
}

/** The parts of a classification that do not change from one request to the next. */
export interface TrafficOptions {
  /** OWN_DOMAINS (parseOwnDomains): referrers there, subdomains included, are internal. */
  ownDomains: DomainMap<true>;
}

export interface TrafficInput {
  /** The page URL as given ("" = none). */
  pageUrl: string;
  /** The referrer as given ("" = none). */
  referrer: string;
  /** The session's utm after enrichment: the client's values, else the page URL's. */
  utm: UtmDoc;
}

/** Classifies a visit (see the header); never throws. */
export function classifyTraffic(input: TrafficInput, options: TrafficOptions): TrafficDoc {
  const referrer = input.referrer.trim() === "" ? null : input.referrer.trim();
  const refUrl = referrer === null ? null : readUrl(referrer);
  const refHost = refUrl === null || refUrl.hostname === "" ? null : normalizeHost(refUrl.hostname);
  const pageUrl = readUrl(input.pageUrl);
  const click = findClickId(pageUrl);
  const traffic = (source: string, medium: string): TrafficDoc => ({
    referrer,
    referrer_host: refHost,
    source,
    medium,
    channel_group: channelGroup(source, medium, input.utm.campaign),
    click_id: click?.param ?? null,
  });

  const source = input.utm.source || null;
  const medium = input.utm.medium || null;
  if (source !== null || medium !== null) return traffic(source ?? NOT_SET, medium ?? NOT_SET);
  if (click !== null) return traffic(click.source, click.medium);
  if (refHost === null) return traffic(DIRECT_SOURCE, NO_MEDIUM);
  const pageHost = pageUrl === null ? "" : normalizeHost(pageUrl.hostname);
  if (refHost === pageHost || options.ownDomains.find(refHost) !== undefined) return traffic(DIRECT_SOURCE, INTERNAL_MEDIUM);
  const site = siteOfHost(refHost);
  if (site !== null) return traffic(site.source, MEDIUM_OF_KIND[site.kind]);
  return traffic(refHost, "referral");
}

/**
 * OWN_DOMAINS: a comma-separated list of domain names (subdomains included), or "" for none;
 * returned normalized (normalizeHost) without repeats. Throws `invalid(why)` (a RangeError by
 * default) naming the first entry that is not a domain name, or when the list has more than
 * `maxDomains` entries.
 */
export function parseOwnDomains(
  list: string,
  invalid: (why: string) => Error = (why) => new RangeError(why),
  maxDomains = MAX_OWN_DOMAINS,
): string[] {
  const out = new Set<string>();
  const entries = list
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (entries.length > maxDomains) throw invalid(`at most ${maxDomains} domains, got ${entries.length}`);
  for (const entry of entries) {
    const host = normalizeHost(entry);
    if (host.length > MAX_HOST_LENGTH || !HOST_NAME.test(host)) {
      throw invalid(`${JSON.stringify(entry)} is not a domain name (e.g. shop.example; no scheme, port or path)`);
    }
    out.add(host);
  }
  return [...out];
}

/** The own domains (parseOwnDomains' list) as TrafficOptions.ownDomains. */
export function ownDomainMap(domains: readonly string[]): DomainMap<true> {
  const map = new DomainMap<true>();
  for (const domain of domains) map.set(domain, true);
  return map;
}

export const MAX_OWN_DOMAINS = 1000;
/** Labels of letters, digits and hyphens (punycode for others), separated by dots. */
const HOST_NAME = /^[a-z\d](?:[a-z\d-]{0,61}[a-z\d])?(?:\.[a-z\d](?:[a-z\d-]{0,61}[a-z\d])?)*$/;
