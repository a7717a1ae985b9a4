/**
 * The limits on incoming connections (connection_limits.ts, acceptor.ts) on a
 * real service (the toy Authenticator) with a real IceStorm: raw TCP sockets
 * play the careless or hostile peers, an Ice communicator the honest client.
 */
import assert from "node:assert/strict";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { Child, delay, eventually, IceStormServer, ROOT, testCommunicator } from "../harness.ts";

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
