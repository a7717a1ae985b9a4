/**
 * Trust (issue 10): an outsider on the network, without the installation
 * secret, attacks from Python (tests/interop/outsider.py); each test asserts
 * what the real services answer meanwhile.
 *
 * @module
 */
import { Ice } from "ice";
import assert from "node:assert/strict";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
// @ts-types="../slice/catalog_replication.d.ts"
import { IceFlixCatalogReplication } from "../slice/catalog_replication.js";
import { Discovery } from "../discovery.ts";
import { createLogger, createServiceContext } from "../service.ts";
import {
  Child,
  delay,
  eventually,
  freePort,
  IceStormServer,
  Outsider,
  ROOT,
  RtpReceiver,
  scratchDir,
  startIceFlixService,
  testCommunicator,
  writeUsersFile,
} from "../harness.ts";
import { sha256Hex } from "../users.ts";

const INTERVAL = "--IceFlix.Discovery.AnnounceInterval=1";
const PASSWORD = "alice's secret";

/**
 * Time given to every service to hear the outsider's announcements and check them (several announce intervals),
 * before the test asserts that nothing was believed. Waited, never measured.
 */
const SETTLE_MS = 4000;

/** The sample every platform here serves: the streaming service's own media folder. */
const MEDIA_DIR = `${ROOT}media`;

/** A platform of real services on IceStorm, with user alice; everything it started is stopped by `stop()`. */
class Platform {
  readonly children: Child[] = [];
  readonly outsiders: Outsider[] = [];

  private constructor(
    readonly icestorm: IceStormServer,
    readonly dir: string,
    readonly usersFile: string,
    readonly communicator: Ice.Communicator,
    readonly adapter: Ice.ObjectAdapter,
  ) {}

  static async start(): Promise<Platform> {
    const icestorm = await IceStormServer.start();
    const dir = await scratchDir("test-trust-");
    const usersFile = await writeUsersFile(dir, { alice: PASSWORD });
    const { communicator, adapter } = await testCommunicator([icestorm.option]);
    return new Platform(icestorm, dir, usersFile, communicator, adapter);
  }

  /** Starts service `name` of this platform; resolves to its proxy. */
  async service(name: "main" | "auth" | "catalog" | "streaming", args: string[] = []): Promise<ServiceRun> {
    const endpoints = name === "main" ? `--MainAdapter.Endpoints=tcp -h 127.0.0.1 -p ${await freePort()}` : [];
    const { child, proxy } = await startIceFlixService(name, [
      this.icestorm.option,
      INTERVAL,
      `--IceFlix.Auth.UsersFile=${this.usersFile}`,
      `--IceFlix.Catalog.DatabaseFile=${this.dir}/catalog-${this.children.length}.json`,
      `--IceFlix.Streaming.MediaDir=${MEDIA_DIR}`,
      ...[endpoints].flat(),
      ...args,
    ]);
    this.children.push(child);
    return { child, proxy: this.communicator.stringToProxy(proxy) };
  }

  /** Main, an Authenticator, a catalog and a streaming service; resolves once the catalog serves the sample. */
  async standard(): Promise<StandardPlatform> {
    const auth = await this.service("auth");
    const streaming = await this.service("streaming");
    const catalog = await this.service("catalog");
    const main = await this.service("main");
    const catalogPrx = IceFlix.MediaCatalogPrx.uncheckedCast(catalog.proxy);
    const mediaId = await sampleId(catalogPrx);
    return {
      main: IceFlix.MainPrx.uncheckedCast(main.proxy),
      auth,
      authPrx: IceFlix.AuthenticatorPrx.uncheckedCast(auth.proxy),
      catalog,
      catalogPrx,
      streaming,
      provider: IceFlix.StreamProviderPrx.uncheckedCast(streaming.proxy),
      mediaId,
    };
  }

  async attack(attack: string, args: string[]): Promise<Outsider> {
    const outsider = await Outsider.start(attack, this.icestorm, args);
    this.outsiders.push(outsider);
    return outsider;
  }

  async logIn(auth: IceFlix.AuthenticatorPrx): Promise<string> {
    return await auth.refreshAuthorization("alice", await sha256Hex(PASSWORD));
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.outsiders.map((outsider) => outsider.finish()));
    await Promise.all(this.children.map((child) => child.stop()));
    await this.communicator.destroy();
    await this.icestorm.stop();
    await Deno.remove(this.dir, { recursive: true });
  }
}

interface ServiceRun {
  child: Child;
  proxy: Ice.ObjectPrx;
}

interface StandardPlatform {
  main: IceFlix.MainPrx;
  auth: ServiceRun;
  authPrx: IceFlix.AuthenticatorPrx;
  catalog: ServiceRun;
  catalogPrx: IceFlix.MediaCatalogPrx;
  streaming: ServiceRun;
  provider: IceFlix.StreamProviderPrx;
  mediaId: string;
}

/** The two samples ./setup puts in media/: what the real streaming service offers. */
const SAMPLES = 2;

/** The id of test_pattern, once `catalog` serves both samples. */
async function sampleId(catalog: IceFlix.MediaCatalogPrx): Promise<string> {
  let ids: string[] = [];
  await eventually("the catalog serves the samples", async () => {
    ids = await catalog.getTilesByName("test_pattern", true);
    return ids.length === 1 && (await catalog.getTilesByName("", false)).length === SAMPLES &&
      await catalog.getTile(ids[0]).then(() => true, () => false);
  });
  return ids[0];
}

/** The discovery id a service logs at start. */
function announcedId(child: Child): string {
  return /announcing itself as \S+ service (\S+)/.exec(child.stderr)![1];
}

const sameEndpoints = (a: Ice.ObjectPrx, b: Ice.ObjectPrx) =>
  a.ice_getEndpoints().map(String).join() === b.ice_getEndpoints().map(String).join();

Deno.test("trust 1: fake Authenticators and providers are never handed out, asked, recorded or named", async () => {
  const platform = await Platform.start();
  try {
    const p = await platform.standard();
    const outsider = await platform.attack("fakes", [p.mediaId]);
    await delay(SETTLE_MS);

    for (let i = 0; i < 20; i++) assert.ok(sameEndpoints(await p.main.getAuthenticator(), p.authPrx), "Main's auth");
    const token = await platform.logIn(await p.main.getAuthenticator());
    for (let i = 0; i < 10; i++) {
      await assert.rejects(p.catalogPrx.addTags(p.mediaId, ["bogus"], "f".repeat(32)), IceFlix.Unauthorized);
      await assert.rejects(p.provider.getStream(p.mediaId, "f".repeat(32)), IceFlix.Unauthorized);
      assert.ok(sameEndpoints((await p.catalogPrx.getTile(p.mediaId)).provider!, p.provider), "the real provider");
    }
    await p.catalogPrx.addTags(p.mediaId, ["genuine"], token);
    assert.deepEqual(await p.catalogPrx.getTilesByName("spam", false), [], "no spam title");
    assert.equal((await p.catalogPrx.getTilesByName("", false)).length, SAMPLES, "only the real titles");
    assert.equal((await p.catalogPrx.getTile(p.mediaId)).info.name, "test_pattern");

    const seen = await outsider.finish();
    for (const call of ["refreshAuthorization", "isAuthorized", "isAvailable", "getStream"]) {
      assert.equal(seen[call] ?? 0, 0, `the fakes got ${call}: ${JSON.stringify(seen)}`);
    }
  } finally {
    await platform.stop();
  }
});

Deno.test("trust 2: a real id announced with another proxy, or a real proxy under 500 new ids, changes nothing", async () => {
  const platform = await Platform.start();
  const context = await createServiceContext(
    platform.adapter,
    createLogger("observer", platform.communicator.getProperties()),
  );
  const observer = new Discovery(context);
  try {
    const p = await platform.standard();
    const authId = announcedId(p.auth.child);
    await observer.start();
    await eventually("the observer knows the Authenticator", () => observer.services("auth").has(authId));
    const outsider = await platform.attack("takeover", [platform.communicator.proxyToString(p.authPrx), authId]);
    await delay(SETTLE_MS);

    // The observer is IceFlix's own discovery, as every service runs it.
    const known = [...observer.services("auth")];
    assert.deepEqual(known.map(([id]) => id), [authId], "one Authenticator, the real one");
    assert.ok(sameEndpoints(known[0][1], p.authPrx));
    for (let i = 0; i < 20; i++) assert.ok(sameEndpoints(await p.main.getAuthenticator(), p.authPrx), "Main's auth");
    const token = await platform.logIn(await p.main.getAuthenticator());
    await p.catalogPrx.addTags(p.mediaId, ["genuine"], token);
    await assert.rejects(p.catalogPrx.addTags(p.mediaId, ["bogus"], "f".repeat(32)), IceFlix.Unauthorized);

    const seen = await outsider.finish();
    assert.equal(seen.isAuthorized ?? 0, 0, `the impostor was asked about tokens: ${JSON.stringify(seen)}`);
    assert.equal(seen.refreshAuthorization ?? 0, 0, "the impostor got credentials");
  } finally {
    await observer.stop();
    await context.events.close();
    await platform.stop();
  }
});

Deno.test("trust 3: forged replicas take no part; replayed or misdirected replication messages are refused", async () => {
  const platform = await Platform.start();
  try {
    const a = await platform.service("auth");
    const streaming = await platform.service("streaming");
    const k = await platform.service("catalog");
    const l = await platform.service("catalog");
    const [kPrx, lPrx] = [k, l].map(({ proxy }) => IceFlix.MediaCatalogPrx.uncheckedCast(proxy));
    const mediaId = await sampleId(kPrx);
    await sampleId(lPrx);
    const replicaOf = (catalog: Ice.ObjectPrx) => {
      const name = platform.communicator.proxyToString(catalog);
      return IceFlixCatalogReplication.CatalogReplicaPrx.uncheckedCast(
        catalog.ice_identity(new Ice.Identity(name, "CatalogReplica")),
      );
    };
    const outsider = await platform.attack("replicas", [
      platform.communicator.proxyToString(replicaOf(k.proxy)),
      platform.communicator.proxyToString(a.proxy.ice_facet("TokenReplica")),
    ]);
    // A replica started now lists the outsider's entries beside the real ones.
    const c = await platform.service("auth");
    await delay(SETTLE_MS);

    // The catalogs hold what the real services made, and keep replicating genuine edits.
    for (const catalog of [kPrx, lPrx]) {
      assert.equal((await catalog.getTilesByName("", false)).length, SAMPLES, "no junk titles");
      assert.equal((await catalog.getTile(mediaId)).info.name, "test_pattern", "not renamed by the outsider");
    }
    const authPrx = IceFlix.AuthenticatorPrx.uncheckedCast(a.proxy);
    const token = await platform.logIn(authPrx);
    await kPrx.renameTile(mediaId, "Renamed for real", token);
    assert.equal((await lPrx.getTile(mediaId)).info.name, "Renamed for real", "k's edit is on l when it returns");
    // Tokens from a are accepted by c: nobody took c's place among a's peers.
    const cPrx = IceFlix.AuthenticatorPrx.uncheckedCast(c.proxy);
    for (let i = 0; i < 5; i++) assert.equal(await cPrx.isAuthorized(await platform.logIn(authPrx)), true);

    // A genuine message captured on the wire: replayed to its recipient, or sent to another replica, it is refused.
    const context = await createServiceContext(
      platform.adapter,
      createLogger("capture", platform.communicator.getProperties()),
    );
    const [kName, lName] = [k.proxy, l.proxy].map((proxy) => platform.communicator.proxyToString(proxy));
    const captured = await context.trust.sign("changed", lName, kName, []);
    await replicaOf(k.proxy).changed(lName, captured);
    await assert.rejects(replicaOf(k.proxy).changed(lName, captured), IceFlixCatalogReplication.Refused, "replay");
    const misdirected = await context.trust.sign("changed", kName, lName, []);
    await assert.rejects(replicaOf(k.proxy).changed(kName, misdirected), IceFlixCatalogReplication.Refused);
    assert.equal((await kPrx.getTile(mediaId)).info.name, "Renamed for real", "k serves on");

    const seen = await outsider.finish();
    assert.equal(seen.changesSince ?? 0, 0, `a catalog pulled from the forged replica: ${JSON.stringify(seen)}`);
    assert.equal(seen["replay accepted"] ?? 0, 0, `a replayed join was accepted: ${JSON.stringify(seen)}`);
    // The outsider's forged `changed`, sent every half second, are refused; k's log says so once for the burst.
    assert.ok((seen["changed refused: Refused"] ?? 0) >= 2, JSON.stringify(seen));
    assert.equal(k.child.stderr.match(/refused changed from .*MediaCatalog/g)?.length, 1, k.child.stderr);
    await context.events.close();
    void streaming;
  } finally {
    await platform.stop();
  }
});

Deno.test("trust 4: getSDP only from the connection that created the stream; through IceStorm or another client, refused", async () => {
  const platform = await Platform.start();
  try {
    const p = await platform.standard();
    const token = await platform.logIn(p.authPrx);
    const controller = (await p.provider.getStream(p.mediaId, token))!;
    const port = await freePort();
    const receiver = await RtpReceiver.onPort(port);
    try {
      const outsider = await platform.attack("reflect", [
        platform.communicator.proxyToString(controller),
        token,
        `${port}`,
      ]);
      await delay(SETTLE_MS);
      const seen = await outsider.finish();
      assert.equal(receiver.frames, 0, "no video reached the port named through IceStorm");
      assert.equal(seen["direct getSDP refused"], 1, `the outsider's own getSDP: ${JSON.stringify(seen)}`);
      // The client that created the stream still plays it.
      assert.match(await controller.getSDP(token, port), /^v=0/);
      await eventually("the creator's video arrives", () => receiver.frames > 0);
    } finally {
      await receiver.stop();
      await controller.stop();
    }
  } finally {
    await platform.stop();
  }
});

Deno.test("trust 5: a spec-only provider is admitted only when listed (IceFlix.Trust.AdmittedEndpoints) or in open mode", async () => {
  const platform = await Platform.start();
  try {
    const port = await freePort();
    const thirdParty = "a".repeat(64);
    const endpoint = `tcp -h 127.0.0.1 -p ${port}`;
    const outsider = await platform.attack("provider", [`${port}`, thirdParty]);
    const closed = await platform.service("catalog");
    const listed = await platform.service("catalog", [`--IceFlix.Trust.AdmittedEndpoints=${endpoint}`]);
    const open = await platform.service("catalog", ["--IceFlix.Trust.Open=1"]);
    await delay(SETTLE_MS);
    const closedPrx = IceFlix.MediaCatalogPrx.uncheckedCast(closed.proxy);
    // The title itself may reach it from the other catalogs (replication); its provider, never.
    await assert.rejects(
      closedPrx.getTile(thirdParty),
      (error) => error instanceof IceFlix.TemporaryUnavailable || error instanceof IceFlix.WrongMediaId,
      "the provider is not admitted by default",
    );
    for (const run of [listed, open]) {
      const catalog = IceFlix.MediaCatalogPrx.uncheckedCast(run.proxy);
      await eventually(
        "the admitted provider's title is served",
        async () =>
          await catalog.getTile(thirdParty).then(
            (tile) => tile.provider!.ice_getEndpoints()[0].toString().includes(`-p ${port}`),
            () => false,
          ),
      );
      assert.match(run.child.stderr, /media service \S+ at .* admitted without proof \(IceFlix\.Trust\./);
    }
    await outsider.finish();
  } finally {
    await platform.stop();
  }
});

Deno.test("trust 6: tokens forged from a genuine one (a longer life, another user, a cut MAC, other spellings), random ones and injected shares are refused by every Authenticator", async () => {
  const platform = await Platform.start();
  try {
    const a = await platform.service("auth");
    const b = await platform.service("auth");
    const token = await platform.logIn(IceFlix.AuthenticatorPrx.uncheckedCast(a.proxy));
    const proxies = [a, b].map(({ proxy }) => platform.communicator.proxyToString(proxy));
    const seen = await (await platform.attack("tokens", [...proxies, token, "alice"])).finish();

    // Per replica: 1 with a longer life, 1 for another user, 2 with a cut MAC, 5 spellings, 20 random.
    const forged = { "extended": 1, "other user": 1, "cut MAC": 2, "other spelling": 5, "random": 20 };
    const expected: Record<string, number> = { "share refused": 2, "genuine accepted": 2 };
    for (const [kind, count] of Object.entries(forged)) expected[`${kind} refused`] = 2 * count;
    assert.deepEqual(seen, expected, "nothing forged accepted, nobody's owner told, no share taken");
    for (const run of [a, b]) {
      assert.ok(await IceFlix.AuthenticatorPrx.uncheckedCast(run.proxy).isAuthorized(token), "the genuine one still");
      assert.ok(!run.child.stderr.includes(token), "tokens are never logged");
    }
  } finally {
    await platform.stop();
  }
});
