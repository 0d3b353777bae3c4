/** Sub-buckets per power of two: values are kept to within 1/64 (about 1.6 %). */
const SUB_BITS = 6;
const SUB = 1 << SUB_BITS;
/** Enough buckets for values up to 2^31 µs (about 36 minutes). */
const BUCKETS = (31 - SUB_BITS) * SUB + 2 * SUB;

function bucketOf(value: number): number {
  const v = value <= 0 ? 0 : value >= 2 ** 31 ? 2 ** 31 - 1 : Math.floor(value);
  const bits = 32 - Math.clz32(v);
  if (bits <= SUB_BITS + 1) return v;
  const shift = bits - SUB_BITS - 1;
  return shift * SUB + (v >>> shift);
}

/** The smallest value that lands in `bucket`. */
function lowestOf(bucket: number): number {
  if (bucket < 2 * SUB) return bucket;
  const shift = Math.floor(bucket / SUB) - 1;
  return (bucket - shift * SUB) * 2 ** shift;
}

/**
 * A log-linear histogram of non-negative integers (latencies in µs): fixed memory, mergeable
 * across processes, percentiles to within 1.6 %. The maximum is kept exactly.
 */
export class Histogram {
  readonly counts: Float64Array;
  count = 0;
  max = 0;

  constructor(counts?: ArrayLike<number>, max = 0) {
    this.counts = new Float64Array(BUCKETS);
    if (counts !== undefined) {
      this.counts.set(counts);
      for (let i = 0; i < counts.length; i++) this.count += counts[i] ?? 0;
    }
    this.max = max;
  }

  record(value: number): void {
    const bucket = bucketOf(value);
    this.counts[bucket] = (this.counts[bucket] ?? 0) + 1;
    this.count++;
    if (value > this.max) this.max = value;
  }

  /** Adds every value of `other` to this histogram. */
  merge(other: Histogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i] = (this.counts[i] ?? 0) + (other.counts[i] ?? 0);
    this.count += other.count;
    if (other.max > this.max) this.max = other.max;
  }

  /** The value below which `p` percent of the values fall (the middle of its bucket); 0 when empty. */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    if (p >= 100) return this.max;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i] ?? 0;
      if (seen >= rank) return Math.min(this.max, (lowestOf(i) + lowestOf(i + 1) - 1) / 2);
    }
    return this.max;
  }

  /** A plain form for IPC: only the buckets in use. */
  toJSON(): { buckets: [number, number][]; max: number } {
    const buckets: [number, number][] = [];
    for (let i = 0; i < BUCKETS; i++) {
      const n = this.counts[i] ?? 0;
      if (n > 0) buckets.push([i, n]);
    }
    return { buckets, max: this.max };
  }

  static fromJSON(json: { buckets: [number, number][]; max: number }): Histogram {
    const counts = new Float64Array(BUCKETS);
    for (const [i, n] of json.buckets) counts[i] = n;
    return new Histogram(counts, json.max);
  }
}
