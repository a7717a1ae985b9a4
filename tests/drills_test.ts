/**
 * The failure drills of issue 7 (drills.ts), each on a platform of its
 * own run by `./run_iceflix --replicas 2`: SIGKILL, SIGSTOP, an IceStorm
 * restart and a catalog killed during a stream of edits, all under a client
 * load through Main. Each test asserts the drill's checks: no client
 * operation failed beyond one retry through Main, no acknowledged edit lost,
 * playback resumed, every service healed by itself. The figures (operations,
 * retries, recovery times) are printed, never asserted.
 */
import assert from "node:assert/strict";
import { DRILLS, runDrill } from "../drills.ts";

for (const name of Object.keys(DRILLS) as (keyof typeof DRILLS)[]) {
  Deno.test(`drill ${name}`, async () => {
    const report = await runDrill(name);
    console.log(`${report.title}:\n${report.figures.map((line) => `  ${line}`).join("\n")}`);
    for (const { what, ok, detail } of report.checks) assert.ok(ok, `${what}${detail ? `:\n${detail}` : ""}`);
  });
}
