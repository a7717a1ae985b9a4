/**
 * Bounded concurrency: work on a list with at most a given number of tasks in
 * flight (the media scan's stats and announcements, a catalog's questions to
 * a provider that speaks only the spec's Slice).
 *
 * @module
 */

/** Runs `work` on every item of `items`, at most `limit` at once; resolves when all are done. */
export async function inParallel<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]);
  }));
}
