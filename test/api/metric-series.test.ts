import assert from "node:assert/strict";
import { test } from "node:test";
import { Counter, Histogram, Registry } from "prom-client";
import { SeriesCounter, SeriesHistogram } from "../../src/api/metric-series.ts";

test("the per-request counters and histograms print exactly as prom-client's own, series by series", async () => {
  const theirs = new Registry();
  const ours = new Registry();
  const bounds = [0.005, 0.1, 1, 2.5];
  const c1 = new Counter({ name: "x_requests_total", help: "Requests.", labelNames: ["route", "status"], registers: [theirs] });
  const h1 = new Histogram({ name: "x_duration_seconds", help: "Duration \\ with a backslash.", labelNames: ["route"], buckets: bounds, registers: [theirs] });
  const c2 = new SeriesCounter("x_requests_total", "Requests.", ["route", "status"], ours);
  const h2 = new SeriesHistogram("x_duration_seconds", "Duration \\ with a backslash.", ["route"], bounds, ours);
  const routes = ["/v1/chat/completions", 'odd "quoted"\nroute'];
  const observations = [0.001, 0.005, 0.05, 3, 0.7, 2.5, 100];
  for (const [i, route] of routes.entries()) {
    const counted = c2.series(route, "200");
    const timed = h2.series(route);
    for (const v of observations.slice(i)) {
      c1.labels(route, "200").inc();
      counted.inc();
      h1.labels(route).observe(v);
      timed.observe(v);
    }
    c1.labels(route, "500").inc(3);
    c2.series(route, "500").inc(3);
  }
  assert.equal(await ours.metrics(), await theirs.metrics());
  for (const m of [c1, h1, c2, h2]) m.reset();
  assert.equal(await ours.metrics(), await theirs.metrics(), "after a reset");
});
