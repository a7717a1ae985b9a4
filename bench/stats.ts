/**
 * Figures for benchmarks: percentiles of latency samples, in milliseconds, and
 * the CPU time a process has used (Linux's /proc).
 *
 * @module
 */

/** USER_HZ on Linux: the unit of utime and stime in /proc/<pid>/stat. */
const CLOCK_TICKS = 100;

/** CPU time of process `pid` so far, user and system, in seconds (0 once it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    // Fields after the command name (which may hold spaces, inside parentheses): utime and stime are 14 and 15.
    const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

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
