import { describe, expect, it } from "vitest";
import { Histogram } from "../../bench/histogram.js";

describe("the bench's latency histogram", () => {
  it("gives percentiles within 1.6 % and the exact maximum", () => {
    const histogram = new Histogram();
    for (let v = 1; v <= 100_000; v++) histogram.record(v);
    expect(histogram.count).toBe(100_000);
    expect(histogram.max).toBe(100_000);
    for (const p of [50, 90, 99, 99.9]) {
      expect(Math.abs(histogram.percentile(p) / (p * 1_000) - 1)).toBeLessThan(0.016);
    }
    expect(histogram.percentile(100)).toBe(100_000);
  });

  it("keeps small values exact and survives the trip through JSON, merged with another", () => {
    const a = new Histogram();
    const b = new Histogram();
    for (const v of [0, 3, 3, 7]) a.record(v);
    for (const v of [5_000_000, 3]) b.record(v);
    const merged = Histogram.fromJSON(JSON.parse(JSON.stringify(a)));
    merged.merge(Histogram.fromJSON(JSON.parse(JSON.stringify(b))));
    expect(merged.count).toBe(6);
    expect(merged.percentile(50)).toBe(3);
    expect(merged.max).toBe(5_000_000);
    expect(new Histogram().percentile(99)).toBe(0);
  });
});
