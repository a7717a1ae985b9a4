/**
 * Foundation: Ice servers in Deno (acceptor), configuration, IceStorm
 * events both ways, discovery and pruning, Python interop.
 */
import assert from "node:assert/strict";
import { Ice } from "ice";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { createObjectAdapter, openIncomingConnections } from "../acceptor.ts";
import { Discovery } from "../discovery.ts";
import { EventChannel, TOPICS } from "../events.ts";
import { createLogger, createServiceContext, initializeCommunicator, loadProperties } from "../service.ts";
import {
  AnnouncementCounter,
  delay,
  eventually,
  IceStormServer,
  processExists,
  PYTHON,
  ROOT,
  runPython,
  startService,
  testCommunicator,
} from "../harness.ts";

const TOY_ENDPOINTS = "--ToyAdapter.Endpoints=tcp -h 127.0.0.1";

Deno.test("configuration: Ice.Config files, then --Name=value on top, other arguments left", async () => {
  const file = await Deno.makeTempFile({ suffix: ".config" });
  await Deno.writeTextFile(file, "# comment\nA.B=from file\nC=file only\n");
  try {
    const args = [`--Ice.Config=${file}`, "--A.B=from command line", "positional"];
    const properties = loadProperties(args);
    assert.equal(properties.getProperty("A.B"), "from command line");
    assert.equal(properties.getProperty("C"), "file only");
    assert.deepEqual(args, ["positional"]);
    assert.throws(() => loadProperties(["--Ice.Config=/nonexistent.config"]), /cannot read configuration file/);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("acceptor: a TS servant answers a TS client on an OS-chosen port, and teardown leaves no connection", async () => {
  const communicator = initializeCommunicator(["--Server.Endpoints=tcp -h 127.0.0.1 -p 0"]);
  const adapter = await createObjectAdapter(communicator, "Server");
  class Echo extends IceFlix.Authenticator {
    refreshAuthorization(user: string): string {
      if (user === "") throw new IceFlix.Unauthorized();
      return user.toUpperCase();
    }
    isAuthorized(): boolean {
      return true;
    }
  }
  const proxy = IceFlix.AuthenticatorPrx.uncheckedCast(adapter.add(new Echo(), Ice.stringToIdentity("echo")));
  await adapter.activate();
  try {
    const port = Number(/-p (\d+)/.exec(proxy.toString())![1]);
    assert.ok(port > 0, `the proxy carries the real port: ${proxy}`);
    assert.equal(await proxy.refreshAuthorization("abc", ""), "ABC");
    await assert.rejects(proxy.refreshAuthorization("", ""), IceFlix.Unauthorized);
    assert.equal(openIncomingConnections(), 1);
  } finally {
    await communicator.destroy();
  }
  assert.equal(openIncomingConnections(), 0);
});

const isRoot = Deno.uid() === 0;
if (!isRoot) console.log("TCP_NODELAY test skipped: it needs root (it reads this process's sockets from outside)");

Deno.test({
  name: "TCP_NODELAY: Ice's outgoing connections and the acceptor's incoming ones both have it, seen from outside",
  ignore: !isRoot,
  async fn() {
    const communicator = initializeCommunicator(["--Server.Endpoints=tcp -h 127.0.0.1 -p 0"]);
    try {
      const adapter = await createObjectAdapter(communicator, "Server");
      const proxy = adapter.add(new Ice.Object(), Ice.stringToIdentity("pinged"));
      await adapter.activate();
      await proxy.ice_ping();
      const port = String(/-p (\d+)/.exec(proxy.toString())![1]);
      const sockets = JSON.parse(await runPython("tcp_nodelay.py", [String(Deno.pid), port]));
      assert.deepEqual(sockets, { outgoing: [1], incoming: [1] });
    } finally {
      await communicator.destroy();
    }
  },
});

Deno.test("ice_timeouts: a call answered within its invocation timeout leaves no timer behind; a late one still times out", async () => {
  const server = initializeCommunicator(["--Server.Endpoints=tcp -h 127.0.0.1 -p 0"]);
  const client = initializeCommunicator([]);
  const adapter = await createObjectAdapter(server, "Server");
  class Slow extends IceFlix.Authenticator {
    async refreshAuthorization(user: string): Promise<string> {
      if (user === "") throw new IceFlix.Unauthorized();
      if (user === "late") await delay(1000);
      return user;
    }
    isAuthorized(): boolean {
      return true;
    }
  }
  const text = server.proxyToString(adapter.add(new Slow(), Ice.stringToIdentity("slow")));
  await adapter.activate();
  // The client's timer (Ice's private Timer): what it still has scheduled.
  const scheduled = () =>
    (client as unknown as { _instance: { timer(): { _tokens: Map<number, unknown> } } })
      ._instance.timer()._tokens.size;
  try {
    const proxy = IceFlix.AuthenticatorPrx.uncheckedCast(client.stringToProxy(text)).ice_invocationTimeout(60_000);
    await proxy.ice_ping();
    const before = scheduled();
    for (let i = 0; i < 50; i++) {
      assert.equal(await proxy.refreshAuthorization(`user${i}`, ""), `user${i}`);
      assert.equal(await proxy.isAuthorized("token"), true);
      await assert.rejects(proxy.refreshAuthorization("", ""), IceFlix.Unauthorized);
    }
    assert.equal(scheduled(), before, "150 answered calls left their 60 s timers scheduled");
    await assert.rejects(
      proxy.ice_invocationTimeout(100).refreshAuthorization("late", ""),
      Ice.InvocationTimeoutException,
    );
  } finally {
    await client.destroy();
    await server.destroy();
  }
});

Deno.test("acceptor: a busy port and a non-tcp endpoint are clear errors", async () => {
  const communicator = initializeCommunicator(["--A.Endpoints=tcp -h 127.0.0.1 -p 0"]);
  try {
    const first = await createObjectAdapter(communicator, "A");
    const port = /-p (\d+)/.exec(communicator.proxyToString(first.createProxy(Ice.stringToIdentity("x"))))![1];
    communicator.getProperties().setProperty("B.Endpoints", `tcp -h 127.0.0.1 -p ${port}`);
    await assert.rejects(createObjectAdapter(communicator, "B"), /cannot listen on 127.0.0.1:\d+/);
    communicator.getProperties().setProperty("C.Endpoints", "ws -h 127.0.0.1 -p 0");
    await assert.rejects(createObjectAdapter(communicator, "C"), /only tcp endpoints/);
    await assert.rejects(createObjectAdapter(communicator, "D"), /D.Endpoints is not set/);
  } finally {
    await communicator.destroy();
  }
});

Deno.test("interop: a Python client calls a TS servant (normal return and user exception)", async () => {
  const icestorm = await IceStormServer.start();
  const toy = await startService("tests/toy_service.ts", [TOY_ENDPOINTS, icestorm.option]);
  try {
    assert.equal(await runPython("call_authenticator.py", [toy.proxy]), "token toy-token\nunauthorized\n");
  } finally {
    assert.equal((await toy.child.stop("SIGTERM")).code, 0, "SIGTERM ends the service cleanly");
    await icestorm.stop();
  }
});

Deno.test("interop: strings from Python reach a TS servant under a non-ASCII identity and come back unchanged", async () => {
  const { communicator, adapter } = await testCommunicator();
  try {
    class EchoUser extends IceFlix.Authenticator {
      refreshAuthorization(user: string): string {
        return user;
      }
      isAuthorized(): boolean {
        return true;
      }
    }
    const identity = new Ice.Identity("título ✓", "catálogo");
    const proxy = adapter.add(new EchoUser(), identity);
    await adapter.activate();
    const texts = [
      "",
      "Main",
      "Película: ñandú, über",
      "日本語のタイトル",
      "🎬 clapper",
      "\ufeffstarts with a byte order mark",
      "a long name, past the short-string path: ".repeat(3) + "ça va ✓",
      "x".repeat(64),
      "y".repeat(65),
    ];
    const child = new Deno.Command(PYTHON, {
      args: [`${ROOT}tests/interop/echo_strings.py`, communicator.proxyToString(proxy)],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(JSON.stringify(texts)));
    await writer.close();
    const output = await child.output();
    assert.ok(output.success, "echo_strings.py failed");
    assert.deepEqual(JSON.parse(new TextDecoder().decode(output.stdout)), texts);
  } finally {
    await communicator.destroy();
  }
});

Deno.test("ice_dispatch: strings decode as Ice's own code does them, malformed UTF-8 included; identities hash and compare the same", () => {
  const IceBuffer = (Ice as unknown as { Buffer: new (bytes: ArrayBuffer) => { getString(length: number): string } })
    .Buffer;
  // Ice's own decoding (Buffer.js in ice@3.7.110): a character per byte, then decodeURIComponent(escape(...)).
  const iceDecoding = (bytes: Uint8Array) => decodeURIComponent(escape(String.fromCharCode(...bytes)));
  const outcome = (decode: () => string) => {
    try {
      return { text: decode() };
    } catch (error) {
      return { error: (error as Error).name };
    }
  };
  const pieces = ["a", "Z", " ", "é", "ñ", "✓", "日", "🎬", "\ufeff", "\u0000", "\uffff"];
  const encoder = new TextEncoder();
  let malformed = 0;
  for (let round = 0; round < 5000; round++) {
    const parts: number[] = [];
    const count = Math.floor(Math.random() * 40);
    for (let i = 0; i < count; i++) {
      // Mostly text; now and then a byte that may break UTF-8 (a stray continuation, a lone lead, an overlong form).
      if (Math.random() < 0.05) parts.push([0x80, 0xbf, 0xc0, 0xc3, 0xe2, 0xed, 0xf0, 0xf5, 0xff][i % 9]);
      else parts.push(...encoder.encode(pieces[Math.floor(Math.random() * pieces.length)]));
    }
    const bytes = new Uint8Array(parts);
    const expected = outcome(() => iceDecoding(bytes));
    if ("error" in expected) malformed++;
    assert.deepEqual(outcome(() => new IceBuffer(bytes.slice().buffer).getString(bytes.length)), expected, `${bytes}`);
  }
  assert.ok(malformed > 100, `malformed inputs were tried too (${malformed})`);

  // The generic struct code, which Ice.Identity had, is still that of the other structs.
  const generic = Ice.EncodingVersion.prototype as unknown as {
    hashCode(this: unknown): number;
    equals(this: unknown, other: unknown): boolean;
  };
  assert.notEqual(Ice.Identity.prototype.hashCode, generic.hashCode, "ice_dispatch.ts is in place");
  const names = ["", "Main", "título ✓", "a".repeat(100), "🎬"];
  for (const name of names) {
    for (const category of names) {
      const identity = new Ice.Identity(name, category) as Ice.Identity & { hashCode(): number };
      assert.equal(identity.hashCode(), generic.hashCode.call(identity));
      for (const other of [new Ice.Identity(name, category), new Ice.Identity(category, name), null, undefined]) {
        assert.equal(
          identity.equals(other as Ice.Identity),
          generic.equals.call(identity, other),
          `${name}/${category}`,
        );
      }
    }
  }
});

Deno.test("interop: an event published from Python reaches a TS IceStorm subscriber", async () => {
  const icestorm = await IceStormServer.start();
  const { communicator, adapter } = await testCommunicator([icestorm.option]);
  try {
    const received: string[] = [];
    class Revocations extends IceFlix.TokenRevocation {
      revoke(token: string) {
        received.push(token);
      }
    }
    const events = new EventChannel(communicator, createLogger("test", communicator.getProperties()));
    await events.subscribe("RevocationsFromPython", adapter.addWithUUID(new Revocations()));
    assert.equal(
      await runPython("publish_revocation.py", [icestorm.proxy, "RevocationsFromPython", "t-1"]),
      "published\n",
    );
    await eventually("the event arrives", () => received.length === 1);
    assert.deepEqual(received, ["t-1"]);
  } finally {
    await communicator.destroy();
    await icestorm.stop();
  }
});

Deno.test("discovery: services find each other once; a SIGKILLed one is pruned within 2 announce intervals", async () => {
  const icestorm = await IceStormServer.start();
  const interval = "--IceFlix.Discovery.AnnounceInterval=1";
  const { communicator, adapter } = await testCommunicator([icestorm.option, interval]);
  const first = await startService("tests/toy_service.ts", [TOY_ENDPOINTS, icestorm.option, interval]);
  const second = await startService("tests/toy_service.ts", [TOY_ENDPOINTS, icestorm.option, interval]);
  try {
    const context = await createServiceContext(adapter, createLogger("observer", communicator.getProperties()));
    const observer = new Discovery(context);
    await observer.start();
    const idOf = (proxy: string) =>
      [...observer.services("auth")].find(([, known]) => communicator.proxyToString(known) === proxy)?.[0];
    await eventually("the observer knows both toys", () => idOf(first.proxy) && idOf(second.proxy) ? true : false);
    const [firstId, secondId] = [idOf(first.proxy)!, idOf(second.proxy)!];
    await eventually("each toy found the other", () =>
      first.child.stderr.includes(`auth service ${secondId} found`) &&
      second.child.stderr.includes(`auth service ${firstId} found`));

    // The same service announced twice at once (its periodic announcement and the one for a newcomer): found once.
    const found: string[] = [];
    observer.onServiceAdded((_kind, id) => found.push(id));
    // The observer's announcement listener hands every announcement to learn(); here both are in before either check
    // (an ice_isA call and a proof from the announced proxy) has answered.
    observer.forget("auth", firstId);
    const twin = communicator.stringToProxy(first.proxy);
    await Promise.all([observer.learn("auth", firstId, twin), observer.learn("auth", firstId, twin)]);
    assert.deepEqual(found, [firstId]);

    // Nobody calls the killed toy: the periodic pings alone prune it, within 2 announce intervals. The intervals are
    // counted as the survivor's own announcements (it announces and pings once a tick), not in milliseconds, so a
    // slow machine slows the count too.
    const announcements = new AnnouncementCounter();
    await context.events.subscribe(TOPICS.serviceAvailability, adapter.addWithUUID(announcements));
    await eventually("the survivor's announcements are heard", () => announcements.heard.has(firstId));
    await second.child.stop("SIGKILL");
    const killedAt = announcements.heard.get(firstId)!;
    await eventually(
      "the killed toy is pruned everywhere",
      () => !observer.services("auth").has(secondId) && first.child.stderr.includes(`auth service ${secondId} gone`),
    );
    const ticks = announcements.heard.get(firstId)! - killedAt;
    assert.ok(ticks <= 2, `the survivor pruned the killed toy after ${ticks} announce intervals`);
    assert.ok(observer.services("auth").has(firstId));

    // callAny moves past a dead candidate that is still listed, whatever the round-robin position.
    const third = await startService("tests/toy_service.ts", [TOY_ENDPOINTS, icestorm.option, interval]);
    await eventually("the observer knows the third toy", () => idOf(third.proxy) !== undefined);
    await third.child.stop("SIGKILL");
    for (let call = 0; call < 2; call++) {
      assert.equal(await observer.callAny("auth", (auth) => auth.refreshAuthorization("toy", "hash")), "toy-token");
    }
    assert.deepEqual([...observer.services("auth").keys()], [firstId]);

    // With every candidate dead, the call fails with TemporaryUnavailable.
    await first.child.stop("SIGKILL");
    await assert.rejects(observer.callAny("auth", (auth) => auth.isAuthorized("x")), IceFlix.TemporaryUnavailable);
    await observer.stop();
  } finally {
    await Promise.all([first.child.stop(), second.child.stop()]);
    await communicator.destroy();
    await icestorm.stop();
  }
});

Deno.test("service context: the call timeout is property IceFlix.Discovery.CallTimeout (seconds), 3 s unless set", async () => {
  for (const [property, expected] of [[[], 3000], [["--IceFlix.Discovery.CallTimeout=0.5"], 500]] as const) {
    const { communicator, adapter } = await testCommunicator([...property]);
    try {
      assert.equal(
        (await createServiceContext(adapter, createLogger("test", communicator.getProperties()))).callTimeout,
        expected,
      );
    } finally {
      await communicator.destroy();
    }
  }
  for (const nonsense of ["0", "-1", "soon"]) {
    const { communicator, adapter } = await testCommunicator([`--IceFlix.Discovery.CallTimeout=${nonsense}`]);
    try {
      await assert.rejects(
        () => createServiceContext(adapter, createLogger("test", communicator.getProperties())),
        /IceFlix\.Discovery\.CallTimeout must be a positive number of seconds/,
      );
    } finally {
      await communicator.destroy();
    }
  }
});

Deno.test("IceStorm restarted with its data wiped: services re-subscribe and announce again by themselves", async () => {
  const icestorm = await IceStormServer.start();
  const interval = "--IceFlix.Discovery.AnnounceInterval=1";
  const { communicator, adapter } = await testCommunicator([icestorm.option, interval]);
  const observer = new Discovery(
    await createServiceContext(adapter, createLogger("observer", communicator.getProperties())),
  );
  const before = await startService("tests/toy_service.ts", [TOY_ENDPOINTS, icestorm.option, interval]);
  let after: Awaited<ReturnType<typeof startService>> | undefined;
  try {
    await observer.start();
    await eventually("the observer knows the first toy", () => observer.services("auth").size === 1);

    await icestorm.restart({ forget: true });
    after = await startService("tests/toy_service.ts", [TOY_ENDPOINTS, icestorm.option, interval]);
    // Only a renewed subscription lets the observer hear the toy started after the restart.
    await eventually(
      "the observer knows the toy started after the restart",
      () => observer.services("auth").size === 2,
    );
    await eventually("the first toy sees the new one too", () => before.child.stderr.split(" found").length === 2);
    assert.ok(before.child.stderr.split("IceStorm unreachable").length <= 2, "the outage is logged once at most");
    await observer.stop();
  } finally {
    await Promise.all([before.child.stop(), after?.child.stop()]);
    await communicator.destroy();
    await icestorm.stop();
  }
});

Deno.test("harness: a test process killed by SIGKILL leaves none of its children running", async () => {
  // A test process of its own starts IceStorm through the harness, says the pid, and is then killed without warning.
  const harness = new URL("../harness.ts", import.meta.url).href;
  const code = `
    import { Child, freePort, waitForPort, ROOT } from "${harness}";
    const port = await freePort();
    const dataDir = await Deno.makeTempDir({ prefix: "iceflix-orphan-" });
    const icestorm = new Child(ROOT + "run_icestorm", ["--port", String(port), "--data", dataDir]);
    await waitForPort(port);
    await icestorm.line(1); // "IceStorm ready": before it, IceBox ignores SIGTERM
    console.log(icestorm.process.pid, dataDir);
    await new Promise(() => setInterval(() => {}, 1000));`;
  const testProcess = new Deno.Command(Deno.execPath(), { args: ["eval", code], stdout: "piped", stderr: "inherit" })
    .spawn();
  const reader = testProcess.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const [pid, dataDir] = (await reader.read()).value!.trim().split(" ");
  assert.ok(processExists(Number(pid)), "IceStorm runs");
  testProcess.kill("SIGKILL");
  await testProcess.status;
  await reader.cancel();
  await eventually("IceStorm has ended", () => !processExists(Number(pid)));
  await Deno.remove(dataDir, { recursive: true });
});
