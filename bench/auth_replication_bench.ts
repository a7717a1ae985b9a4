/**
 * Authenticator replicas (real Authenticator processes, a real IceStorm):
 * what sharing every token costs a login, and how long a new replica takes
 * to learn the live tokens.
 *
 * - refreshAuthorization on one replica + isAuthorized on another, with 8
 *   concurrent Python callers (bench/login_client.py: IcePy's C++ runtime
 *   leaves the cores to the replicas), for 1, 2 and 3 replicas (a new replica
 *   started for each), in pairs/s and in CPU-ms per login (the CPU time of
 *   every Authenticator process, from /proc/PID/stat, over the logins; the
 *   client's beside it). Each count
 *   is timed twice: "cold", from the new replica's ready line, and "steady",
 *   once every replica has caught up and discovery has made each one meet
 *   every other (each meeting sends a whole table) and their CPU has settled;
 * - for this clone only, "apart": 3 replicas of one installation that share
 *   nothing (each on an IceStorm of its own, so they never meet; its tokens
 *   prove themselves, so each accepts the others'), against 1: what the
 *   same logins cost with no replication at all, the bound of any design;
 * - catch-up: a replica started while LIVE_TOKENS tokens are live, from its
 *   spawn to its `caught up` log line (Deno's start included), and from its
 *   ready line (its proxy printed) to the same line.
 *
 * With `BENCH_BASE=<another clone>/` (set up with `./setup`) that clone's
 * Authenticator is measured in the same run, round by round in alternating
 * order, each with an IceStorm of its own; ratios are printed as the median
 * and spread over the rounds. With `BENCH_CPU_PROF=<folder>` every
 * Authenticator writes a V8 CPU profile there when it stops (Deno's
 * `--cpu-prof`).
 *
 * @module
 */
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { sha256Hex } from "../users.ts";
import {
  Child,
  delay,
  eventually,
  IceStormServer,
  PYTHON,
  ROOT,
  scratchDir,
  startBenchService,
  testCommunicator,
  writeUsersFile,
} from "../harness.ts";
import { cpuSeconds, percentile } from "./stats.ts";

const SECONDS = 3;
const CALLERS = 8;
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 3);
const LIVE_TOKENS = 50_000;
const BASE = Deno.env.get("BENCH_BASE");
const PROFILE = Deno.env.get("BENCH_CPU_PROF");

const { communicator } = await testCommunicator();
const passwordHash = await sha256Hex("bench");
/** The Python callers (bench/login_client.py), one process for the whole run. */
const callers = new Deno.Command(PYTHON, {
  args: [`${ROOT}bench/login_client.py`, String(CALLERS), "bench", passwordHash],
  stdin: "piped",
  stdout: "piped",
}).spawn();
const callersInput = callers.stdin.getWriter();
const callersOutput = callers.stdout.pipeThrough(new TextDecoderStream()).getReader();
let callersText = "";
/** The next line the Python callers print. */
async function nextLine(): Promise<string> {
  while (!callersText.includes("\n")) {
    const { value, done } = await callersOutput.read();
    if (done) throw new Error("the Python callers ended");
    callersText += value;
  }
  const end = callersText.indexOf("\n");
  const line = callersText.slice(0, end);
  callersText = callersText.slice(end + 1);
  return line;
}
await nextLine(); // "ready"
/** One clone's Authenticator, with an IceStorm and a users file of its own. */
interface Tree {
  name: string;
  root: string;
  icestorm: IceStormServer;
  usersFile: string;
  dir: string;
}

/** A running replica: its process and its proxy. */
interface Replica {
  child: Child;
  proxy: IceFlix.AuthenticatorPrx;
  /** When it was spawned, and when it printed its proxy (performance.now()). */
  spawned: number;
  ready: number;
}

/** The clone at `root`: a users file it reads (SHA-256 entries for the base, which predates stored passwords). */
async function openTree(name: string, root: string): Promise<Tree> {
  const icestorm = await IceStormServer.start();
  const dir = await scratchDir(`bench-replication-${name}-`);
  const usersFile = root === ROOT ? await writeUsersFile(dir, { bench: "bench" }) : `${dir}/users.json`;
  if (root !== ROOT) await Deno.writeTextFile(usersFile, JSON.stringify({ bench: passwordHash }));
  return { name, root, icestorm, usersFile, dir };
}

/** Starts a replica of `tree` (on `icestorm`, the tree's unless given); resolves when it is ready. */
async function startReplica(tree: Tree, icestorm = tree.icestorm): Promise<Replica> {
  const spawned = performance.now();
  const { child, proxy } = await startBenchService("auth", [
    "--AuthAdapter.Endpoints=tcp -h 127.0.0.1",
    icestorm.option,
    `--IceFlix.Auth.UsersFile=${tree.usersFile}`,
    "--IceFlix.Auth.TokenLifetime=600",
    "--IceFlix.LogLevel=info",
  ], { root: tree.root, profileDir: PROFILE });
  return {
    child,
    proxy: IceFlix.AuthenticatorPrx.uncheckedCast(communicator.stringToProxy(proxy)),
    spawned,
    ready: performance.now(),
  };
}

/** CPU time (ms) process `pid` has used so far, user and system. */
function cpuMs(pid: number): number {
  return cpuSeconds(pid) * 1000;
}

/** CPU time (ms) of all `replicas` so far. */
function replicasCpu(replicas: Replica[]): number {
  return replicas.reduce((sum, { child }) => sum + cpuMs(child.process.pid), 0);
}

/** Resolves once every replica has caught up, has found each other one, and their CPU has been quiet a moment. */
async function steady(replicas: Replica[], apart = false): Promise<void> {
  await eventually(
    "every replica has caught up and met every other",
    () =>
      replicas.every(({ child }) =>
        /caught up: /.test(child.stderr) &&
        (apart || (child.stderr.match(/auth service \S+ found/g)?.length ?? 0) >= replicas.length - 1)
      ),
    60,
  );
  for (let quiet = 0; quiet < 2;) {
    const before = replicasCpu(replicas);
    await delay(250);
    quiet = replicasCpu(replicas) - before <= 30 ? quiet + 1 : 0;
  }
}

/**
 * Logins per second from `CALLERS` Python callers (IcePy, in one process: little client CPU, so the replicas get the
 * cores), each logging in at one replica and checking the token at the next; CPU-ms per login of the replicas and of
 * the client.
 */
async function loginRate(
  replicas: Replica[],
): Promise<{ rate: number; cpuPerLogin: number; clientCpuPerLogin: number }> {
  const before = [replicasCpu(replicas), cpuMs(callers.pid)];
  const order = { seconds: SECONDS, proxies: replicas.map(({ proxy }) => communicator.proxyToString(proxy)) };
  await callersInput.write(new TextEncoder().encode(`${JSON.stringify(order)}\n`));
  const pairs = Number(await nextLine());
  return {
    rate: pairs / SECONDS,
    cpuPerLogin: (replicasCpu(replicas) - before[0]) / pairs,
    clientCpuPerLogin: (cpuMs(callers.pid) - before[1]) / pairs,
  };
}

/** Figures of one round of one tree: per replica count, cold and steady; 1 then 3 apart, for this clone. */
type Round = Record<"cold" | "steady" | "apart", Awaited<ReturnType<typeof loginRate>>[]>;

/** The IceStorms of the replicas "apart" (this clone's tree has the first). */
const apartIceStorms = [await IceStormServer.start(), await IceStormServer.start()];

/** One round on `tree`: 1, 2, then 3 replicas, each new one timed cold and then steady; then apart (this clone). */
async function round(tree: Tree): Promise<Round> {
  const replicas: Replica[] = [];
  const figures: Round = { cold: [], steady: [], apart: [] };
  try {
    for (let count = 1; count <= 3; count++) {
      replicas.push(await startReplica(tree));
      figures.cold.push(await loginRate(replicas));
      await steady(replicas);
      figures.steady.push(await loginRate(replicas));
    }
  } finally {
    await Promise.all(replicas.splice(0).map(({ child }) => child.stop()));
  }
  if (tree.root !== ROOT) return figures;
  try {
    for (const icestorm of [tree.icestorm, ...apartIceStorms]) {
      replicas.push(await startReplica(tree, icestorm));
      await steady(replicas, true);
      if (replicas.length !== 2) figures.apart.push(await loginRate(replicas));
    }
  } finally {
    await Promise.all(replicas.map(({ child }) => child.stop()));
  }
  return figures;
}

/** `median (min-max)` of `values`, with `digits` decimals. */
function spread(values: number[], digits = 2): string {
  const text = (value: number) => value.toFixed(digits);
  return `${text(percentile(values, 50))} (${text(Math.min(...values))}-${text(Math.max(...values))})`;
}

/** The catch-up of a replica started while LIVE_TOKENS are live on 2 replicas of `tree`. */
async function catchUp(tree: Tree): Promise<void> {
  const replicas = [await startReplica(tree), await startReplica(tree)];
  try {
    await steady(replicas);
    let issued = 0;
    await Promise.all(Array.from({ length: CALLERS }, async (_, caller) => {
      while (issued < LIVE_TOKENS) {
        issued++;
        await replicas[caller % replicas.length].proxy.refreshAuthorization("bench", passwordHash);
      }
    }));
    const late = await startReplica(tree);
    replicas.push(late);
    await eventually("the late replica has caught up", () => /caught up: \d+/.test(late.child.stderr), 120);
    const caughtUp = performance.now();
    const [, tokens, peers] = /caught up: (\d+) live token\(s\) from (\d+)/.exec(late.child.stderr)!;
    console.log(
      `${tree.name}: catch-up of a new replica: ${tokens} live tokens from ${peers} replicas, ` +
        `${Math.round(caughtUp - late.spawned)} ms from spawn (${
          Math.round(caughtUp - late.ready)
        } ms after its ready line)`,
    );
  } finally {
    await Promise.all(replicas.map(({ child }) => child.stop()));
  }
}

const trees = [await openTree("main", ROOT), ...(BASE ? [await openTree("base", BASE)] : [])];
try {
  const rounds = new Map(trees.map((tree) => [tree.name, [] as Round[]]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const tree of r % 2 === 0 ? trees : [...trees].reverse()) {
      const figures = await round(tree);
      rounds.get(tree.name)!.push(figures);
      for (const phase of ["cold", "steady"] as const) {
        console.log(
          `round ${r + 1} ${tree.name} ${phase}: ` +
            figures[phase].map(({ rate, cpuPerLogin, clientCpuPerLogin }, i) =>
              `${i + 1} replica(s) ${Math.round(rate)} pairs/s ${cpuPerLogin.toFixed(2)} CPU-ms/login ` +
              `(client ${clientCpuPerLogin.toFixed(2)})`
            ).join(", "),
        );
      }
      if (figures.apart.length > 0) {
        const [one, three] = figures.apart;
        console.log(
          `round ${r + 1} ${tree.name} apart: 1 replica ${Math.round(one.rate)} pairs/s ` +
            `${one.cpuPerLogin.toFixed(2)} CPU-ms/login, 3 sharing nothing ${Math.round(three.rate)} pairs/s ` +
            `${three.cpuPerLogin.toFixed(2)} CPU-ms/login`,
        );
      }
    }
  }
  for (const phase of ["cold", "steady"] as const) {
    for (const tree of trees) {
      const figures = rounds.get(tree.name)!.map((round) => round[phase]);
      console.log(
        `${tree.name} ${phase}, ${CALLERS} callers, median (min-max) of ${ROUNDS} rounds: ` +
          [0, 1, 2].map((i) =>
            `${i + 1} replica(s) ${spread(figures.map((f) => f[i].rate), 0)} pairs/s, ` +
            `${spread(figures.map((f) => f[i].cpuPerLogin))} CPU-ms/login`
          ).join("; "),
      );
      console.log(
        `${tree.name} ${phase}: 3 replicas / 1 replica, pairs/s: ${spread(figures.map((f) => f[2].rate / f[0].rate))}x`,
      );
    }
    if (BASE) {
      const [main, base] = [rounds.get("main")!, rounds.get("base")!];
      console.log(
        `main / base ${phase}, pairs/s: ` +
          [0, 1, 2].map((i) =>
            `${i + 1} replica(s) ${spread(main.map((round, r) => round[phase][i].rate / base[r][phase][i].rate))}x`
          ).join(", "),
      );
    }
  }
  const apart = rounds.get("main")!.map((round) => round.apart);
  console.log(
    `main apart (3 replicas that share nothing), median (min-max) of ${ROUNDS} rounds: ` +
      `1 replica ${spread(apart.map(([one]) => one.rate), 0)} pairs/s, ` +
      `${spread(apart.map(([one]) => one.cpuPerLogin))} CPU-ms/login; 3 apart ${
        spread(apart.map(([, three]) => three.rate), 0)
      } pairs/s, ` +
      `${spread(apart.map(([, three]) => three.cpuPerLogin))} CPU-ms/login; ` +
      `3 apart / 1: ${spread(apart.map(([one, three]) => three.rate / one.rate))}x`,
  );
  for (const tree of trees) await catchUp(tree);
} finally {
  await callersInput.close();
  await callers.status;
  await communicator.destroy();
  for (const tree of trees) {
    await tree.icestorm.stop();
    await Deno.remove(tree.dir, { recursive: true });
  }
  for (const icestorm of apartIceStorms) await icestorm.stop();
}
