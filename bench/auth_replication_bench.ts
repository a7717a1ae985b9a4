/**
 * Authenticator replicas (real `./run_service auth` processes, a real
 * IceStorm): what sharing every token costs a login, and how long a new
 * replica takes to learn the live tokens.
 *
 * - refreshAuthorization on one replica + isAuthorized on another, with 8
 *   concurrent callers, for 1, 2 and 3 replicas (the issuer pushes each token
 *   to its peers before returning it);
 * - catch-up: a replica started while LIVE_TOKENS tokens are live, from its
 *   spawn to its `caught up` log line (Deno's start included), and from its
 *   ready line (its proxy printed) to the same line.
 *
 * @module
 */
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { sha256Hex } from "../users.ts";
import { Child, eventually, IceStormServer, ROOT, scratchDir, testCommunicator, writeUsersFile } from "../harness.ts";

const SECONDS = 3;
const CALLERS = 8;
const LIVE_TOKENS = 50_000;

const icestorm = await IceStormServer.start();
const dir = await scratchDir("bench-replication-");
const usersFile = await writeUsersFile(dir, { bench: "bench" });
const passwordHash = await sha256Hex("bench");
const { communicator } = await testCommunicator();
const children: Child[] = [];

/** Spawns a replica; resolves when it is ready, with its proxy and when it was spawned (performance.now()). */
async function startReplica(): Promise<{ child: Child; proxy: IceFlix.AuthenticatorPrx; spawned: number }> {
  const spawned = performance.now();
  const child = new Child(`${ROOT}run_service`, [
    "auth",
    "--AuthAdapter.Endpoints=tcp -h 127.0.0.1",
    icestorm.option,
    `--IceFlix.Auth.UsersFile=${usersFile}`,
    "--IceFlix.Auth.TokenLifetime=600",
    "--IceFlix.LogLevel=info",
  ]);
  children.push(child);
  const proxy = IceFlix.AuthenticatorPrx.uncheckedCast(communicator.stringToProxy(await child.line(1)));
  return { child, proxy, spawned };
}

/** `CALLERS` callers, each logging in at one replica and checking the token at the next, for SECONDS. */
async function loginRate(replicas: IceFlix.AuthenticatorPrx[]): Promise<number> {
  let pairs = 0;
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: CALLERS }, async (_, caller) => {
    for (let i = caller; performance.now() < end; i++) {
      const token = await replicas[i % replicas.length].refreshAuthorization("bench", passwordHash);
      await replicas[(i + 1) % replicas.length].isAuthorized(token);
      pairs++;
    }
  }));
  return pairs / SECONDS;
}

try {
  const replicas: IceFlix.AuthenticatorPrx[] = [];
  for (let count = 1; count <= 3; count++) {
    replicas.push((await startReplica()).proxy);
    const rate = await loginRate(replicas);
    console.log(
      `refreshAuthorization on one replica + isAuthorized on another, ${count} replica(s), ${CALLERS} callers: ` +
        `${Math.round(rate)} pairs/s`,
    );
  }

  let issued = 0;
  await Promise.all(Array.from({ length: CALLERS }, async (_, caller) => {
    while (issued < LIVE_TOKENS) {
      issued++;
      await replicas[caller % replicas.length].refreshAuthorization("bench", passwordHash);
    }
  }));
  const late = await startReplica();
  const ready = performance.now();
  await eventually("the late replica has caught up", () => /caught up: \d+/.test(late.child.stderr), 120);
  const caughtUp = performance.now();
  const [, tokens, peers] = /caught up: (\d+) live token\(s\) from (\d+)/.exec(late.child.stderr)!;
  console.log(
    `catch-up of a new replica: ${tokens} live tokens from ${peers} replicas, ` +
      `${Math.round(caughtUp - late.spawned)} ms from spawn (${Math.round(caughtUp - ready)} ms after its ready line)`,
  );
} finally {
  await Promise.all(children.map((child) => child.stop()));
  await communicator.destroy();
  await icestorm.stop();
  await Deno.remove(dir, { recursive: true });
}
