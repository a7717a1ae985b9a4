/**
 * Figures for benchmarks: percentiles of latency samples, in milliseconds.
 *
 * @module
 */

/** The `p`-th percentile (0-100) of `samples`, nearest rank. */
export function percentile(samples: readonly number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))];
}

/** `p50 x ms, p99 y ms` of `samples` (ms), with the maximum too if asked. */
export function latencySummary(samples: readonly number[], options: { max?: boolean; digits?: number } = {}): string {
  const digits = options.digits ?? 2;
  const text = `p50 ${percentile(samples, 50).toFixed(digits)} ms, p99 ${percentile(samples, 99).toFixed(digits)} ms`;
  return options.max ? `${text}, max ${Math.max(...samples).toFixed(digits)} ms` : text;
}
