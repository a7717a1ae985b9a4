/**
 * Reloading on a signal, for the Authenticator's users file (`./add_user`)
 * and the streaming services' media folder (`./reload_media`).
 *
 * The signal is SIGUSR2, not the spec's SIGUSR1: on SIGUSR1 Deno (since
 * 2.9.2) opens its V8 debugger on 127.0.0.1:9229, and anyone on the machine
 * could then run code inside the service.
 *
 * @module
 */

/** The signal that makes a service reload. */
export const RELOAD_SIGNAL: Deno.Signal = "SIGUSR2";

/**
 * Runs `run` on request, one run at a time. A request while a run is under
 * way queues one more run after it; further requests before that one starts
 * merge into it. So a signal during a reload means "once more after this",
 * and a burst of signals costs two runs, not one each.
 *
 * @param run The work; its rejection rejects the requests it served, and the next run still happens.
 * @param after No run starts before this settles (the service's start-up, say).
 * @returns `request()`, which resolves when a run that started after the request has ended.
 *
 * @example
 * ```ts
 * import { mergedRuns } from "./reload_signal.ts";
 *
 * const rescan = mergedRuns(async () => console.log("rescanning"));
 * await Promise.all([rescan(), rescan(), rescan()]); // "rescanning" twice
 * ```
 */
export function mergedRuns(run: () => Promise<void>, after: Promise<unknown> = Promise.resolve()): () => Promise<void> {
  let last: Promise<unknown> = after.catch(() => {});
  let queued: Promise<void> | undefined;
  return () => {
    if (queued) return queued;
    const next = last.then(() => {
      queued = undefined;
      return run();
    });
    queued = next;
    last = next.catch(() => {});
    return next;
  };
}

/**
 * Calls `reload` on every {@linkcode RELOAD_SIGNAL}, queued as
 * {@linkcode mergedRuns} says. Listening also replaces the signal's default
 * action, which would end the process: listen before anything may send it.
 *
 * @param reload The reload; it should log its own failure. One it lets through goes to `onError`.
 * @param options `after`: no reload before this settles; `onError`: what to do with a failed reload.
 * @returns A function that stops listening.
 *
 * @example
 * ```ts
 * import { reloadOnSignal } from "./reload_signal.ts";
 *
 * const stop = reloadOnSignal(async () => console.log("reloading"));
 * stop();
 * ```
 */
export function reloadOnSignal(
  reload: () => Promise<void>,
  options: { after?: Promise<unknown>; onError?: (error: unknown) => void } = {},
): () => void {
  const request = mergedRuns(reload, options.after);
  const onError = options.onError ?? ((error) => console.error(`${RELOAD_SIGNAL}: reload failed: ${error}`));
  const listener = () => void request().catch(onError);
  Deno.addSignalListener(RELOAD_SIGNAL, listener);
  return () => Deno.removeSignalListener(RELOAD_SIGNAL, listener);
}
