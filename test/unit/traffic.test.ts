// The channel rules as a table: each row a visit (page URL, referrer, utm sent by the client)
// and what it must be classified as (docs/traffic.md).

import type { UtmDoc } from "../../src/domain/session";
import {
  CHANNEL_GROUPS,
  DomainMap,
  channelGroup,
  classifyTraffic,
  normalizeHost,
  ownDomainMap,
  parseOwnDomains,
  siteOfHost,
  type TrafficOptions,
} from "../../src/domain/traffic";
import { CLICK_IDS, SITES } from "../../src/domain/traffic-hosts";

const OPTIONS: TrafficOptions = { ownDomains: ownDomainMap(parseOwnDomains("shop.example, example-cdn.net")) };
const NO_UTM: UtmDoc = { source: null, medium: null, campaign: null, term: null, content: null };
const PAGE = "https://shop.example/landing";

interface Row {
  name: string;
  page?: string;
  referrer?: string;
  /** utm as the session carries it after enrichment (sent by the client or read from the page URL). */
  utm?: Partial<UtmDoc>;
  /** [source, medium, channel group, click id, referrer host] */
  want: [string, string, string, string | null, string | null];
}

const ROWS: Row[] = [
  // Direct.
  { name: "no referrer, no parameters", want: ["(direct)", "(none)", "Direct", null, null] },
  { name: "no page URL at all", page: "", want: ["(direct)", "(none)", "Direct", null, null] },
  { name: "a blank referrer", referrer: "   ", want: ["(direct)", "(none)", "Direct", null, null] },
  {
    name: "utm (direct) / (none) given explicitly",
    utm: { source: "(direct)", medium: "(none)" },
    want: ["(direct)", "(none)", "Direct", null, null],
  },
  // Internal referrers.
  { name: "own domain referrer", referrer: "https://shop.example/cart", want: ["(direct)", "internal", "Direct", null, "shop.example"] },
  {
    name: "own subdomain referrer",
    referrer: "https://blog.shop.example/post",
    want: ["(direct)", "internal", "Direct", null, "blog.shop.example"],
  },
  {
    name: "second own domain, www stripped",
    referrer: "https://www.example-cdn.net/",
    want: ["(direct)", "internal", "Direct", null, "example-cdn.net"],
  },
  {
    name: "the page's own host is internal without OWN_DOMAINS",
    page: "https://other.example/p",
    referrer: "https://other.example/q",
    want: ["(direct)", "internal", "Direct", null, "other.example"],
  },
  {
    name: "a look-alike of an own domain is not internal",
    referrer: "https://notshop.example/",
    want: ["notshop.example", "referral", "Referral", null, "notshop.example"],
  },
  {
    name: "UTM wins over an internal referrer",
    referrer: "https://shop.example/",
    utm: { source: "newsletter", medium: "email" },
    want: ["newsletter", "email", "Email", null, "shop.example"],
  },
  {
    name: "a click id wins over an internal referrer",
    page: `${PAGE}?gclid=abc`,
    referrer: "https://shop.example/",
    want: ["google", "cpc", "Paid Search", "gclid", "shop.example"],
  },
  // Organic from referrers.
  { name: "google.com search", referrer: "https://www.google.com/", want: ["google", "organic", "Organic Search", null, "google.com"] },
  {
    name: "google country domain",
    referrer: "https://www.google.co.uk/",
    want: ["google", "organic", "Organic Search", null, "google.co.uk"],
  },
  { name: "google.de", referrer: "https://google.de/search?q=x", want: ["google", "organic", "Organic Search", null, "google.de"] },
  { name: "bing", referrer: "https://www.bing.com/search?q=shoes", want: ["bing", "organic", "Organic Search", null, "bing.com"] },
  { name: "duckduckgo", referrer: "https://duckduckgo.com/", want: ["duckduckgo", "organic", "Organic Search", null, "duckduckgo.com"] },
  {
    name: "yahoo.co.jp",
    referrer: "https://search.yahoo.co.jp/search?p=x",
    want: ["yahoo", "organic", "Organic Search", null, "search.yahoo.co.jp"],
  },
  {
    name: "the Google app on Android",
    referrer: "android-app://com.google.android.googlequicksearchbox/",
    want: ["google", "organic", "Organic Search", null, "com.google.android.googlequicksearchbox"],
  },
  {
    name: "facebook mobile link shim",
    referrer: "https://l.facebook.com/l.php?u=x",
    want: ["facebook", "social", "Organic Social", null, "l.facebook.com"],
  },
  { name: "t.co", referrer: "https://t.co/abc", want: ["twitter", "social", "Organic Social", null, "t.co"] },
  { name: "linkedin", referrer: "https://www.linkedin.com/feed/", want: ["linkedin", "social", "Organic Social", null, "linkedin.com"] },
  { name: "reddit", referrer: "https://old.reddit.com/r/x", want: ["reddit", "social", "Organic Social", null, "old.reddit.com"] },
  { name: "youtube", referrer: "https://www.youtube.com/watch?v=1", want: ["youtube", "video", "Organic Video", null, "youtube.com"] },
  { name: "vimeo", referrer: "https://vimeo.com/123", want: ["vimeo", "video", "Organic Video", null, "vimeo.com"] },
  {
    name: "gmail before google",
    referrer: "https://mail.google.com/mail/u/0/",
    want: ["gmail", "email", "Email", null, "mail.google.com"],
  },
  {
    name: "the Gmail app",
    referrer: "android-app://com.google.android.gm",
    want: ["gmail", "email", "Email", null, "com.google.android.gm"],
  },
  { name: "outlook", referrer: "https://outlook.live.com/", want: ["outlook", "email", "Email", null, "outlook.live.com"] },
  {
    name: "amazon country domain",
    referrer: "https://www.amazon.com.br/dp/1",
    want: ["amazon", "shopping", "Organic Shopping", null, "amazon.com.br"],
  },
  { name: "etsy", referrer: "https://www.etsy.com/listing/1", want: ["etsy", "shopping", "Organic Shopping", null, "etsy.com"] },
  // Referral.
  {
    name: "an unknown site",
    referrer: "https://blog.example.org/post",
    want: ["blog.example.org", "referral", "Referral", null, "blog.example.org"],
  },
  {
    name: "host upper case, trailing dot",
    referrer: "https://News.Example.ORG./a",
    want: ["news.example.org", "referral", "Referral", null, "news.example.org"],
  },
  {
    name: "a referrer without a scheme",
    referrer: "blog.example.org/post",
    want: ["blog.example.org", "referral", "Referral", null, "blog.example.org"],
  },
  { name: "an IP address referrer", referrer: "http://192.0.2.7:8080/x", want: ["192.0.2.7", "referral", "Referral", null, "192.0.2.7"] },
  // Click ids.
  { name: "gclid", page: `${PAGE}?gclid=Cj0KCQ`, want: ["google", "cpc", "Paid Search", "gclid", null] },
  { name: "gbraid", page: `${PAGE}?gbraid=0AAA`, want: ["google", "cpc", "Paid Search", "gbraid", null] },
  { name: "wbraid", page: `${PAGE}?wbraid=CkQ`, want: ["google", "cpc", "Paid Search", "wbraid", null] },
  { name: "dclid is a display click", page: `${PAGE}?dclid=x`, want: ["google display", "cpm", "Display", "dclid", null] },
  { name: "msclkid", page: `${PAGE}?msclkid=abc`, want: ["bing", "cpc", "Paid Search", "msclkid", null] },
  { name: "yclid", page: `${PAGE}?yclid=1`, want: ["yandex", "cpc", "Paid Search", "yclid", null] },
  { name: "fbclid", page: `${PAGE}?fbclid=IwAR`, want: ["facebook", "cpc", "Paid Social", "fbclid", null] },
  { name: "ttclid", page: `${PAGE}?ttclid=E.C`, want: ["tiktok", "cpc", "Paid Social", "ttclid", null] },
  { name: "twclid", page: `${PAGE}?twclid=2-x`, want: ["twitter", "cpc", "Paid Social", "twclid", null] },
  { name: "li_fat_id", page: `${PAGE}?li_fat_id=a-b`, want: ["linkedin", "cpc", "Paid Social", "li_fat_id", null] },
  { name: "a click id in another case", page: `${PAGE}?MSCLKID=abc`, want: ["bing", "cpc", "Paid Search", "msclkid", null] },
  { name: "an empty click id counts for nothing", page: `${PAGE}?gclid=`, want: ["(direct)", "(none)", "Direct", null, null] },
  { name: "two click ids: the first of the list", page: `${PAGE}?fbclid=1&gclid=2`, want: ["google", "cpc", "Paid Search", "gclid", null] },
  {
    name: "a click id wins over a search referrer",
    page: `${PAGE}?gclid=x`,
    referrer: "https://www.google.com/",
    want: ["google", "cpc", "Paid Search", "gclid", "google.com"],
  },
  { name: "a click id on an app deep link", page: "myapp://open?ttclid=1", want: ["tiktok", "cpc", "Paid Social", "ttclid", null] },
  // UTM wins.
  {
    name: "UTM wins over a search referrer",
    referrer: "https://www.google.com/",
    utm: { source: "newsletter", medium: "email" },
    want: ["newsletter", "email", "Email", null, "google.com"],
  },
  {
    name: "UTM wins over a click id (the click id is still recorded)",
    page: `${PAGE}?gclid=x`,
    utm: { source: "facebook", medium: "paid_social" },
    want: ["facebook", "paid_social", "Paid Social", "gclid", null],
  },
  { name: "utm google / cpc", utm: { source: "google", medium: "cpc" }, want: ["google", "cpc", "Paid Search", null, null] },
  {
    name: "utm source as a host",
    utm: { source: "m.facebook.com", medium: "cpc" },
    want: ["m.facebook.com", "cpc", "Paid Social", null, null],
  },
  { name: "utm alias fb", utm: { source: "fb", medium: "social" }, want: ["fb", "social", "Organic Social", null, null] },
  { name: "utm youtube / cpv", utm: { source: "youtube", medium: "cpv" }, want: ["youtube", "cpv", "Paid Video", null, null] },
  { name: "utm amazon / ppc", utm: { source: "amazon", medium: "ppc" }, want: ["amazon", "ppc", "Paid Shopping", null, null] },
  {
    name: "utm shopping campaign, paid",
    utm: { source: "partner", medium: "cpc", campaign: "summer-shop" },
    want: ["partner", "cpc", "Paid Shopping", null, null],
  },
  {
    name: "utm shopping campaign, organic",
    utm: { source: "partner", medium: "listing", campaign: "Shopping feed" },
    want: ["partner", "listing", "Organic Shopping", null, null],
  },
  {
    name: "'workshop' is not a shopping campaign",
    utm: { source: "partner", medium: "listing", campaign: "workshop" },
    want: ["partner", "listing", "Unassigned", null, null],
  },
  {
    name: "utm cross-network campaign",
    utm: { source: "google", medium: "cpc", campaign: "pmax cross-network" },
    want: ["google", "cpc", "Cross-network", null, null],
  },
  { name: "utm display", utm: { source: "dsp", medium: "display" }, want: ["dsp", "display", "Display", null, null] },
  { name: "utm banner", utm: { source: "news-site", medium: "banner" }, want: ["news-site", "banner", "Display", null, null] },
  { name: "utm paid other", utm: { source: "partner", medium: "cpc" }, want: ["partner", "cpc", "Paid Other", null, null] },
  {
    name: "utm medium organic",
    utm: { source: "some-engine", medium: "organic" },
    want: ["some-engine", "organic", "Organic Search", null, null],
  },
  {
    name: "utm medium video",
    utm: { source: "player", medium: "video-embed" },
    want: ["player", "video-embed", "Organic Video", null, null],
  },
  {
    name: "utm referral",
    utm: { source: "partner.example", medium: "referral" },
    want: ["partner.example", "referral", "Referral", null, null],
  },
  { name: "utm email by source", utm: { source: "e-mail", medium: "newsletter" }, want: ["e-mail", "newsletter", "Email", null, null] },
  { name: "utm affiliate", utm: { source: "awin", medium: "affiliate" }, want: ["awin", "affiliate", "Affiliates", null, null] },
  { name: "utm audio", utm: { source: "spotify", medium: "audio" }, want: ["spotify", "audio", "Audio", null, null] },
  { name: "utm sms", utm: { source: "sms", medium: "text" }, want: ["sms", "text", "SMS", null, null] },
  { name: "utm push", utm: { source: "app", medium: "web-push" }, want: ["app", "web-push", "Mobile Push Notifications", null, null] },
  {
    name: "utm firebase",
    utm: { source: "firebase", medium: "inapp" },
    want: ["firebase", "inapp", "Mobile Push Notifications", null, null],
  },
  { name: "utm source only", utm: { source: "flyer" }, want: ["flyer", "(not set)", "Unassigned", null, null] },
  { name: "utm medium only", utm: { medium: "email" }, want: ["(not set)", "email", "Email", null, null] },
  { name: "utm values compared in any case", utm: { source: "Google", medium: "CPC" }, want: ["Google", "CPC", "Paid Search", null, null] },
  { name: "empty utm strings count as absent", utm: { source: "", medium: "" }, want: ["(direct)", "(none)", "Direct", null, null] },
  // Malformed input: classified as far as it can be read.
  { name: "a referrer that is no URL", referrer: "not a url", want: ["(direct)", "(none)", "Direct", null, null] },
  { name: "about:blank", referrer: "about:blank", want: ["(direct)", "(none)", "Direct", null, null] },
  { name: "a host-less referrer", referrer: "https://", want: ["(direct)", "(none)", "Direct", null, null] },
  { name: "a javascript: referrer", referrer: "javascript:alert(1)", want: ["(direct)", "(none)", "Direct", null, null] },
  {
    name: "an unreadable page URL with a readable referrer",
    page: "https://exa mple.com/?gclid=1",
    referrer: "https://www.bing.com/",
    want: ["bing", "organic", "Organic Search", null, "bing.com"],
  },
  {
    name: "an unreadable referrer with a click id",
    page: `${PAGE}?msclkid=1`,
    referrer: "http://[::1",
    want: ["bing", "cpc", "Paid Search", "msclkid", null],
  },
  {
    name: "a percent-encoded host",
    referrer: "https://%77ww.google.com/",
    want: ["google", "organic", "Organic Search", null, "google.com"],
  },
];

describe("classifyTraffic", () => {
  it("has at least 40 cases, and one for every channel group but Unassigned's siblings", () => {
    expect(ROWS.length).toBeGreaterThanOrEqual(40);
    const covered = new Set(ROWS.map((r) => r.want[2]));
    expect(CHANNEL_GROUPS.filter((g) => !covered.has(g))).toEqual([]);
  });

  it.each(ROWS.map((r) => [r.name, r] as const))("%s", (_name, row) => {
    const utm = { ...NO_UTM, ...row.utm };
    const referrer = row.referrer ?? "";
    const t = classifyTraffic({ pageUrl: row.page ?? PAGE, referrer, utm }, OPTIONS);
    expect([t.source, t.medium, t.channel_group, t.click_id, t.referrer_host]).toEqual(row.want);
    expect(t.referrer).toBe(referrer.trim() === "" ? null : referrer.trim());
  });

  it("never throws on hostile input, and stays fast on long input", () => {
    const long = "https://" + "a.".repeat(4000) + "example/?" + "gclid=1&".repeat(500);
    const started = process.hrtime.bigint();
    for (const referrer of ["\u0000", "%", "http://%zz", "https://a..b/", long, "::::", "https://" + "x".repeat(8000)]) {
      expect(() => classifyTraffic({ pageUrl: long, referrer, utm: NO_UTM }, OPTIONS)).not.toThrow();
    }
    // Generous: a few milliseconds of work in all.
    expect(Number(process.hrtime.bigint() - started) / 1e6).toBeLessThan(2000);
  });

  it("takes no own domain by default", () => {
    const t = classifyTraffic({ pageUrl: PAGE, referrer: "https://blog.shop.example/", utm: NO_UTM }, { ownDomains: new DomainMap() });
    expect([t.source, t.medium, t.channel_group]).toEqual(["blog.shop.example", "referral", "Referral"]);
  });
});

describe("channelGroup", () => {
  it("puts Direct first: (direct) with (not set) is Direct too", () => {
    expect(channelGroup("(direct)", "(not set)", null)).toBe("Direct");
    expect(channelGroup("(direct)", "cpc", null)).toBe("Paid Other");
  });
});

describe("the host table", () => {
  it("names every host once, in lower case without www.", () => {
    const hosts = SITES.flatMap((s) => s.hosts);
    expect(hosts.filter((h, i) => hosts.indexOf(h) !== i)).toEqual([]);
    expect(hosts.filter((h) => normalizeHost(h) !== h)).toEqual([]);
  });

  it("has every cpc click id's source in the table, so its paid channel follows", () => {
    for (const c of CLICK_IDS.filter((c) => c.medium === "cpc"))
      expect({ param: c.param, known: SITES.some((s) => s.source === c.source) }).toEqual({ param: c.param, known: true });
  });

  it("prefers the most specific host, and matches brands only as a country domain", () => {
    expect(siteOfHost("mail.google.com")?.source).toBe("gmail");
    expect(siteOfHost("news.google.com")?.source).toBe("google");
    expect(siteOfHost("google.com.au")?.source).toBe("google");
    expect(siteOfHost("google.example.com")).toBeNull();
    expect(siteOfHost("mygoogle.de")).toBeNull();
    expect(siteOfHost("google")).toBeNull();
    expect(siteOfHost("")).toBeNull();
  });
});

describe("parseOwnDomains", () => {
  it("reads a comma list, trimmed, www. and case normalized", () => {
    const list = parseOwnDomains(" Shop.Example ,www.other.example,, localhost,shop.example");
    expect(list).toEqual(["shop.example", "other.example", "localhost"]);
    const d = ownDomainMap(list);
    expect(d.find("a.b.shop.example")).toBe(true);
    expect(d.find("other.example")).toBe(true);
    expect(d.find("localhost")).toBe(true);
    expect(d.find("example")).toBeUndefined();
  });

  it.each(["https://shop.example", "shop.example/path", "shop.example:8080", "bad_domain.example", "-x.example", "a b"])(
    "refuses %s",
    (entry) => {
      expect(() => parseOwnDomains(entry)).toThrow(/is not a domain name/);
    },
  );

  it("refuses more domains than the limit", () => {
    expect(() => parseOwnDomains("a.example,b.example,c.example", undefined, 2)).toThrow(/at most 2 domains/);
  });
});
