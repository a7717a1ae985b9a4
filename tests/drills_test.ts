/**
 * The failure drills of issue 7 (tests/drills.ts), each on a platform of its
 * own run by `./run_iceflix --replicas 2`: SIGKILL, SIGSTOP, an IceStorm
 * restart and a catalog killed during a stream of edits, all under a client
 * load through Main. Each test asserts the drill's checks: no client
 * operation failed beyond one retry through Main, no acknowledged edit lost,
 * playback resumed, every service healed by itself. The figures (operations,
 * retries, recovery times) are printed, never asserted.
 */
import assert from "node:assert/strict";
import { Discovery } from "../discovery.ts";
import { createLogger } from "../service.ts";
import { DRILLS, runDrill } from "./drills.ts";
import { testCommunicator } from "./harness.ts";

Deno.test("discovery: the call timeout is property IceFlix.Discovery.CallTimeout (seconds), 3 s unless set", async () => {
  for (const [property, expected] of [[[], 3000], [["--IceFlix.Discovery.CallTimeout=0.5"], 500]] as const) {
    const { communicator, adapter } = await testCommunicator([...property]);
    try {
      assert.equal(new Discovery(adapter, createLogger("test", communicator.getProperties())).callTimeout, expected);
    } finally {
      await communicator.destroy();
    }
  }
  for (const nonsense of ["0", "-1", "soon"]) {
    const { communicator, adapter } = await testCommunicator([`--IceFlix.Discovery.CallTimeout=${nonsense}`]);
    try {
      assert.throws(
        () => new Discovery(adapter, createLogger("test", communicator.getProperties())),
        /IceFlix\.Discovery\.CallTimeout must be a positive number of seconds/,
      );
    } finally {
      await communicator.destroy();
    }
  }
});

for (const name of Object.keys(DRILLS) as (keyof typeof DRILLS)[]) {
  Deno.test(`drill ${name}`, async () => {
    const report = await runDrill(name);
    console.log(`${report.title}:\n${report.figures.map((line) => `  ${line}`).join("\n")}`);
    for (const { what, ok, detail } of report.checks) assert.ok(ok, `${what}${detail ? `:\n${detail}` : ""}`);
  });
}
