// The one realistic first-visit CreateSession request every benchmark sends (bench.ts through
// ghz, store-bench.ts through the domain, mongo-bench.ts through a Connect client): no id, so
// every call inserts; a profile, campaign URL and iPhone user agent, so enrichment and visit
// numbering run as in production.

export const BENCH_PROFILE = "0b0d4f7e-6a51-4c1e-9d53-2f7c4a9e8b11";

export const BENCH_SESSION = {
  metadata: { channel: "web" },
  profile: { id: BENCH_PROFILE },
  context: { ip: "203.0.113.24", referrer: "https://news.example/spring-sale" },
  properties: { cart_value: 129.9, currency: "EUR", items: 3, logged_in: true },
  app: { language: "en-US", resolution: "390x844" },
};

export const BENCH_USER_AGENT =
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";

export const BENCH_PAGE_URL = "https://shop.example/?utm_source=news&utm_medium=email&utm_campaign=spring";
