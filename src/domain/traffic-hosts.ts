// Facts about the sites a visit can come from: which host names (and Android app ids, which
// browsers report as android-app://<id>) belong to which search engine, social network, video,
// email or shopping site, the source name it goes by, and the click-id parameters of ad
// platforms. Our own table, written from what the sites are (docs/traffic.md "Host lists"); a
// few dozen entries per kind, the sites that bring most visits, not an exhaustive list.
//
// Matching (traffic.ts): a host matches an entry of `hosts` when it equals it or is a subdomain
// of it (the most specific entry wins: mail.google.com before google.com); an entry of `brands`
// matches the brand's own domain under any country domain (google.de, google.co.uk,
// yahoo.co.jp, amazon.com.br), subdomains included.

/** What kind of site a source is; the channel rules (traffic.ts) test these. */
export type SiteKind = "search" | "social" | "video" | "email" | "shopping";

export interface SiteFact {
  /** The source name reported for the site ("google"). */
  source: string;
  kind: SiteKind;
  /** Host names (lower case, without "www.") and Android app ids of the site. */
  hosts: readonly string[];
  /** Second-level labels the site uses under many country domains ("google" for google.fr). */
  brands?: readonly string[];
  /** Other spellings of the source name seen in utm_source ("fb", "ig"). */
  aliases?: readonly string[];
}

export const SITES: readonly SiteFact[] = [
  // Search engines.
  { source: "google", kind: "search", hosts: ["google.com", "com.google.android.googlequicksearchbox"], brands: ["google"] },
  { source: "bing", kind: "search", hosts: ["bing.com", "cn.bing.com"] },
  { source: "yahoo", kind: "search", hosts: ["yahoo.com", "search.yahoo.com"], brands: ["yahoo"] },
  { source: "duckduckgo", kind: "search", hosts: ["duckduckgo.com", "ddg.gg"] },
  { source: "baidu", kind: "search", hosts: ["baidu.com", "m.baidu.com"] },
  { source: "yandex", kind: "search", hosts: ["yandex.ru", "yandex.com", "ya.ru"], brands: ["yandex"] },
  { source: "ecosia", kind: "search", hosts: ["ecosia.org"] },
  { source: "naver", kind: "search", hosts: ["naver.com", "search.naver.com"] },
  { source: "seznam", kind: "search", hosts: ["seznam.cz", "search.seznam.cz"] },
  { source: "qwant", kind: "search", hosts: ["qwant.com"] },
  { source: "startpage", kind: "search", hosts: ["startpage.com"] },
  { source: "brave", kind: "search", hosts: ["search.brave.com"] },
  { source: "ask", kind: "search", hosts: ["ask.com"] },
  { source: "aol", kind: "search", hosts: ["search.aol.com", "aol.com"] },
  { source: "so.com", kind: "search", hosts: ["so.com"] },
  { source: "sogou", kind: "search", hosts: ["sogou.com"] },
  { source: "daum", kind: "search", hosts: ["daum.net", "search.daum.net"] },
  { source: "coccoc", kind: "search", hosts: ["coccoc.com"] },
  { source: "petal", kind: "search", hosts: ["petalsearch.com"] },
  { source: "mojeek", kind: "search", hosts: ["mojeek.com"] },
  { source: "perplexity", kind: "search", hosts: ["perplexity.ai"] },
  { source: "chatgpt", kind: "search", hosts: ["chatgpt.com", "chat.openai.com"] },

  // Social networks.
  {
    source: "facebook",
    kind: "social",
    hosts: ["facebook.com", "m.facebook.com", "l.facebook.com", "lm.facebook.com", "fb.me", "com.facebook.katana"],
    aliases: ["fb"],
  },
  { source: "instagram", kind: "social", hosts: ["instagram.com", "l.instagram.com", "com.instagram.android"], aliases: ["ig"] },
  { source: "messenger", kind: "social", hosts: ["messenger.com", "com.facebook.orca"] },
  { source: "twitter", kind: "social", hosts: ["twitter.com", "t.co", "x.com", "com.twitter.android"], aliases: ["x"] },
  { source: "linkedin", kind: "social", hosts: ["linkedin.com", "lnkd.in", "com.linkedin.android"] },
  { source: "pinterest", kind: "social", hosts: ["pinterest.com", "pin.it"], brands: ["pinterest"] },
  { source: "reddit", kind: "social", hosts: ["reddit.com", "out.reddit.com", "old.reddit.com", "com.reddit.frontpage"] },
  { source: "tiktok", kind: "social", hosts: ["tiktok.com", "com.zhiliaoapp.musically"] },
  { source: "snapchat", kind: "social", hosts: ["snapchat.com"] },
  { source: "threads", kind: "social", hosts: ["threads.net", "threads.com"] },
  { source: "bluesky", kind: "social", hosts: ["bsky.app"] },
  { source: "mastodon", kind: "social", hosts: ["mastodon.social"] },
  { source: "tumblr", kind: "social", hosts: ["tumblr.com"] },
  { source: "quora", kind: "social", hosts: ["quora.com"] },
  { source: "vk", kind: "social", hosts: ["vk.com", "vk.ru"] },
  { source: "ok.ru", kind: "social", hosts: ["ok.ru"] },
  { source: "weibo", kind: "social", hosts: ["weibo.com", "weibo.cn"] },
  { source: "wechat", kind: "social", hosts: ["weixin.qq.com", "com.tencent.mm"] },
  { source: "whatsapp", kind: "social", hosts: ["whatsapp.com", "wa.me", "com.whatsapp"] },
  { source: "telegram", kind: "social", hosts: ["t.me", "telegram.org", "org.telegram.messenger"] },
  { source: "discord", kind: "social", hosts: ["discord.com", "discord.gg"] },
  { source: "line", kind: "social", hosts: ["line.me"] },
  { source: "xing", kind: "social", hosts: ["xing.com"] },
  { source: "medium", kind: "social", hosts: ["medium.com"] },
  { source: "hacker news", kind: "social", hosts: ["news.ycombinator.com"] },
  { source: "stackoverflow", kind: "social", hosts: ["stackoverflow.com"] },
  { source: "slack", kind: "social", hosts: ["slack.com", "com.slack"] },
  { source: "producthunt", kind: "social", hosts: ["producthunt.com"] },

  // Video sites.
  { source: "youtube", kind: "video", hosts: ["youtube.com", "m.youtube.com", "youtu.be", "com.google.android.youtube"], aliases: ["yt"] },
  { source: "vimeo", kind: "video", hosts: ["vimeo.com"] },
  { source: "twitch", kind: "video", hosts: ["twitch.tv"] },
  { source: "dailymotion", kind: "video", hosts: ["dailymotion.com"] },
  { source: "bilibili", kind: "video", hosts: ["bilibili.com"] },
  { source: "rutube", kind: "video", hosts: ["rutube.ru"] },
  { source: "netflix", kind: "video", hosts: ["netflix.com"] },
  { source: "wistia", kind: "video", hosts: ["wistia.com"] },
  { source: "rumble", kind: "video", hosts: ["rumble.com"] },

  // Web mail (a click in a newsletter read in the browser or the mail app).
  { source: "gmail", kind: "email", hosts: ["mail.google.com", "com.google.android.gm"] },
  {
    source: "outlook",
    kind: "email",
    hosts: ["outlook.live.com", "outlook.office.com", "outlook.office365.com", "com.microsoft.office.outlook"],
  },
  { source: "yahoo mail", kind: "email", hosts: ["mail.yahoo.com"] },
  { source: "proton mail", kind: "email", hosts: ["mail.proton.me", "proton.me"] },
  { source: "aol mail", kind: "email", hosts: ["mail.aol.com"] },
  { source: "icloud mail", kind: "email", hosts: ["icloud.com"] },
  { source: "gmx", kind: "email", hosts: ["gmx.net", "gmx.de", "gmx.com"] },
  { source: "web.de", kind: "email", hosts: ["web.de"] },
  { source: "mail.ru", kind: "email", hosts: ["e.mail.ru", "mail.ru"] },
  { source: "yandex mail", kind: "email", hosts: ["mail.yandex.ru", "mail.yandex.com"] },
  { source: "zoho mail", kind: "email", hosts: ["mail.zoho.com"] },
  { source: "fastmail", kind: "email", hosts: ["fastmail.com"] },

  // Shopping sites.
  { source: "amazon", kind: "shopping", hosts: ["amazon.com"], brands: ["amazon"] },
  { source: "ebay", kind: "shopping", hosts: ["ebay.com"], brands: ["ebay"] },
  { source: "google shopping", kind: "shopping", hosts: ["shopping.google.com"] },
  { source: "etsy", kind: "shopping", hosts: ["etsy.com"] },
  { source: "walmart", kind: "shopping", hosts: ["walmart.com"] },
  { source: "aliexpress", kind: "shopping", hosts: ["aliexpress.com", "aliexpress.ru"] },
  { source: "alibaba", kind: "shopping", hosts: ["alibaba.com"] },
  { source: "shopify", kind: "shopping", hosts: ["shop.app", "shopify.com"] },
  { source: "idealo", kind: "shopping", hosts: ["idealo.de", "idealo.co.uk", "idealo.fr"] },
  { source: "rakuten", kind: "shopping", hosts: ["rakuten.com", "rakuten.co.jp"] },
  { source: "mercadolibre", kind: "shopping", hosts: ["mercadolibre.com", "mercadolivre.com.br"] },
  { source: "zalando", kind: "shopping", hosts: ["zalando.com", "zalando.de"] },
  { source: "target", kind: "shopping", hosts: ["target.com"] },
  { source: "bestbuy", kind: "shopping", hosts: ["bestbuy.com"] },
  { source: "allegro", kind: "shopping", hosts: ["allegro.pl"] },
  { source: "pricerunner", kind: "shopping", hosts: ["pricerunner.com"] },
];

/**
 * Click-id parameters an ad platform adds to the landing page URL, first match wins in this
 * order (a URL rarely carries two): the parameter, the source and the medium it implies.
 * "cpc" makes the channel Paid Search, Paid Social or Paid Video by the source's kind; dclid
 * (Campaign Manager 360 / Display & Video 360) is a display click: "google display" / "cpm",
 * a source of no search kind, hence Display.
 */
export const CLICK_IDS: ReadonlyArray<{ param: string; source: string; medium: string }> = [
  { param: "gclid", source: "google", medium: "cpc" },
  { param: "gbraid", source: "google", medium: "cpc" },
  { param: "wbraid", source: "google", medium: "cpc" },
  { param: "gclsrc", source: "google", medium: "cpc" },
  { param: "dclid", source: "google display", medium: "cpm" },
  { param: "msclkid", source: "bing", medium: "cpc" },
  { param: "yclid", source: "yandex", medium: "cpc" },
  { param: "fbclid", source: "facebook", medium: "cpc" },
  { param: "ttclid", source: "tiktok", medium: "cpc" },
  { param: "twclid", source: "twitter", medium: "cpc" },
  { param: "li_fat_id", source: "linkedin", medium: "cpc" },
  { param: "epik", source: "pinterest", medium: "cpc" },
  { param: "sccid", source: "snapchat", medium: "cpc" },
  { param: "rdt_cid", source: "reddit", medium: "cpc" },
];

/**
 * Second-level labels under which brands register country domains (google.co.uk,
 * amazon.com.br, yahoo.co.jp): a brand matches "<brand>.<tld>" and "<brand>.<one of these>.<tld>".
 */
export const COUNTRY_SECOND_LEVELS: ReadonlySet<string> = new Set(["co", "com", "org", "net", "ne", "or", "ac", "gov", "edu"]);
