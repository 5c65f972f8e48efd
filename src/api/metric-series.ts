import type { Registry } from "prom-client";

/**
 * Counters and histograms for what the daemon records on every request
 * (metrics.ts), in a prom-client registry. prom-client's own validate and
 * hash the label set on every `inc`/`observe`, even through a bound child,
 * which was a twentieth of the fast lane's CPU per request; these bind a
 * series once (`series(...values)`) and then update plain numbers. The
 * registry formats them as it formats its own (`get()` gives the same
 * values); test/api/metric-series.test.ts holds them to prom-client's text.
 */
abstract class SeriesMetric<S> {
  private readonly all = new Map<string, { labels: Record<string, string>; state: S }>();
  readonly aggregator = "sum";

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    registry.registerMetric(this as never);
  }

  abstract readonly type: "counter" | "histogram";
  protected abstract fresh(): S;

  /** The series of one label set (values in `labelNames` order), made on first use. */
  protected stateOf(values: readonly string[]): S {
    const key = values.join("\u0000");
    let entry = this.all.get(key);
    if (entry === undefined) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((name, i) => (labels[name] = values[i]!));
      entry = { labels, state: this.fresh() };
      this.all.set(key, entry);
    }
    return entry.state;
  }

  protected entries(): Iterable<{ labels: Record<string, string>; state: S }> {
    return this.all.values();
  }

  /** Forgets every series (prom-client's `reset`). */
  reset(): void {
    this.all.clear();
  }
}

/** A counter's series: `inc(by)`. */
export interface CounterSeries {
  inc(by?: number): void;
}

export class SeriesCounter extends SeriesMetric<{ value: number }> {
  readonly type = "counter";

  protected fresh() {
    return { value: 0 };
  }

  series(...values: string[]): CounterSeries {
    const state = this.stateOf(values);
    return {
      inc(by = 1) {
        state.value += by;
      },
    };
  }

  async get() {
    const values = [...this.entries()].map(({ labels, state }) => ({ labels, value: state.value }));
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

/** A histogram's series: `observe(value)`. */
export interface HistogramSeries {
  observe(value: number): void;
}

export class SeriesHistogram extends SeriesMetric<{ buckets: Float64Array; sum: number; count: number }> {
  readonly type = "histogram";

  constructor(name: string, help: string, labelNames: readonly string[], private readonly bounds: readonly number[], registry: Registry) {
    super(name, help, labelNames, registry);
  }

  protected fresh() {
    return { buckets: new Float64Array(this.bounds.length), sum: 0, count: 0 };
  }

  series(...values: string[]): HistogramSeries {
    const state = this.stateOf(values);
    const bounds = this.bounds;
    return {
      observe(value) {
        state.sum += value;
        state.count += 1;
        for (let i = 0; i < bounds.length; i++) {
          if (value <= bounds[i]!) {
            state.buckets[i]! += 1;
            break;
          }
        }
      },
    };
  }

  async get() {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    for (const { labels, state } of this.entries()) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += state.buckets[i]!;
        values.push({ labels: { le, ...labels }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: "+Inf", ...labels }, value: state.count, metricName: `${this.name}_bucket` });
      values.push({ labels, value: state.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: state.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}
