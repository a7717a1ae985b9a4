/**
 * One call's cost: `ice_ping` from a Python (IcePy) client, one caller, to
 * our Main (a real service: acceptor -> Ice connection -> servant) and to
 * IceStorm's C++ TopicManager, in the same run, round by round in
 * alternating order: pings/s, p50 and p99 of the round trips, and the ratios
 * Main / TopicManager (median and spread over the rounds). With
 * `BENCH_CPU_PROF=<folder>`, Main writes a V8 CPU profile there when it stops.
 *
 * @module
 */
import { IceStormServer, PYTHON, ROOT, startBenchService } from "../harness.ts";
import { percentile } from "./stats.ts";

const SECONDS = 3;
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 5);

/** One round of pings at `proxy`. */
interface Pings {
  pings: number;
  p50: number;
  p99: number;
}

async function ping(proxy: string): Promise<Pings> {
  const output = await new Deno.Command(PYTHON, {
    args: [`${ROOT}bench/ping_client.py`, proxy, String(SECONDS)],
    stderr: "inherit",
  }).output();
  if (!output.success) throw new Error(`ping_client.py failed on ${proxy}`);
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

/** `median (min-max)` of `values`. */
function spread(values: number[]): string {
  const text = (value: number) => value.toFixed(2);
  return `${text(percentile(values, 50))}x (${text(Math.min(...values))}-${text(Math.max(...values))})`;
}

const icestorm = await IceStormServer.start();
const main = await startBenchService("main", ["--MainAdapter.Endpoints=tcp -h 127.0.0.1", icestorm.option], {
  profileDir: Deno.env.get("BENCH_CPU_PROF"),
});
try {
  const targets = { "Main": main.proxy, "TopicManager": icestorm.proxy };
  const rounds: Record<keyof typeof targets, Pings[]> = { "Main": [], "TopicManager": [] };
  for (let round = 0; round < ROUNDS; round++) {
    const names = Object.keys(targets) as (keyof typeof targets)[];
    for (const name of round % 2 === 0 ? names : names.reverse()) {
      const result = await ping(targets[name]);
      rounds[name].push(result);
      console.log(
        `round ${round + 1}: ice_ping from Python, 1 caller, to ${name}: ${Math.round(result.pings / SECONDS)}/s, ` +
          `p50 ${Math.round(result.p50)} us, p99 ${Math.round(result.p99)} us`,
      );
    }
  }
  const ratio = (figure: keyof Pings) =>
    spread(rounds.Main.map((main, round) => main[figure] / rounds.TopicManager[round][figure]));
  console.log(
    `ice_ping from Python, Main / TopicManager over ${ROUNDS} rounds: rate ${ratio("pings")}, ` +
      `p50 ${ratio("p50")}, p99 ${ratio("p99")}`,
  );
} finally {
  await main.child.stop();
  await icestorm.stop();
}
