/**
 * Unit tests of reload_signal.ts's queueing rule (`deno task test:unit`); the
 * signal itself is sent to real services in main_auth_test.ts and
 * streaming_test.ts.
 *
 * @module
 */
import assert from "node:assert/strict";
import { mergedRuns } from "../reload_signal.ts";

/** Lets every promise callback due run (a macrotask: all microtasks come first). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

/** A run that records when it starts and ends only when told to. */
function controlledRun() {
  const log: string[] = [];
  const endings: (() => void)[] = [];
  const run = () => {
    log.push(`run ${endings.length + 1}`);
    return new Promise<void>((resolve) => endings.push(resolve));
  };
  /** Ends the run under way, and lets the next one start. */
  const endRun = async () => {
    endings.at(-1)!();
    await settle();
  };
  return { run, log, endRun };
}

Deno.test("mergedRuns: requests during a run queue one more run; later ones merge into it", async () => {
  const { run, log, endRun } = controlledRun();
  const request = mergedRuns(run);
  const first = request();
  await settle();
  assert.deepEqual(log, ["run 1"]);
  const during = [request(), request(), request()];
  assert.equal(during[0], during[2], "the requests made during run 1 share one run");
  await endRun();
  await first;
  assert.deepEqual(log, ["run 1", "run 2"]);
  const afterStart = request();
  await endRun();
  await Promise.all(during);
  assert.deepEqual(log, ["run 1", "run 2", "run 3"], "a request after run 2 started gets a run of its own");
  await endRun();
  await afterStart;
  assert.deepEqual(log, ["run 1", "run 2", "run 3"]);
});

Deno.test("mergedRuns: nothing runs before `after`, then one run serves every request made until then", async () => {
  const { run, log, endRun } = controlledRun();
  const startUp = Promise.withResolvers<void>();
  const request = mergedRuns(run, startUp.promise);
  const requests = [request(), request()];
  await settle();
  assert.deepEqual(log, []);
  startUp.resolve();
  await settle();
  assert.deepEqual(log, ["run 1"]);
  await endRun();
  await Promise.all(requests);
  assert.deepEqual(log, ["run 1"]);
});

Deno.test("mergedRuns: a failed run rejects its requests, and the run queued behind it still happens", async () => {
  let runs = 0;
  const request = mergedRuns(() => ++runs === 1 ? Promise.reject(new Error("unreadable")) : Promise.resolve());
  const failing = request();
  await settle();
  const next = request();
  await assert.rejects(failing, /unreadable/);
  await next;
  assert.equal(runs, 2);
});
