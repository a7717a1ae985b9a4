/**
 * The failure drills (drills.ts; README, "Failure drills"): each test asserts
 * a drill's checks, and prints its figures (operations, retries, recovery
 * times), which are never asserted.
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
