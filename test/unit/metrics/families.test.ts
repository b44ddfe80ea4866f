import { Registry } from "prom-client";
import { CounterFamily, HistogramFamily } from "../../../src/metrics/families";

describe("metric families of the per-call paths", () => {
  it("write counters and cumulative histograms in the text format, a value on a bound in that bound's bucket", async () => {
    const registry = new Registry();
    const calls = new CounterFamily("calls_total", "Calls.", registry);
    const a = calls.add({ method: "A" });
    calls.add({ method: "B" });
    a.inc();
    a.inc(2);
    const seconds = new HistogramFamily("call_seconds", "Call time.", [0.1, 1], registry).add({ method: "A" });
    for (const v of [0.05, 0.1, 0.5, 1, 7]) seconds.observe(v);
    expect(await registry.metrics()).toBe(
      [
        "# HELP calls_total Calls.",
        "# TYPE calls_total counter",
        'calls_total{method="A"} 3',
        'calls_total{method="B"} 0',
        "",
        "# HELP call_seconds Call time.",
        "# TYPE call_seconds histogram",
        'call_seconds_bucket{method="A",le="0.1"} 2',
        'call_seconds_bucket{method="A",le="1"} 4',
        'call_seconds_bucket{method="A",le="+Inf"} 5',
        'call_seconds_sum{method="A"} 8.65',
        'call_seconds_count{method="A"} 5',
        "",
      ].join("\n"),
    );
  });
});
