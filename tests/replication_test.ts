/**
 * Authenticator replicas that agree (issue 7), as real `./run_service auth`
 * processes with a real IceStorm: shared tokens, a late replica catching up,
 * one revoke event per token whoever is alive, and StreamControllers that do
 * not believe a forged revoke.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Ice } from "ice";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
// @ts-types="../slice/streams.d.ts"
import { IceFlixStreams } from "../slice/streams.js";
import { TOKEN_OWNER_FACET } from "../authorization.ts";
import { EventChannel, TOPICS } from "../events.ts";
import { createLogger, createServiceContext } from "../service.ts";
import { Sealer } from "../auth_replication.ts";
import { bindingOf } from "../trust.ts";
// @ts-types="../slice/auth_replication.d.ts"
import { IceFlixAuthReplication } from "../slice/auth_replication.js";
import { sha256Hex } from "../users.ts";
import {
  Child,
  connectionsTo,
  delay,
  eventually,
  IceStormServer,
  ROOT,
  runPython,
  scratchDir,
  startIceFlixService,
  testCommunicator,
  writeUsersFile,
} from "../harness.ts";

const INTERVAL = "--IceFlix.Discovery.AnnounceInterval=1";
const PASSWORD = "alice's secret";

/**
 * How long to keep listening once every expected revoke has arrived, so that a second one for the same token would
 * be seen: far longer than a ping between two replicas on loopback, which is all that could delay it.
 */
const SETTLE_MS = 1500;

/** Counts the `revoke` events of each token on topic AuthenticationStatus. */
class RevocationCounter extends IceFlix.TokenRevocation {
  readonly counts = new Map<string, number>();

  revoke(token: string): void {
    this.counts.set(token, (this.counts.get(token) ?? 0) + 1);
  }

  /** Whether every one of `tokens` was revoked at least once. */
  revokedAll(tokens: string[]): boolean {
    return tokens.every((token) => this.counts.has(token));
  }
}

/** Counts `requestAuthentication` events on a controller's sync topic. */
class SyncListener extends IceFlix.StreamerSync {
  requests = 0;

  requestAuthentication(): void {
    this.requests++;
  }
}

/** A running Authenticator replica. */
interface Replica {
  child: Child;
  proxy: IceFlix.AuthenticatorPrx;
  /** Its discovery id, as it logs it at start. */
  id: string;
}

/**
 * One test's platform: IceStorm, a users file with user alice, an Ice
 * communicator of the test's own subscribed to AuthenticationStatus, and the
 * replicas and other services the test starts, all stopped at the end.
 */
class Platform {
  readonly revocations = new RevocationCounter();
  readonly children: Child[] = [];

  private constructor(
    readonly icestorm: IceStormServer,
    readonly dir: string,
    readonly usersFile: string,
    readonly communicator: Ice.Communicator,
    readonly adapter: Ice.ObjectAdapter,
    readonly events: EventChannel,
  ) {}

  static async start(): Promise<Platform> {
    const icestorm = await IceStormServer.start();
    const dir = await scratchDir("test-replication-");
    const usersFile = await writeUsersFile(dir, { alice: PASSWORD });
    const { communicator, adapter } = await testCommunicator([icestorm.option]);
    const events = new EventChannel(communicator, createLogger("test", communicator.getProperties()));
    const platform = new Platform(icestorm, dir, usersFile, communicator, adapter, events);
    await events.subscribe(TOPICS.authenticationStatus, adapter.addWithUUID(platform.revocations));
    return platform;
  }

  /** Starts an Authenticator replica whose tokens live `lifetime` seconds. */
  async startAuth(lifetime: number, properties: string[] = []): Promise<Replica> {
    const { child, proxy } = await startIceFlixService("auth", [
      "--AuthAdapter.Endpoints=tcp -h 127.0.0.1",
      this.icestorm.option,
      INTERVAL,
      `--IceFlix.Auth.UsersFile=${this.usersFile}`,
      `--IceFlix.Auth.TokenLifetime=${lifetime}`,
      "--IceFlix.LogLevel=debug",
      ...properties,
    ]);
    this.children.push(child);
    const id = /replica ([0-9a-f-]{36}): tokens live/.exec(child.stderr)?.[1];
    assert.ok(id, `the replica logs its id:\n${child.stderr}`);
    return { child, proxy: IceFlix.AuthenticatorPrx.uncheckedCast(this.communicator.stringToProxy(proxy)), id };
  }

  /** `count` new tokens for alice from `replica`. */
  async logIn(replica: Replica, count = 1): Promise<string[]> {
    const tokens = [];
    for (let i = 0; i < count; i++) {
      tokens.push(await replica.proxy.refreshAuthorization("alice", await sha256Hex(PASSWORD)));
    }
    return tokens;
  }

  /** Asserts that no process of the test ever logged one of `tokens`. */
  assertNeverLogged(tokens: string[]): void {
    for (const child of this.children) {
      for (const token of tokens) assert.ok(!child.stderr.includes(token), "tokens are never logged");
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.children.map((child) => child.stop()));
    await this.events.close();
    await this.communicator.destroy();
    await this.icestorm.stop();
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** Asserts what each replica answers to isAuthorized for each of `tokens`. */
async function assertAuthorized(replicas: Replica[], tokens: string[], expected: boolean): Promise<void> {
  for (const replica of replicas) {
    for (const token of tokens) {
      assert.equal(await replica.proxy.isAuthorized(token), expected, `replica ${replica.id}`);
    }
  }
}

Deno.test("replicas: a token from any is accepted by every one at once, even one that never heard of it; a late one catches up; another key shares nothing", async () => {
  const platform = await Platform.start();
  try {
    const a = await platform.startAuth(30);
    const b = await platform.startAuth(30);
    // Each one's tokens are accepted by the other as soon as refreshAuthorization returns: no waiting.
    const tokens: string[] = [];
    for (let round = 0; round < 3; round++) {
      const [fromA] = await platform.logIn(a);
      assert.equal(await b.proxy.isAuthorized(fromA), true, "b accepts a's token at once");
      const [fromB] = await platform.logIn(b);
      assert.equal(await a.proxy.isAuthorized(fromB), true, "a accepts b's token at once");
      tokens.push(fromA, fromB);
    }
    await assertAuthorized([a, b], ["0".repeat(32), ""], false);

    // Started after those tokens were issued: it knows them from its first answer on, and whose they are (the
    // streaming services count streams per user).
    const c = await platform.startAuth(30);
    await assertAuthorized([c], tokens, true);
    const owners = IceFlixStreams.TokenOwnerPrx.uncheckedCast(c.proxy, TOKEN_OWNER_FACET);
    for (const token of tokens) assert.equal(await owners.userOf(token), "alice");
    await assert.rejects(owners.userOf("0".repeat(32)), IceFlix.Unauthorized);
    const [fromC] = await platform.logIn(c);
    await assertAuthorized([a, b], [fromC], true);

    // A replica with another key (another installation, or an impostor) can neither read nor inject tokens.
    const keyFile = `${platform.dir}/other.key`;
    await Deno.writeTextFile(keyFile, "another installation's key");
    const stranger = await platform.startAuth(30, [`--IceFlix.Trust.SecretFile=${keyFile}`]);
    await assertAuthorized([stranger], [...tokens, fromC], false);
    const [fromStranger] = await platform.logIn(stranger);
    await assertAuthorized([a, b, c], [fromStranger], false);
    await assertAuthorized([a, b, c], [...tokens, fromC], true);

    // The same installation on another IceStorm never meets these replicas, and no share ever reaches it. Tokens
    // prove themselves: each side accepts the other's at once, and knows whose they are.
    const elsewhere = await IceStormServer.start();
    try {
      const twin = await platform.startAuth(30, [elsewhere.option]);
      await assertAuthorized([twin], [...tokens, fromC], true);
      const twinOwners = IceFlixStreams.TokenOwnerPrx.uncheckedCast(twin.proxy, TOKEN_OWNER_FACET);
      assert.equal(await twinOwners.userOf(fromC), "alice");
      const [fromTwin] = await platform.logIn(twin);
      await assertAuthorized([a, b, c], [fromTwin], true);
      assert.equal(await owners.userOf(fromTwin), "alice");
      await assertAuthorized([twin], [fromStranger], false);
      assert.doesNotMatch(twin.child.stderr, /holds \d+ more token/, "no share reached it");
      await twin.child.stop();
    } finally {
      await elsewhere.stop();
    }
    platform.assertNeverLogged([...tokens, fromC, fromStranger]);
  } finally {
    await platform.stop();
  }
});

Deno.test("replicas: logins made at once, at one replica or at all, are each accepted by every other as soon as it returns", async () => {
  const platform = await Platform.start();
  try {
    const replicas = [await platform.startAuth(30), await platform.startAuth(30), await platform.startAuth(30)];
    const passwordHash = await sha256Hex(PASSWORD);
    // Each login's check follows its own return at once, while the other logins are still under way: the tokens
    // issued meanwhile leave together (auth_replication.ts), and none may be left behind or late.
    const logInAndCheck = async (issuer: Replica) => {
      const token = await issuer.proxy.refreshAuthorization("alice", passwordHash);
      const others = replicas.filter((replica) => replica !== issuer);
      return { token, accepted: await Promise.all(others.map((replica) => replica.proxy.isAuthorized(token))) };
    };
    const atOne = await Promise.all(Array.from({ length: 40 }, () => logInAndCheck(replicas[0])));
    const atAll = await Promise.all(Array.from({ length: 60 }, (_, i) => logInAndCheck(replicas[i % 3])));
    const results = [...atOne, ...atAll];
    assert.equal(new Set(results.map(({ token }) => token)).size, 100, "every login has a token of its own");
    assert.deepEqual(results.filter(({ accepted }) => accepted.includes(false)), [], "every token accepted at once");
    await assertAuthorized(replicas, results.map(({ token }) => token), true);
    platform.assertNeverLogged(results.map(({ token }) => token));
  } finally {
    await platform.stop();
  }
});

Deno.test("replicas: one revoke per token, whoever issued it; a SIGKILLed issuer's tokens are revoked by the live replica with the smallest id", async () => {
  const lifetime = 2;
  const platform = await Platform.start();
  try {
    const replicas = [
      await platform.startAuth(lifetime),
      await platform.startAuth(lifetime),
      await platform.startAuth(lifetime),
    ];
    const { revocations } = platform;

    // All alive: every replica holds every token, and each expiry is published once.
    const first = (await Promise.all(replicas.map((replica) => platform.logIn(replica, 2)))).flat();
    await assertAuthorized(replicas, first, true);
    await eventually("every token is revoked", () => revocations.revokedAll(first), 4 * lifetime);
    await delay(SETTLE_MS);
    assert.deepEqual(first.map((token) => revocations.counts.get(token)), first.map(() => 1), "one revoke per token");
    await assertAuthorized(replicas, first, false);

    // The issuer dies before its tokens expire: one of the two others revokes them, once. Tokens reach the peers
    // after the login returns (auth_replication.ts, #share): the issuer dies once both hold them.
    const [issuer, ...survivors] = replicas;
    const orphans = await platform.logIn(issuer, 3);
    const [survivorsOwn] = await platform.logIn(survivors[0]);
    /** How many tokens of the issuer `replica` has been given (it logs each share it takes). */
    const held = (replica: Replica) =>
      [...replica.child.stderr.matchAll(new RegExp(`holds (\\d+) more token\\(s\\) of replica ${issuer.id}`, "g"))]
        .reduce((sum, [, count]) => sum + Number(count), 0);
    // Its 2 first tokens, and the orphans.
    await eventually(
      "the survivors hold the issuer's tokens",
      () => survivors.every((s) => held(s) >= 2 + orphans.length),
    );
    await issuer.child.stop("SIGKILL");
    const second = [...orphans, survivorsOwn];
    await eventually("the dead issuer's tokens are revoked", () => revocations.revokedAll(second), 4 * lifetime);
    await delay(SETTLE_MS);
    assert.deepEqual(second.map((token) => revocations.counts.get(token)), second.map(() => 1), "one revoke per token");
    await assertAuthorized(survivors, second, false);

    // The rule decides which one: the survivor with the smaller id, and only it (in as many batches as expiries).
    const [smallest, other] = survivors.toSorted((x, y) => x.id < y.id ? -1 : 1);
    /** How many of the dead issuer's tokens `replica` took over (it logs each batch it revokes). */
    const takenOver = (replica: Replica) =>
      [...replica.child.stderr.matchAll(
        new RegExp(`replica ${issuer.id} is gone: .* smallest id, revokes its (\\d+) token`, "g"),
      )]
        .reduce((sum, [, count]) => sum + Number(count), 0);
    assert.equal(takenOver(smallest), orphans.length, smallest.child.stderr);
    assert.equal(takenOver(other), 0);
    platform.assertNeverLogged([...first, ...second]);
  } finally {
    await platform.stop();
  }
});

Deno.test("replicas: a peer that hangs is dropped, and every connection a replica had to it is closed", async () => {
  const platform = await Platform.start();
  const timeout = "--IceFlix.Discovery.CallTimeout=1";
  try {
    const a = await platform.startAuth(30, [timeout]);
    const b = await platform.startAuth(30, [timeout]);
    const bPort = Number(/ -p (\d+)/.exec(platform.communicator.proxyToString(b.proxy))![1]);
    const pid = a.child.process.pid;
    // a knows b twice over: b joined it (a's replication calls b back), and a's discovery found b.
    await eventually("a has found b", () => a.child.stderr.includes(`auth service ${b.id} found`));
    const [token] = await platform.logIn(a);
    assert.equal(await b.proxy.isAuthorized(token), true);
    assert.ok(connectionsTo(pid, bPort) > 0, "a is connected to b");

    b.child.process.kill("SIGSTOP");
    try {
      // a's next share to b times out (1 s), and a's discovery stops hearing it: both drop it, each closing its
      // connection then (Ice would keep one to a silent peer until idle for a minute).
      await platform.logIn(a);
      await eventually("a has closed every connection to the hung b", () => connectionsTo(pid, bPort) === 0);
      assert.equal(await a.proxy.isAuthorized(token), true, "a serves on");
    } finally {
      b.child.process.kill("SIGCONT");
    }
  } finally {
    await platform.stop();
  }
});

Deno.test("replicas: a new replica joins one with 200,000 live tokens: the table follows the welcome in parts, each within the call timeout", async () => {
  const platform = await Platform.start();
  const context = await createServiceContext(
    platform.adapter,
    createLogger("test", platform.communicator.getProperties()),
  );
  // With a call timeout of 1 s, the whole table in the join's one call timed out here (3 s with ~44,000 tokens when
  // the machine was loaded): the newcomer took the live replica for dead and took it off the registry.
  const timeout = "--IceFlix.Discovery.CallTimeout=1";
  try {
    const a = await platform.startAuth(600, [timeout]);
    // The test holds the installation secret: as a replica would, it shares with a the tokens of an issuer gone.
    const sealer = await Sealer.create(context.trust, a.proxy);
    const replica = IceFlixAuthReplication.TokenReplicaPrx.uncheckedCast(a.proxy, "TokenReplica");
    const expiresAt = Date.now() + 600_000;
    const tokens = Array.from(
      { length: 200_000 },
      (_, i) => ({ token: `t${i}`, user: "alice", issuer: "gone", expiresAt }),
    );
    for (let i = 0; i < tokens.length; i += 2000) {
      const grants = tokens.slice(i, i + 2000);
      await replica.share(sealer.seal([bindingOf(a.proxy)], { kind: "grants", from: "test", grants }));
    }
    assert.equal(await a.proxy.isAuthorized(tokens.at(-1)!.token), true, "a holds them");

    const b = await platform.startAuth(600, [timeout]);
    await eventually("b has caught up", () => /caught up: /.test(b.child.stderr), 60);
    const [, from] = /caught up: \d+ live token\(s\) from (\d+) replica/.exec(b.child.stderr)!;
    assert.equal(from, "1", `b joined a:\n${b.child.stderr}`);
    assert.doesNotMatch(b.child.stderr, /does not answer/, "b never took a for dead");
    // The parts come in the table's order: the last token is in the last one.
    await eventually("b holds a's tokens", async () => await b.proxy.isAuthorized(tokens.at(-1)!.token), 60);
    assert.equal(await b.proxy.isAuthorized(tokens[0].token), true);
  } finally {
    await context.events.close();
    await platform.stop();
  }
});

Deno.test("controller: a forged revoke (published from Python) is ignored, a genuine expiry is not; with no Authenticator a revoke stands", async () => {
  const lifetime = 5;
  const platform = await Platform.start();
  const media = await Deno.makeTempDir({ prefix: "iceflix-media-" });
  try {
    await Deno.copyFile(`${ROOT}media/test_pattern.mp4`, `${media}/test_pattern.mp4`);
    const id = createHash("sha256").update(await Deno.readFile(`${media}/test_pattern.mp4`)).digest("hex");
    const [auth, streaming] = await Promise.all([
      platform.startAuth(lifetime),
      startIceFlixService("streaming", [
        platform.icestorm.option,
        INTERVAL,
        `--IceFlix.Streaming.MediaDir=${media}`,
        "--IceFlix.Controller.GracePeriod=10",
      ]),
    ]);
    platform.children.push(streaming.child);
    await eventually(
      "the streaming service knows the Authenticator",
      () => /auth service \S+ found/.test(streaming.child.stderr),
    );
    const provider = IceFlix.StreamProviderPrx.uncheckedCast(platform.communicator.stringToProxy(streaming.proxy));
    const [token] = await platform.logIn(auth);
    const controller = (await provider.getStream(id, token))!;
    const sync = new SyncListener();
    await platform.events.subscribe(await controller.getSyncTopic(), platform.adapter.addWithUUID(sync));
    const forge = (token: string) =>
      runPython("publish_revocation.py", [platform.icestorm.proxy, TOPICS.authenticationStatus, token]);

    // Anyone can publish a revoke: the Authenticator still accepts the token, so the stream goes on.
    await forge(token);
    await eventually(
      "the controller has weighed the forged revoke",
      () => streaming.child.stderr.includes("ignoring a revocation of its token that no Authenticator confirms"),
    );
    assert.equal(sync.requests, 0);

    // The genuine one, when the token expires: the client is asked for a new token, and renews it.
    await eventually("the expiry is revoked", () => platform.revocations.revokedAll([token]), 3 * lifetime);
    await eventually("the controller asks for a new token", () => sync.requests >= 1);
    const [renewed] = await platform.logIn(auth);
    await controller.refreshAuthentication(renewed);
    const asked = sync.requests;

    // No Authenticator left to vouch for the token: a revoke cannot be checked, and stands.
    await auth.child.stop("SIGKILL");
    await forge(renewed);
    await eventually("the controller asks again", () => sync.requests > asked);
    assert.match(streaming.child.stderr, /no Authenticator to confirm a revocation .*; it stands/);
    platform.assertNeverLogged([token, renewed]);
  } finally {
    await platform.stop();
    await Deno.remove(media, { recursive: true });
  }
});
