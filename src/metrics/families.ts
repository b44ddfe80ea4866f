// Counters and histograms for the per-call paths (every RPC, every store call, every watch
// delivery). prom-client's own hash their labels and allocate on each update (about 1.5 us per
// update, measured): here a series is made once with its labels, and an update is a few
// additions on plain numbers. A family registers itself in a prom-client Registry, which asks
// it for its values (get()) at each scrape and writes them out with everything else.

import type { Metric, Registry } from "prom-client";

type Labels = Readonly<Record<string, string>>;

interface Value {
  labels: Labels | Record<string, string | number>;
  value: number;
  metricName?: string;
}

export class CounterSeries {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(by = 1): void {
    this.value += by;
  }
}

export class CounterFamily {
  readonly type = "counter";
  readonly aggregator = "sum";
  private readonly series: CounterSeries[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  /** A new series (call once per label set, and keep it). */
  add(labels: Labels): CounterSeries {
    const s = new CounterSeries(labels);
    this.series.push(s);
    return s;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: Value[] } {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.series.map((s) => ({ labels: s.labels, value: s.value })),
    };
  }
}

export class HistogramSeries {
  /** Observations per bucket (not cumulative); the last slot counts those above every bound. */
  private readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }

  /** Cumulative count of observations <= each bound. */
  cumulative(): number[] {
    const out: number[] = [];
    let total = 0;
    for (let i = 0; i < this.bounds.length; i++) out.push((total += this.counts[i]));
    return out;
  }
}

export class HistogramFamily {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly series: HistogramSeries[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    readonly bounds: readonly number[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  add(labels: Labels): HistogramSeries {
    const s = new HistogramSeries(labels, this.bounds);
    this.series.push(s);
    return s;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: Value[] } {
    const values: Value[] = [];
    for (const s of this.series) {
      const cumulative = s.cumulative();
      for (let i = 0; i < this.bounds.length; i++)
        values.push({ labels: { ...s.labels, le: this.bounds[i] }, value: cumulative[i], metricName: `${this.name}_bucket` });
      values.push({ labels: { ...s.labels, le: "+Inf" }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
