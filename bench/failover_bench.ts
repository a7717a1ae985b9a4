/**
 * Failover under a client load (drills.ts): `./run_iceflix --replicas 2`
 * (announce interval and call timeout 1 s), three simulated clients through
 * Main in a loop of sessions (Main, login, search, tag, rename, tile), and
 * client operations per second in a quiet window, then in the window that
 * starts with the SIGSTOP of a catalog (and after its SIGCONT), then with the
 * SIGKILL of one replica of each kind in turn, with the longest stall (the
 * longest time in which no operation completed) and the operations that
 * needed their one retry.
 *
 * @module
 */
import { ClientLoad, DrillPlatform, type ServiceName } from "../drills.ts";
import { delay } from "../harness.ts";

/** Seconds each window lasts. */
const WINDOW = 4;

const platform = await DrillPlatform.start();
const load = new ClientLoad(platform).start();
try {
  await load.progress();
  /** Runs the load for a window from now, starting it with `failure`, and prints its figures. */
  const measure = async (label: string, failure: () => void = () => {}) => {
    const [retried, failed] = [load.retried, load.failures.length];
    const start = performance.now();
    failure();
    await delay(WINDOW * 1000);
    const end = performance.now();
    console.log(
      `${label}: ${Math.round(load.rate(start, end))} client operations/s over ${WINDOW} s, longest stall ` +
        `${Math.round(load.longestStall(start, end))} ms, ${load.retried - retried} retried once through Main, ` +
        `${load.failures.length - failed} failed`,
    );
  };
  await measure("no failure");
  // Hung, not dead: calls to it wait for the call timeout until every service has dropped it.
  const hung = platform.live("catalog")[1];
  await measure("SIGSTOP of catalog-2 (one of 2) for the window", () => platform.signal(hung, "SIGSTOP"));
  platform.signal(hung, "SIGCONT");
  await measure("after its SIGCONT");
  for (const service of ["auth", "catalog", "main"] as ServiceName[]) {
    // With one catalog left, an edit no longer waits for a replica to store it: the load speeds up.
    await measure(`SIGKILL of ${service} (one of 2)`, () => platform.signal(platform.live(service)[0], "SIGKILL"));
  }
  console.log(`in all: ${load.summary()}`);
} finally {
  await load.stop();
  await platform.stop();
}
