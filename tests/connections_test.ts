/**
 * The limits on incoming connections (connection_limits.ts, acceptor.ts) on a
 * real service (the toy Authenticator) with a real IceStorm: raw TCP sockets
 * play the careless or hostile peers, an Ice communicator the honest client.
 * Then the outgoing ones (discovery.ts): forged announcements at tarpits, and
 * a soak of Main under idle connections, tarpits and clients.
 */
import assert from "node:assert/strict";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import {
  Child,
  connectionsTo,
  delay,
  eventually,
  freePort,
  IceStormServer,
  openDescriptors,
  Outsider,
  ROOT,
  scratchDir,
  startIceFlixService,
  testCommunicator,
  writeUsersFile,
} from "../harness.ts";
import { sha256Hex } from "../users.ts";

/** Starts the toy Authenticator with these properties (through `prefix`, e.g. prlimit); returns it and its proxy. */
async function startToy(icestorm: IceStormServer, properties: string[], prefix: string[] = []) {
  const command = [...prefix, Deno.execPath(), "run", "--allow-all", `${ROOT}tests/toy_service.ts`];
  const child = new Child(command[0], [
    ...command.slice(1),
    "--ToyAdapter.Endpoints=tcp -h 127.0.0.1",
    icestorm.option,
    ...properties,
  ]);
  const proxy = await child.line(1);
  return { child, proxy, port: Number(/ -p (\d+)/.exec(proxy)![1]) };
}

/** A raw TCP connection and what the server did first: sent Ice's ValidateConnection (admitted) or closed it. */
async function rawConnection(port: number): Promise<{ conn: Deno.TcpConn; admitted: boolean }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const header = new Uint8Array(14);
  let filled = 0;
  while (filled < header.length) {
    const count = await conn.read(header.subarray(filled)).catch(() => null);
    if (count === null) return { conn, admitted: false };
    filled += count;
  }
  return { conn, admitted: true };
}

/** Resolves once the server has closed `conn` (end of stream or reset). */
async function closedByServer(conn: Deno.TcpConn): Promise<void> {
  const buffer = new Uint8Array(64);
  while ((await conn.read(buffer).catch(() => null)) !== null) { /* whatever it sends, until it closes */ }
}

/** `promise`, or a failure naming `what` if it takes longer than `seconds`. */
async function within<T>(what: string, promise: Promise<T>, seconds = 15): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting until ${what}`)), seconds * 1000);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Lines of `text` that match `pattern`. */
function count(text: string, pattern: RegExp): number {
  return text.split("\n").filter((line) => pattern.test(line)).length;
}

/**
 * Runs `test` against the toy Authenticator (started with `properties`, through `prefix`) and an honest Ice client
 * of it; then closes the raw sockets the test left in `sockets` and stops everything.
 */
async function withToy(
  properties: string[],
  prefix: string[],
  test: (context: {
    toy: Awaited<ReturnType<typeof startToy>>;
    authenticator: IceFlix.AuthenticatorPrx;
    sockets: Deno.TcpConn[];
  }) => Promise<void>,
): Promise<void> {
  const icestorm = await IceStormServer.start();
  const toy = await startToy(icestorm, properties, prefix);
  const { communicator } = await testCommunicator();
  const authenticator = IceFlix.AuthenticatorPrx.uncheckedCast(communicator.stringToProxy(toy.proxy));
  const sockets: Deno.TcpConn[] = [];
  try {
    await test({ toy, authenticator, sockets });
  } finally {
    for (const conn of sockets) conn.close();
    await communicator.destroy();
    await toy.child.stop();
    await icestorm.stop();
  }
}

Deno.test("connections: a cap per host refuses the extra ones at once, logged once; freed slots serve again", async () => {
  await withToy(["--IceFlix.Connections.MaxPerHost=6"], [], async ({ toy, authenticator, sockets }) => {
    let admitted = 0;
    for (let i = 0; i < 12; i++) {
      const raw = await rawConnection(toy.port);
      sockets.push(raw.conn);
      if (raw.admitted) admitted++;
    }
    // IceStorm (the toy subscribes to announcements) may hold one from the same host.
    assert.ok(admitted >= 5 && admitted <= 6, `admitted ${admitted} of 12`);
    await eventually("the refusal is logged", () => /refused connections from 127\.0\.0\.1/.test(toy.child.stderr));
    assert.equal(count(toy.child.stderr, /refused connections from 127\.0\.0\.1/), 1, "once per burst");

    for (const conn of sockets.splice(0)) conn.close();
    await eventually("a client is served again", () => authenticator.isAuthorized("toy-token").catch(() => false));
  });
});

Deno.test("connections: silent and trickling ones are closed; an idle Ice client is closed and reconnects", async () => {
  const properties = ["--IceFlix.Connections.FirstMessageTimeout=1", "--IceFlix.Connections.IdleTimeout=2"];
  await withToy(properties, [], async ({ toy, authenticator, sockets }) => {
    const silent = await rawConnection(toy.port);
    sockets.push(silent.conn);
    assert.ok(silent.admitted);
    const trickling = await rawConnection(toy.port);
    sockets.push(trickling.conn);
    // A header's first bytes, one every 200 ms: always active, never a whole message.
    let trickle = true;
    const trickled = (async () => {
      for (const byte of new TextEncoder().encode("IceP\x01\x00")) {
        if (!trickle) break;
        await trickling.conn.write(Uint8Array.of(byte)).catch(() => trickle = false);
        await delay(200);
      }
    })();
    await within("the silent connection is closed", closedByServer(silent.conn));
    await within("the trickling connection is closed", closedByServer(trickling.conn));
    trickle = false;
    await trickled;
    await eventually(
      "the closing is logged",
      () => /no complete message within 1 s/.test(toy.child.stderr),
    );

    assert.equal(await authenticator.isAuthorized("toy-token"), true);
    const connection = await authenticator.ice_getConnection();
    const closed = new Promise<void>((resolve) => connection.setCloseCallback(() => resolve()));
    // The server closes it once idle (gracefully: Ice's ACM, at half the idle limit).
    await within("the idle client's connection is closed", closed);
    assert.equal(await authenticator.isAuthorized("toy-token"), true, "the next call reconnects");
  });
});

Deno.test("connections: out of descriptors, the listener logs once, keeps trying, and serves once some are free", async () => {
  // Caps above the descriptor limit, so that accept() itself fails (EMFILE) before the gate refuses anything.
  const properties = ["--IceFlix.Connections.Max=1000", "--IceFlix.Connections.MaxPerHost=1000"];
  await withToy(properties, ["prlimit", "--nofile=96:96"], async ({ toy, authenticator, sockets }) => {
    // More than the service's descriptors: the last ones wait in the listen queue, unaccepted.
    for (let i = 0; i < 120; i++) sockets.push(await Deno.connect({ hostname: "127.0.0.1", port: toy.port }));
    await eventually("the accept error is logged", () => /cannot accept connections/.test(toy.child.stderr));
    await delay(2500); // Several back-offs: still one line.
    assert.equal(count(toy.child.stderr, /cannot accept connections/), 1, "once per burst");

    for (const conn of sockets.splice(0)) conn.close();
    await eventually("a client is served again", () => authenticator.isAuthorized("toy-token").catch(() => false));
  });
});

/** The user of the simulated clients, and her password. */
const ALICE = { user: "alice", password: "alice's secret" };

/**
 * How many descriptors above its start Main may hold once an attack is over: its connections to the services and
 * to IceStorm are made before the start is counted, so this is room for a client that reconnects, not for leaks.
 */
const DESCRIPTOR_MARGIN = 10;

/** Bounds each call of a simulated client: a call Main does not answer fails the test instead of hanging it. */
const CLIENT_CALL_TIMEOUT = 20_000;

/**
 * Runs `test` against Main (started through `prefix`, e.g. prlimit), an Authenticator and a catalog on a real
 * IceStorm, and a client's proxy of Main; `attack` starts an outsider (tests/interop/outsider.py) on them. Then it
 * stops everything.
 */
async function withMain(
  prefix: string[],
  test: (platform: {
    main: Child;
    auth: { child: Child; port: number };
    catalog: Child;
    mainPrx: IceFlix.MainPrx;
    mainPort: number;
    attack: (name: string, args: string[]) => Promise<Outsider>;
    /** Starts one more IceFlix service on the platform's IceStorm (stopped with the rest). */
    start: (name: string, args: string[]) => Promise<Child>;
  }) => Promise<void>,
): Promise<void> {
  const icestorm = await IceStormServer.start();
  const dir = await scratchDir("test-connections-");
  const children: Child[] = [];
  const outsiders: Outsider[] = [];
  const attack = async (name: string, args: string[]) => {
    outsiders.push(await Outsider.start(name, icestorm, args));
    return outsiders.at(-1)!;
  };
  const { communicator } = await testCommunicator();
  let passed = false;
  try {
    const common = [icestorm.option, "--IceFlix.Discovery.AnnounceInterval=1"];
    const usersFile = await writeUsersFile(dir, { [ALICE.user]: ALICE.password });
    const auth = await startIceFlixService("auth", [...common, `--IceFlix.Auth.UsersFile=${usersFile}`]);
    children.push(auth.child);
    const database = `--IceFlix.Catalog.DatabaseFile=${dir}/catalog.json`;
    const catalog = (await startIceFlixService("catalog", [...common, database])).child;
    children.push(catalog);
    const mainPort = await freePort();
    const main = await startIceFlixService(
      "main",
      [...common, `--MainAdapter.Endpoints=tcp -h 127.0.0.1 -p ${mainPort}`],
      prefix,
    );
    children.push(main.child);
    const mainPrx = IceFlix.MainPrx.uncheckedCast(communicator.stringToProxy(main.proxy))
      .ice_invocationTimeout(CLIENT_CALL_TIMEOUT);
    await eventually("Main hands out both services", () => clientSession(mainPrx).then(() => true, () => false));
    const authPort = Number(/ -p (\d+)/.exec(auth.proxy)![1]);
    const start = async (name: string, args: string[]) => {
      children.push((await startIceFlixService(name, [...common, ...args])).child);
      return children.at(-1)!;
    };
    await test({
      main: main.child,
      auth: { child: auth.child, port: authPort },
      catalog,
      mainPrx,
      mainPort,
      attack,
      start,
    });
    passed = true;
  } finally {
    await Promise.allSettled(outsiders.map((outsider) => outsider.finish()));
    await communicator.destroy();
    const stopped = await Promise.all(children.map((child) => stopWithin(child, 20)));
    await icestorm.stop();
    await Deno.remove(dir, { recursive: true });
    // A service whose shutdown waits on a connection that never closes is a failure (the test does not hang on it).
    if (!stopped.every(Boolean)) console.error("a service did not stop within 20 s of SIGTERM: killed");
    if (passed) assert.ok(stopped.every(Boolean), "every service stops when asked");
  }
}

/** Stops `child` (SIGTERM); false if it had not ended within `seconds` (it is killed then). */
async function stopWithin(child: Child, seconds: number): Promise<boolean> {
  const ended = await Promise.race([child.stop().then(() => true), delay(seconds * 1000).then(() => false)]);
  if (!ended) await child.stop("SIGKILL");
  return ended;
}

/** One session of a client through Main: log in, search the catalog, check the token; fails if anything does. */
async function clientSession(main: IceFlix.MainPrx): Promise<void> {
  const auth = (await main.getAuthenticator()).ice_invocationTimeout(CLIENT_CALL_TIMEOUT);
  const token = await auth.refreshAuthorization(ALICE.user, await sha256Hex(ALICE.password));
  const catalog = (await main.getCatalogService()).ice_invocationTimeout(CLIENT_CALL_TIMEOUT);
  await catalog.getTilesByName("", false);
  assert.equal(await auth.isAuthorized(token), true);
}

/** Runs client sessions through `main` one after another for `ms`; resolves to how many, all answered. */
async function clientLoad(main: IceFlix.MainPrx, ms: number): Promise<number> {
  const end = Date.now() + ms;
  let sessions = 0;
  for (; Date.now() < end; sessions++) await clientSession(main);
  return sessions;
}

/** The most descriptors process `pid` held, sampled every 100 ms until `until` resolves. */
async function mostDescriptors(pid: number, until: Promise<unknown>): Promise<number> {
  let done = false;
  until.finally(() => done = true).catch(() => {});
  let most = 0;
  while (!done) {
    most = Math.max(most, openDescriptors(pid));
    await delay(100);
  }
  return most;
}

/**
 * Waits (30 s at most) until process `pid` holds about `start` descriptors again (Deno may open one or two of its own
 * meanwhile); resolves to how many it holds then, for the caller to assert.
 */
async function descriptorsAfter(pid: number, start: number): Promise<number> {
  await eventually("Main's descriptors are back to their start", () => openDescriptors(pid) <= start + 2, 30)
    .catch(() => {/* the caller asserts, with the figures */});
  return openDescriptors(pid);
}

Deno.test("connections: forged announcements at tarpits leave Main no descriptors; their refusals cost one line", async () => {
  await withMain([], async ({ main, mainPrx, attack }) => {
    const pid = main.process.pid;
    const before = openDescriptors(pid);
    // 120 at two tarpits (each with its own endpoint timeout of an hour and more), 40 fakes that prove nothing.
    const outsider = await attack("tarpit", ["120", "40"]);
    const load = clientLoad(mainPrx, 8000);
    const [sessions, most] = await Promise.all([load, mostDescriptors(pid, load)]);
    await outsider.quiet();
    const after = await descriptorsAfter(pid, before);
    const seen = await outsider.finish();
    console.log(`Main's descriptors: ${before} at the start, at most ${most} during, ${after} after; ${sessions} \
client sessions; outsider: ${JSON.stringify(seen)}`);
    assert.ok(after <= before + DESCRIPTOR_MARGIN, `Main holds ${after} descriptors, ${before} at the start`);
    assert.ok(sessions > 0);
    assert.ok((seen["tarpit connections"] ?? 0) > 0, "Main reached the tarpits");
    assert.ok((seen.checked ?? 0) >= 10, `Main checked the fakes: ${JSON.stringify(seen)}`);
    // The burst is one warning that names the first; the others are counted for a summary a minute later.
    assert.match(main.stderr, /ignoring auth announcement \S+ at .*: it proves nothing/);
    assert.equal(count(main.stderr, /ignoring \S+ announcement/), 1, "one line for the burst of refusals");
  });
});

Deno.test("connections: a flood at tarpits on another host fills Main's checks, yet a new service here is found", async () => {
  await withMain([], async ({ main, attack, start }) => {
    // 300 forged announcements every half second at tarpits on 127.0.0.3, each holding a check for the call timeout:
    // far more than Main's 32 checks at once. 127.0.0.1, where Main and the services run, is a known host.
    const outsider = await attack("tarpit", ["300", "0", "127.0.0.3"]);
    const dir = await scratchDir("test-connections-");
    try {
      const catalog = await start("catalog", [`--IceFlix.Catalog.DatabaseFile=${dir}/catalog.json`]);
      const id = /announcing itself as catalog service (\S+)/.exec(catalog.stderr)![1];
      await eventually("Main finds the new catalog", () => main.stderr.includes(`catalog service ${id} found`), 20);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    const seen = await outsider.finish();
    assert.ok((seen["tarpit connections"] ?? 0) > 32, `the tarpits held Main's checks: ${JSON.stringify(seen)}`);
  });
});

Deno.test("connections: forged catalog replicas listed at tarpits leave the catalog no descriptors", async () => {
  await withMain([], async ({ catalog, attack }) => {
    const pid = catalog.process.pid;
    const before = openDescriptors(pid);
    // 40 forged replicas on CatalogReplicas: the catalog challenges those it lists (16 at a time) every interval.
    const outsider = await attack("tarpit-replicas", ["40"]);
    const most = await mostDescriptors(pid, delay(8000));
    await outsider.quiet();
    const after = await descriptorsAfter(pid, before);
    const seen = await outsider.finish();
    console.log(`the catalog's descriptors: ${before} at the start, at most ${most} during, ${after} after; \
outsider: ${JSON.stringify(seen)}`);
    assert.ok((seen["tarpit connections"] ?? 0) > 0, "the catalog reached the tarpits");
    assert.ok(after <= before + DESCRIPTOR_MARGIN, `the catalog holds ${after} descriptors, ${before} at the start`);
  });
});

Deno.test("connections: a service that hangs is dropped by Main, and Main's connection to it closed", async () => {
  await withMain([], async ({ main, auth, mainPrx }) => {
    const pid = main.process.pid;
    assert.ok(connectionsTo(pid, auth.port) > 0, "Main is connected to the Authenticator");
    auth.child.process.kill("SIGSTOP");
    try {
      // Main pings it every announce interval (1 s here): it is dropped after the call timeout, its connection closed
      // then (Ice would otherwise keep it until idle for a minute, the peer being alive and silent).
      await eventually("Main has closed its connection to the hung Authenticator", () => {
        return connectionsTo(pid, auth.port) === 0;
      }, 20);
      await assert.rejects(mainPrx.getAuthenticator(), IceFlix.TemporaryUnavailable);
    } finally {
      auth.child.process.kill("SIGCONT");
    }
    await eventually(
      "Main hands it out again once it answers",
      () => clientSession(mainPrx).then(() => true, () => false),
    );
  });
});

/** How long the soak's attack and client load last (issue 16: 60 s). */
const SOAK_MS = 60_000;

Deno.test("connections: soak, 60 s: 1,000 idle connections, 200 forged announcements at tarpits, clients through Main", async () => {
  // Main with a common descriptor limit, so that the idle connections meet its cap (768 with 1024 descriptors).
  await withMain(["prlimit", "--nofile=1024:1024"], async ({ main, mainPrx, mainPort, attack }) => {
    const pid = main.process.pid;
    const before = openDescriptors(pid);
    const tarpits = await attack("tarpit", ["200", "0"]);
    // From ten other loopback addresses than the clients', so that the cap per host leaves the clients theirs.
    const idle = await attack("idle", [String(mainPort), "1000"]);
    // Three clients, each running one session after another, all through Main.
    const load = Promise.all([1, 2, 3].map(() => clientLoad(mainPrx, SOAK_MS)));
    const [sessions, most] = await Promise.all([load, mostDescriptors(pid, load)]);
    await Promise.all([idle.quiet(), tarpits.quiet()]);
    const after = await descriptorsAfter(pid, before);
    await clientSession(mainPrx);
    const [flood, forged] = await Promise.all([idle.finish(), tarpits.finish()]);
    console.log(`Main's descriptors: ${before} at the start, at most ${most} during, ${after} after; client \
sessions ${sessions.join(", ")}; idle flood: ${JSON.stringify(flood)}; tarpits: ${JSON.stringify(forged)}`);
    assert.ok(sessions.every((count) => count > 0), "every client was served");
    assert.ok((flood["idle open at most"] ?? 0) >= 900, `the idle connections were made: ${JSON.stringify(flood)}`);
    assert.ok((forged["tarpit connections"] ?? 0) > 0, "Main reached the tarpits");
    assert.ok(after <= before + DESCRIPTOR_MARGIN, `Main holds ${after} descriptors, ${before} at the start`);
  });
});
