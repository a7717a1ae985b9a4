/**
 * One call's cost: `ice_ping` from a Python (IcePy) client, one caller, to
 * our Main (a real service: acceptor -> Ice connection -> servant) and to
 * IceStorm's C++ TopicManager, in the same run, round by round in
 * alternating order: pings/s, p50 and p99 of the round trips, Main's CPU per
 * ping, and the ratios Main / TopicManager (median and spread over the
 * rounds).
 *
 * The same rounds measure the floor under any Ice server in Deno: a bare
 * echo of a ping-sized message over `node:net` in this Deno process (no Ice
 * at all) against the same echo in plain Python, both from a Python client
 * (bench/ping_client.py). Their ratio bounds what Main can reach.
 *
 * With `BENCH_BASE=<another clone>/` (set up with `./setup`) that clone's
 * Main is measured in the same rounds. With `BENCH_CPU_PROF=<folder>`, Main
 * writes a V8 CPU profile there when it stops.
 *
 * @module
 */
import net from "node:net";
import { Child, IceStormServer, PYTHON, ROOT, startBenchService } from "../harness.ts";
import { cpuSeconds, percentile } from "./stats.ts";

const SECONDS = 3;
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 5);
const BASE = Deno.env.get("BENCH_BASE");

/** One round of round trips at a target. */
interface Pings {
  pings: number;
  p50: number;
  p99: number;
}

/** Runs bench/ping_client.py with `args`; returns what it prints (JSON). */
async function pingClient(args: string[]): Promise<Pings> {
  const output = await new Deno.Command(PYTHON, {
    args: [`${ROOT}bench/ping_client.py`, ...args],
    stderr: "inherit",
  }).output();
  if (!output.success) throw new Error(`ping_client.py ${args.join(" ")} failed`);
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

/** `median (min-max)` of `values`. */
function spread(values: number[]): string {
  const text = (value: number) => value.toFixed(2);
  return `${text(percentile(values, 50))}x (${text(Math.min(...values))}-${text(Math.max(...values))})`;
}

/** An echo server over node:net in this process, as the acceptor listens (TCP_NODELAY); resolves to its port. */
function denoEcho(): Promise<{ port: number; server: net.Server }> {
  const server = net.createServer({ noDelay: true }, (socket) => socket.on("data", (data) => socket.write(data)));
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve({ port: (server.address() as net.AddressInfo).port, server }));
  });
}

const icestorm = await IceStormServer.start();
const mainArgs = ["--MainAdapter.Endpoints=tcp -h 127.0.0.1", icestorm.option];
const profileDir = Deno.env.get("BENCH_CPU_PROF");
const main = await startBenchService("main", mainArgs, { profileDir });
const base = BASE === undefined ? undefined : await startBenchService("main", mainArgs, { root: BASE, profileDir });
const echo = await denoEcho();
const pythonEcho = new Child(PYTHON, [`${ROOT}bench/ping_client.py`, "echo-server"]);
try {
  const pythonEchoPort = await pythonEcho.line(1);
  /** What each target is, and how a round measures it; Main's and base's CPU per ping too. */
  const targets: Record<string, { args: string[]; pid?: number }> = {
    "Main": { args: ["ping", main.proxy], pid: main.child.process.pid },
    ...(base ? { "base Main": { args: ["ping", base.proxy], pid: base.child.process.pid } } : {}),
    "TopicManager": { args: ["ping", icestorm.proxy] },
    "Deno echo": { args: ["echo", String(echo.port)] },
    "Python echo": { args: ["echo", pythonEchoPort] },
  };
  const names = Object.keys(targets);
  const rounds: Record<string, Pings[]> = Object.fromEntries(names.map((name) => [name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const name of round % 2 === 0 ? names : [...names].reverse()) {
      const { args, pid } = targets[name];
      const cpuBefore = pid === undefined ? 0 : cpuSeconds(pid);
      const result = await pingClient([...args, String(SECONDS)]);
      const cpu = pid === undefined
        ? ""
        : `, CPU ${((cpuSeconds(pid) - cpuBefore) / result.pings * 1e6).toFixed(0)} us per ping`;
      rounds[name].push(result);
      console.log(
        `round ${round + 1}: ${name}, 1 caller from Python: ${Math.round(result.pings / SECONDS)}/s, ` +
          `p50 ${Math.round(result.p50)} us, p99 ${Math.round(result.p99)} us${cpu}`,
      );
    }
  }
  const ratio = (over: string, under: string, figure: keyof Pings) =>
    spread(rounds[over].map((value, round) => value[figure] / rounds[under][round][figure]));
  const ratios = (over: string, under: string) =>
    `rate ${ratio(over, under, "pings")}, p50 ${ratio(over, under, "p50")}, p99 ${ratio(over, under, "p99")}`;
  console.log(`ice_ping from Python, Main / TopicManager over ${ROUNDS} rounds: ${ratios("Main", "TopicManager")}`);
  if (base) console.log(`ice_ping from Python, Main / base Main over ${ROUNDS} rounds: ${ratios("Main", "base Main")}`);
  console.log(
    `the floor, echo from Python, Deno node:net / Python over ${ROUNDS} rounds: ${ratios("Deno echo", "Python echo")}`,
  );
  // Microseconds of p50, median over the rounds: what Deno's bare I/O adds to a round trip, what Main adds, and what
  // 0.9x of the TopicManager's rate leaves room for.
  const added = (over: string, under: string) =>
    percentile(rounds[over].map((value, round) => value.p50 - rounds[under][round].p50), 50).toFixed(0);
  const room = percentile(rounds.TopicManager.map((value) => value.p50 / 0.9 - value.p50), 50).toFixed(0);
  console.log(
    `p50 added per round trip: Deno echo over Python echo ${added("Deno echo", "Python echo")} us, ` +
      `Main over TopicManager ${added("Main", "TopicManager")} us; 0.9x of the TopicManager's rate leaves ${room} us`,
  );
} finally {
  echo.server.close();
  await pythonEcho.stop();
  await main.child.stop();
  await base?.child.stop();
  await icestorm.stop();
}
