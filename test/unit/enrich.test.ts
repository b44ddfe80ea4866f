import {
  DEFAULT_UA_CACHE_SIZE,
  InvalidUrlError,
  MAX_USER_AGENT_LENGTH,
  UserAgentParser,
  parseUserAgent,
  parseUtm,
  type ParsedUserAgent,
} from "../../src/domain/enrich";

const UA = {
  iphone:
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
  windowsChrome: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  linuxFirefox: "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
  ubuntuFirefox: "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
  androidTablet: "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  androidPhone: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
  ipad: "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
  mac: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
  chromeOs: "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  googlebot: "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
  googlebotSmartphone:
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
  curl: "curl/8.5.0",
  ie11Touch: "Mozilla/5.0 (Windows NT 6.3; WOW64; Trident/7.0; Touch; rv:11.0) like Gecko",
  galaxyWatch: "Mozilla/5.0 (Linux; Android 11; SM-R890) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
  tizenTv:
    "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36",
  xbox: "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19041",
  appleTv: "AppleTV11,1/11.1",
};

const UNKNOWN: ParsedUserAgent = {
  os: { name: "Other", version: "" },
  device: { name: "Other", brand: null, model: null, type: null, touch: false },
  app: { type: "browser", name: "Other", version: "", bot: false },
};

describe("parseUserAgent", () => {
  it("parses Mobile Safari on an iPhone", () => {
    expect(parseUserAgent(UA.iphone)).toEqual({
      os: { name: "iOS", version: "17.4" },
      device: { name: "Apple iPhone", brand: "Apple", model: "iPhone", type: "mobile", touch: true },
      app: { type: "browser", name: "Mobile Safari", version: "17.4", bot: false },
    });
  });

  it("parses desktop Chrome on Windows as a desktop without brand or model", () => {
    expect(parseUserAgent(UA.windowsChrome)).toEqual({
      os: { name: "Windows", version: "10" },
      device: { name: "Other", brand: null, model: null, type: "desktop", touch: false },
      app: { type: "browser", name: "Chrome", version: "124.0.0.0", bot: false },
    });
  });

  it("parses Firefox on Linux (no OS version in the user agent)", () => {
    expect(parseUserAgent(UA.linuxFirefox)).toEqual({
      os: { name: "Linux", version: "" },
      device: { name: "Other", brand: null, model: null, type: "desktop", touch: false },
      app: { type: "browser", name: "Firefox", version: "125.0", bot: false },
    });
  });

  it("treats Linux distributions as desktop OSes", () => {
    const parsed = parseUserAgent(UA.ubuntuFirefox);
    expect(parsed.os).toEqual({ name: "Ubuntu", version: "" });
    expect(parsed.device.type).toBe("desktop");
  });

  it("parses Chrome on a Samsung Android tablet", () => {
    expect(parseUserAgent(UA.androidTablet)).toEqual({
      os: { name: "Android", version: "13" },
      device: { name: "Samsung SM-X700", brand: "Samsung", model: "SM-X700", type: "tablet", touch: true },
      app: { type: "browser", name: "Chrome", version: "124.0.0.0", bot: false },
    });
  });

  it("parses Chrome on an Android phone", () => {
    expect(parseUserAgent(UA.androidPhone)).toEqual({
      os: { name: "Android", version: "14" },
      device: { name: "Google Pixel 8", brand: "Google", model: "Pixel 8", type: "mobile", touch: true },
      app: { type: "browser", name: "Chrome", version: "124.0.6367.82", bot: false },
    });
  });

  it("parses an iPad as a touch tablet", () => {
    expect(parseUserAgent(UA.ipad).device).toEqual({
      name: "Apple iPad",
      brand: "Apple",
      model: "iPad",
      type: "tablet",
      touch: true,
    });
    expect(parseUserAgent(UA.ipad).os).toEqual({ name: "iOS", version: "16.6" });
  });

  it("parses Safari on a Mac as an Apple Macintosh desktop", () => {
    expect(parseUserAgent(UA.mac)).toEqual({
      os: { name: "Mac OS", version: "10.15.7" },
      device: { name: "Apple Macintosh", brand: "Apple", model: "Macintosh", type: "desktop", touch: false },
      app: { type: "browser", name: "Safari", version: "17.4", bot: false },
    });
  });

  it("treats Chrome OS (ua-parser's Chromium OS) as a desktop OS", () => {
    const parsed = parseUserAgent(UA.chromeOs);
    expect(parsed.os).toEqual({ name: "Chromium OS", version: "14541.0.0" });
    expect(parsed.device.type).toBe("desktop");
  });

  it("flags Googlebot as a bot with nothing else known", () => {
    expect(parseUserAgent(UA.googlebot)).toEqual({ ...UNKNOWN, app: { ...UNKNOWN.app, bot: true } });
  });

  it("keeps the device Googlebot smartphone emulates, as ua-parser reads it", () => {
    const parsed = parseUserAgent(UA.googlebotSmartphone);
    expect(parsed.app).toEqual({ type: "browser", name: "Chrome", version: "124.0.6367.82", bot: true });
    expect(parsed.os).toEqual({ name: "Android", version: "6.0.1" });
    // ua-parser 1.x reads "Nexus 5X" as LG's Nexus 5.
    expect(parsed.device).toEqual({ name: "LG Nexus 5", brand: "LG", model: "Nexus 5", type: "mobile", touch: true });
  });

  it("flags curl as a bot with nothing else known", () => {
    expect(parseUserAgent(UA.curl)).toEqual({ ...UNKNOWN, app: { ...UNKNOWN.app, bot: true } });
  });

  it("does not call a bot on a desktop OS a desktop", () => {
    const ua =
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/124.0.0.0 Safari/537.36";
    const parsed = parseUserAgent(ua);
    expect(parsed.app.bot).toBe(true);
    expect(parsed.os.name).toBe("Windows");
    expect(parsed.device.type).toBeNull();
  });

  it("calls an unrecognisable non-empty user agent a bot (isbot's verdict)", () => {
    expect(parseUserAgent("hello world")).toEqual({ ...UNKNOWN, app: { ...UNKNOWN.app, bot: true } });
  });

  it("sets touch for IE's Touch token on Windows", () => {
    const parsed = parseUserAgent(UA.ie11Touch);
    expect(parsed.os).toEqual({ name: "Windows", version: "8.1" });
    expect(parsed.app).toEqual({ type: "browser", name: "IE", version: "11.0", bot: false });
    expect(parsed.device).toMatchObject({ type: "desktop", touch: true });
  });

  it("keeps ua-parser's wearable, smarttv and console types", () => {
    expect(parseUserAgent(UA.galaxyWatch).device).toEqual({
      name: "Samsung SM-R890",
      brand: "Samsung",
      model: "SM-R890",
      type: "wearable",
      touch: true,
    });
    expect(parseUserAgent(UA.tizenTv).device).toEqual({
      name: "Samsung",
      brand: "Samsung",
      model: null,
      type: "smarttv",
      touch: false,
    });
    const xbox = parseUserAgent(UA.xbox);
    expect(xbox.device).toEqual({
      name: "Microsoft Xbox One",
      brand: "Microsoft",
      model: "Xbox One",
      type: "console",
      touch: false,
    });
    expect(xbox.os).toEqual({ name: "Xbox", version: "One" });
  });

  it("does not repeat the brand when the model already starts with it", () => {
    expect(parseUserAgent(UA.appleTv).device).toMatchObject({ name: "Apple TV", brand: "Apple", model: "Apple TV" });
  });

  it.each([[""], ["   "], ["\t\n "]])("returns everything unknown, not a bot, for %j", (ua) => {
    expect(parseUserAgent(ua)).toEqual(UNKNOWN);
  });

  it("ignores surrounding whitespace", () => {
    expect(parseUserAgent(`  ${UA.iphone}\n`)).toEqual(parseUserAgent(UA.iphone));
  });

  it("considers only the first MAX_USER_AGENT_LENGTH characters", () => {
    expect(MAX_USER_AGENT_LENGTH).toBe(512);
    const padded = UA.windowsChrome.padEnd(MAX_USER_AGENT_LENGTH, " x");
    const hostile = padded + " Googlebot/2.1 ".repeat(10_000);
    const parser = new UserAgentParser(10);
    expect(parser.parse(hostile)).toEqual(parser.parse(padded));
    expect(parser.parse(hostile).app.bot).toBe(false); // the bot token lies past the cap
    expect(parser.size).toBe(1); // both map to the same cache key
  });
});

describe("UserAgentParser cache", () => {
  it("uses a default capacity of 1000", () => {
    expect(DEFAULT_UA_CACHE_SIZE).toBe(1000);
    expect(new UserAgentParser().capacity).toBe(1000);
  });

  it("returns equal but distinct objects, so callers cannot corrupt the cache", () => {
    const parser = new UserAgentParser();
    const first = parser.parse(UA.iphone);
    expect(parser.has(UA.iphone)).toBe(true);
    first.os.name = "Corrupted";
    first.device.touch = false;
    first.app.bot = true;
    const second = parser.parse(UA.iphone);
    expect(second).not.toBe(first);
    expect(second.os.name).toBe("iOS");
    expect(second.device.touch).toBe(true);
    expect(second.app.bot).toBe(false);
    expect(Object.isFrozen(second)).toBe(false);
  });

  it("returns fresh objects for the unknown user agent too", () => {
    const a = parseUserAgent("");
    a.os.name = "Corrupted";
    expect(parseUserAgent("").os.name).toBe("Other");
  });

  it("does not cache empty user agents", () => {
    const parser = new UserAgentParser();
    parser.parse("  ");
    expect(parser.size).toBe(0);
  });

  it("evicts the least recently used entry beyond capacity", () => {
    const parser = new UserAgentParser(2);
    parser.parse(UA.iphone);
    parser.parse(UA.windowsChrome);
    parser.parse(UA.iphone); // a hit makes the iPhone the most recently used
    parser.parse(UA.linuxFirefox); // evicts Windows Chrome
    expect(parser.size).toBe(2);
    expect(parser.has(UA.iphone)).toBe(true);
    expect(parser.has(UA.windowsChrome)).toBe(false);
    expect(parser.has(UA.linuxFirefox)).toBe(true);
    expect(parser.parse(UA.windowsChrome).app.name).toBe("Chrome"); // re-parsed after eviction
    expect(parser.has(UA.iphone)).toBe(false);
  });

  it("stays bounded under many distinct user agents", () => {
    const parser = new UserAgentParser(50);
    for (let i = 0; i < 500; i++) parser.parse(`${UA.androidPhone} build/${i}`);
    expect(parser.size).toBe(50);
    expect(parser.has(`${UA.androidPhone} build/499`)).toBe(true);
    expect(parser.has(`${UA.androidPhone} build/0`)).toBe(false);
  });

  it("caches nothing with capacity 0 and still parses", () => {
    const parser = new UserAgentParser(0);
    expect(parser.parse(UA.iphone).os.name).toBe("iOS");
    expect(parser.size).toBe(0);
  });

  it("clear() empties the cache", () => {
    const parser = new UserAgentParser();
    parser.parse(UA.iphone);
    parser.clear();
    expect(parser.size).toBe(0);
  });

  it.each([[-1], [1.5], [Number.NaN]])("rejects capacity %p", (capacity) => {
    expect(() => new UserAgentParser(capacity)).toThrow(RangeError);
  });
});

describe("parseUtm", () => {
  it("reads source, medium and campaign; absent ones are null", () => {
    expect(parseUtm("https://shop.example/?utm_source=news&utm_medium=email&utm_campaign=spring")).toEqual({
      source: "news",
      medium: "email",
      campaign: "spring",
      term: null,
      content: null,
    });
  });

  it("reads all five parameters among others", () => {
    expect(
      parseUtm("http://shop.example/p/1?id=7&utm_source=g&utm_medium=cpc&utm_campaign=c&utm_term=red+shoes&utm_content=ad%201"),
    ).toEqual({ source: "g", medium: "cpc", campaign: "c", term: "red shoes", content: "ad 1" });
  });

  it("decodes percent-encoding and trims values", () => {
    expect(parseUtm("https://a.example/?utm_source=%20caf%C3%A9%20&utm_campaign=%E2%82%AC")).toMatchObject({
      source: "café",
      campaign: "€",
    });
  });

  it("takes the first occurrence", () => {
    expect(parseUtm("https://a.example/?utm_source=first&utm_source=second")?.source).toBe("first");
  });

  it("counts empty values as absent, so the first non-empty occurrence wins", () => {
    expect(parseUtm("https://a.example/?utm_source=&utm_source=%20&utm_source=x&utm_medium=")).toEqual({
      source: "x",
      medium: null,
      campaign: null,
      term: null,
      content: null,
    });
  });

  it.each([
    ["https://a.example/"],
    ["https://a.example/?q=shoes&page=2"],
    ["https://a.example/?utm_source=&utm_medium=+"],
    ["https://a.example/?utm_id=42&utm_source_platform=x"],
    ["https://a.example/?UTM_SOURCE=upper"],
    ["https://a.example/#/landing?utm_source=in-fragment"],
  ])("returns null when no utm value is present: %s", (url) => {
    expect(parseUtm(url)).toBeNull();
  });

  it.each([[""], ["   "]])("returns null for an empty page URL %j", (url) => {
    expect(parseUtm(url)).toBeNull();
  });

  it.each([
    ["shop.example/?utm_source=x", "x"],
    ["shop.example?utm_source=x", "x"],
    ["localhost:3000/landing?utm_source=x", "x"],
    ["//shop.example/?utm_source=x", "x"],
    ["  https://shop.example/?utm_source=x  ", "x"],
    ["HTTPS://SHOP.EXAMPLE/?utm_source=x", "x"],
    ["https:shop.example/?utm_source=x", "x"],
    ["myapp://open/product?utm_source=x", "x"],
    ["http://[::1]:8080/?utm_source=x", "x"],
  ])("accepts %j", (url, source) => {
    expect(parseUtm(url)?.source).toBe(source);
  });

  it.each([
    ["https://"],
    ["http://exa mple.com/?utm_source=x"],
    ["http://[::1/?utm_source=x"],
    ["not a url"],
    ["/landing?utm_source=x"],
    ["?utm_source=x"],
    ["#utm_source=x"],
    ["./landing?utm_source=x"],
    ["mailto:someone@example.com?utm_source=x"],
    ["javascript:alert(1)"],
    ["user:pass@shop.example/?utm_source=x"],
    ["https://shop.example:99999/?utm_source=x"],
  ])("throws InvalidUrlError for %j", (url) => {
    expect(() => parseUtm(url)).toThrow(InvalidUrlError);
  });

  it("throws a plain Error subclass carrying the URL", () => {
    let caught: unknown;
    try {
      parseUtm("http://exa mple.com/");
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(InvalidUrlError);
    expect(caught).toBeInstanceOf(Error);
    const error = caught as InvalidUrlError;
    expect(error.name).toBe("InvalidUrlError");
    expect(error.url).toBe("http://exa mple.com/");
    expect(error.message).toMatch(/^invalid URL: /);
    // URL's own error, kept as the cause (compared by name: Node's TypeError is from another realm in jest).
    expect((error.cause as { name?: unknown; code?: unknown }).name).toBe("TypeError");
    expect((error.cause as { name?: unknown; code?: unknown }).code).toBe("ERR_INVALID_URL");
  });
});
