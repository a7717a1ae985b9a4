/**
 * The cluster drill (issue 15), run on the client host of a cluster that
 * `./run_cluster` started (IceGrid, three hosts, replicated IceStorm):
 *
 *   ip netns exec NAME-client deno run --allow-all tests/cluster_drill.ts NAME
 *
 * Everything it reaches, it reaches over the cluster's network, through
 * IceGrid's locator: Main as the well-known object `Main`, each server by its
 * adapter id (`MediaCatalog@Catalog-host2`). It makes the four checks of the
 * issue in the order 1, 3, 2, 4 (the host killed in 2 comes back in 4):
 *
 * 1. the real client (`./run_client`, script mode) finds Main through the
 *    locator, logs in, searches, edits and plays a video sent from another host;
 *    the web page on host1 works through Glacier2, from Python and in Chromium;
 * 3. a catalog is SIGKILLed: its node starts it again, it serves again, Main
 *    hands it out again and it has the edit made while it was down (at the
 *    end, an Authenticator that IceGrid stops ends cleanly);
 * 2. host3, the coordinator of IceStorm, loses power (its link down, then every
 *    process SIGKILLed) under a client load through Main: no operation fails beyond one
 *    retry, every acknowledged edit is on the surviving catalogs, revocations
 *    and media announcements still arrive, playback of a stream from host3
 *    resumes from another host after a new `getStream`;
 * 4. host3 comes back: its node starts its servers and its IceStorm replica,
 *    and the three catalogs agree.
 *
 * The last line on stdout is the report as JSON (`{checks, figures}`), which
 * tests/cluster_test.ts asserts; progress goes to stderr.
 *
 * @module
 */
import { Ice, IceStorm } from "ice";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { createObjectAdapter } from "../acceptor.ts";
import { isUnreachable } from "../discovery.ts";
import { EventChannel, TOPICS } from "../events.ts";
import { createLogger, describeError, initializeCommunicator } from "../service.ts";
import { sha256File } from "../streaming.ts";
import { sha256Hex } from "../users.ts";
import { DrillReport } from "../drills.ts";
import { delay, eventually, PYTHON, ROOT, RtpReceiver } from "../harness.ts";
import { currentTime, logIn, openPage, select, state, videoProperty } from "./web_page.ts";

/** The user cluster_test.ts adds to the checkout's users file before the cluster starts. */
const USER = "demo";
const PASSWORD_HASH = await sha256Hex("demo");

/**
 * How long a simulated client waits for any call (ms): more than a call may take while a host is dead but not yet
 * noticed, e.g. a new connection that tries that host first (tcp-timeout, 2 s), then a call whose service meets dead
 * peers (a call timeout, 1 s, for each: the token check, the spread of an edit).
 */
const CLIENT_TIMEOUT = 8000;

/** Simulated clients in the load. */
const CLIENTS = 3;

/** Frames a receiver must decode to count as playing. */
const SOME_FRAMES = 15;

/** The host that dies in check 2: it runs IceStorm's replica 3, the coordinator (the highest id wins elections). */
const DOOMED = "host3";
const HOSTS = ["host1", "host2", "host3"];

/** The address of host K inside the cluster (as run_cluster numbers them). */
function address(host: string): string {
  return `10.250.0.${10 + Number(host.slice(4))}`;
}

/** The host a proxy's endpoints are on. */
function hostOf(proxy: Ice.ObjectPrx): string {
  const text = proxy.ice_getEndpoints().map(String).join(":");
  return HOSTS.find((host) => text.includes(`-h ${address(host)} `)) ?? "elsewhere";
}

/** Hears ServiceAvailability: which kind of service announced which proxy. */
class Announcements extends IceFlix.ServiceAvailability {
  constructor(readonly heard: (kind: string, proxy: Ice.ObjectPrx | null) => void) {
    super();
  }
  catalogService(proxy: Ice.ObjectPrx | null) {
    this.heard("catalog", proxy);
  }
  authenticationService(proxy: Ice.ObjectPrx | null) {
    this.heard("auth", proxy);
  }
  mediaService(proxy: Ice.ObjectPrx | null) {
    this.heard("media", proxy);
  }
}

/** Hears AuthenticationStatus: the tokens revoked. */
class Revocations extends IceFlix.TokenRevocation {
  constructor(readonly heard: (token: string) => void) {
    super();
  }
  revoke(token: string) {
    this.heard(token);
  }
}

/** Hears MediaAnnouncements: the media announced. */
class MediaListener extends IceFlix.StreamAnnounces {
  constructor(readonly heard: (id: string) => void) {
    super();
  }
  newMedia(id: string) {
    this.heard(id);
  }
}

/** The drill: one communicator on the client host, its adapter for IceStorm's callbacks, the events it hears. */
class ClusterDrill {
  readonly report = new DrillReport("cluster");
  readonly logger = createLogger("cluster-drill", Ice.createProperties());
  readonly communicator: Ice.Communicator;
  readonly events: EventChannel;
  /** When each ServiceAvailability event arrived (performance.now()), and what was announced. */
  readonly announcements: { time: number; kind: string; proxy: Ice.ObjectPrx | null }[] = [];
  /** Tokens revoked (topic AuthenticationStatus), with when. */
  readonly revocations = new Map<string, number>();
  /** newMedia events heard: (id, when). */
  readonly newMedia: { id: string; time: number }[] = [];
  #adapter!: Ice.ObjectAdapter;
  #maintainer: ReturnType<typeof setInterval> | undefined;

  constructor(readonly cluster: string, readonly sampleId: string) {
    this.communicator = initializeCommunicator([
      `--Ice.Config=${this.stateDir}/client.config`,
      // Every new connection asks the locator: a restarted server has a new port.
      "--Ice.Default.LocatorCacheTimeout=0",
    ]);
    this.events = new EventChannel(this.communicator, this.logger);
  }

  get stateDir(): string {
    return `${ROOT}data/cluster/${this.cluster}`;
  }

  async start(): Promise<void> {
    this.#adapter = await createObjectAdapter(this.communicator, "ClientAdapter");
    await this.#adapter.activate();
    const announced = (kind: string, proxy: Ice.ObjectPrx | null) =>
      this.announcements.push({ time: performance.now(), kind, proxy });
    const subscribe = (topic: string, servant: Ice.Object) =>
      this.events.subscribe(topic, this.#adapter.addWithUUID(servant));
    await subscribe(TOPICS.serviceAvailability, new Announcements(announced));
    await subscribe(
      TOPICS.authenticationStatus,
      new Revocations((token) => this.revocations.set(token, performance.now())),
    );
    await subscribe(
      TOPICS.mediaAnnouncements,
      new MediaListener((id) => this.newMedia.push({ id, time: performance.now() })),
    );
    this.#maintainer = setInterval(() => this.events.maintain(), 1000);
  }

  async stop(): Promise<void> {
    clearInterval(this.#maintainer);
    await this.events.close();
    await this.communicator.destroy();
  }

  /** A proxy resolved by the locator, on a connection of its own (`connection`), with the clients' timeout. */
  proxy(text: string, connection: string = crypto.randomUUID()): Ice.ObjectPrx {
    return this.communicator.stringToProxy(text).ice_connectionId(connection).ice_invocationTimeout(CLIENT_TIMEOUT);
  }

  catalog(host: string): IceFlix.MediaCatalogPrx {
    return IceFlix.MediaCatalogPrx.uncheckedCast(this.proxy(`MediaCatalog@Catalog-${host}`));
  }

  main(connection?: string): IceFlix.MainPrx {
    return IceFlix.MainPrx.uncheckedCast(this.proxy("Main", connection));
  }

  /** A fresh token from an Authenticator Main hands out. */
  async token(): Promise<string> {
    const auth = (await this.main().getAuthenticator()).ice_invocationTimeout(CLIENT_TIMEOUT);
    return await auth.refreshAuthorization(USER, PASSWORD_HASH);
  }

  /** The endpoints IceGrid has now for adapter `id` (empty when none is registered). */
  async endpointsOf(id: string): Promise<string> {
    try {
      const proxy = await this.communicator.getDefaultLocator().findAdapterById(id);
      return proxy ? proxy.ice_getEndpoints().map(String).join(":") : "";
    } catch {
      return "";
    }
  }
}

/** Runs `icegridadmin -e COMMAND` on the cluster's master registry; returns its output. */
async function admin(command: string): Promise<string> {
  const output = await new Deno.Command("icegridadmin", {
    args: [
      `--Ice.Default.Locator=IceGrid/Locator:tcp -h ${address("host1")} -p 4061`,
      "-u",
      "x",
      "-p",
      "x",
      "-e",
      command,
    ],
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) throw new Error(`icegridadmin ${command}: ${new TextDecoder().decode(output.stderr)}`);
  return text.trim();
}

/** `./run_cluster kill|revive HOST --name CLUSTER`. */
async function runCluster(drill: ClusterDrill, action: "kill" | "revive", host: string): Promise<void> {
  const status = await new Deno.Command(`${ROOT}run_cluster`, { args: [action, host, "--name", drill.cluster] })
    .spawn().status;
  if (!status.success) throw new Error(`run_cluster ${action} ${host} failed`);
}

/** Check 1: the real client on the client host, through the locator. */
async function clientSession(drill: ClusterDrill): Promise<void> {
  const script = [
    "login demo",
    "demo",
    "search test_pattern",
    "1",
    "addtags seen-from-client-host",
    "play",
    "wait 4",
    "status",
    "stop",
    "logout",
  ].join("\n");
  const client = new Deno.Command(`${ROOT}run_client`, {
    args: [`--Ice.Config=${drill.stateDir}/client.config`, "--player", "headless"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = client.stdin.getWriter();
  await writer.write(new TextEncoder().encode(script + "\n"));
  await writer.close();
  const output = await client.output();
  const text = new TextDecoder().decode(output.stdout);
  const frames = Math.max(0, ...[...text.matchAll(/(\d+) frames received/g)].map((match) => Number(match[1])));
  drill.report.figure(`1. the client on the client host received ${frames} frames`);
  drill.report.check(
    "1. a client on its own host finds Main through the locator, logs in, searches, edits and plays",
    output.success && /done: «test_pattern».*seen-from-client-host/.test(text) && frames >= SOME_FRAMES,
    `exit ${output.code}:\n${text}\n${new TextDecoder().decode(output.stderr)}`,
  );
  // Without the locator, each Main still answers at its fixed endpoint.
  const direct = await Promise.all(HOSTS.map(async (host) => {
    const main = IceFlix.MainPrx.uncheckedCast(drill.proxy(`Main:tcp -h ${address(host)} -p 10010`));
    return await main.getCatalogService().then(() => "", (error) => `${host}: ${describeError(error)}`);
  }));
  drill.report.check(
    "1. each Main answers at its direct proxy Main:tcp -h HOST -p 10010",
    direct.every((failure) => failure === ""),
    direct.join("\n"),
  );
}

/**
 * Check 1, the web client: the page's server on host1 names Glacier2 on host1; through it, over WebSocket, a Python
 * client does what the page does (log in, search, a video URL); the video comes over HTTP from a streaming host.
 */
async function webClient(drill: ClusterDrill): Promise<void> {
  const page = `http://${address("host1")}:10082/`;
  const failures: string[] = [];
  try {
    const html = await (await fetch(page)).text();
    if (!html.includes("<html")) failures.push(`the page: ${html.slice(0, 200)}`);
    const config = await (await fetch(`${page}config.json`)).json() as { router: string; main: string };
    const client = await new Deno.Command(PYTHON, {
      args: [`${ROOT}tests/interop/web_client.py`, config.router, config.main, USER, "demo", "test_pattern"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const printed = new TextDecoder().decode(client.stdout).trim();
    if (!client.success) throw new Error(`web_client.py: ${printed}\n${new TextDecoder().decode(client.stderr)}`);
    const { url, ids } = JSON.parse(printed) as { url: string; ids: string[] };
    drill.report.figure(
      `1. through Glacier2 (${config.router}): ${ids.length} title found, video at ${url.split("?")[0]}`,
    );
    if (!config.router.includes(`-h "${address("host1")}"`)) failures.push(`the page's router: ${config.router}`);
    if (!ids.includes(drill.sampleId)) failures.push(`the search found ${ids}`);
    const video = await fetch(url, { headers: { Range: "bytes=0-11" } });
    const head = new TextDecoder().decode(await video.arrayBuffer());
    if (video.status !== 206 || head.slice(4, 8) !== "ftyp") failures.push(`the video: ${video.status} ${head}`);
    if (!HOSTS.some((host) => url.startsWith(`http://${address(host)}:`))) failures.push(`the URL's host: ${url}`);
  } catch (error) {
    failures.push(describeError(error));
  }
  drill.report.check(
    "1. the web client: the page on host1, Glacier2 over WebSocket (log in, search, a video URL), the video over HTTP",
    failures.length === 0,
    failures.join("\n"),
  );
  await webPage(drill, page);
}

/** Check 1, the page itself: Chromium on the client host logs in, finds the sample and plays it from a streaming host. */
async function webPage(drill: ClusterDrill, url: string): Promise<void> {
  let failure = "";
  try {
    const { page, close } = await openPage(url);
    try {
      await logIn(page, USER, "demo");
      await select(page, "test_pattern");
      await page.click("#play");
      await eventually("the page's video plays", async () => await currentTime(page) > 0.3, 20);
      const source = await videoProperty<string>(page, "currentSrc");
      if (!HOSTS.some((host) => source.startsWith(`http://${address(host)}:`))) failure = `the video's URL: ${source}`;
      drill.report.figure(`1. Chromium on the client host plays ${source.split("?")[0]}: ${await state(page)}`);
    } catch (error) {
      throw new Error(
        `${describeError(error)}\nthe page says: ${await state(page)} / ${await page.textContent("#message")}`,
      );
    } finally {
      await close();
    }
  } catch (error) {
    failure = describeError(error);
  }
  drill.report.check(
    "1. the page in Chromium on the client host: log in, search, select, play",
    failure === "",
    failure,
  );
}

/** Check 3: a catalog is SIGKILLed and its node starts it again. */
async function serverRestart(drill: ClusterDrill): Promise<void> {
  const victim = "Catalog-host2";
  const pid = Number(await admin(`server pid ${victim}`));
  const before = await drill.endpointsOf(victim);
  const tag = `while-${victim}-was-down`;
  const killed = performance.now();
  Deno.kill(pid, "SIGKILL");
  let servesAgain = 0;
  const restarted = eventually(`${victim} serves again`, async () => {
    try {
      await drill.catalog("host2").getTilesByTags([tag], true);
      servesAgain = performance.now() - killed;
      return true;
    } catch {
      return false;
    }
  }, 60);
  // An edit made while it is down, through another catalog: the restarted one must catch up with it.
  await eventually("an edit is acknowledged while the catalog is down", async () => {
    try {
      const catalog = (await drill.main().getCatalogService()).ice_invocationTimeout(CLIENT_TIMEOUT);
      await catalog.addTags(drill.sampleId, [tag], await drill.token());
      return true;
    } catch (error) {
      if (isUnreachable(error) || error instanceof IceFlix.TemporaryUnavailable) return false;
      throw error;
    }
  }, 30);
  await restarted;
  const after = await drill.endpointsOf(victim);
  const hasEdit = (await drill.catalog("host2").getTilesByTags([tag], true)).includes(drill.sampleId);
  // Rejoined discovery: Main hands it out again (Main hands catalogs out round-robin).
  let handedOut = false;
  await eventually("Main hands out the restarted catalog", async () => {
    const catalog = await drill.main().getCatalogService();
    handedOut = catalog.ice_getEndpoints().map(String).join(":") === after;
    return handedOut;
  }, 30).catch(() => {});
  drill.report.figure(`3. time until the killed catalog serves again: ${Math.round(servesAgain)} ms`);
  drill.report.check(
    "3. a SIGKILLed server is started again by its node, serves, and rejoins (discovery, catch-up)",
    before !== "" && after !== "" && before !== after && hasEdit && handedOut,
    `endpoints before ${before}, after ${after}; has the edit made meanwhile: ${hasEdit}; handed out: ${handedOut}`,
  );
}

/**
 * Part of check 3, made last: IceGrid stops a server (SIGTERM) and it ends cleanly, exit code 0; started again (its
 * node would anyway: activation "always"), it serves.
 */
async function cleanStop(drill: ClusterDrill): Promise<void> {
  const server = "Auth-host1";
  await admin(`server stop ${server}`);
  const state = await admin(`server state ${server}`);
  // The node logs each end of a server, with its exit code or signal when it is not 0.
  const log = await Deno.readTextFile(`${drill.stateDir}/host1/node.log`);
  const end = log.slice(log.lastIndexOf(`detected termination of server \`${server}'`)).split("\n-- ")[0];
  await admin(`server start ${server}`);
  const serves = await eventually(`${server} serves again`, async () => {
    const auth = IceFlix.AuthenticatorPrx.uncheckedCast(drill.proxy(`Authenticator@${server}`));
    return await auth.refreshAuthorization(USER, PASSWORD_HASH).then(() => true, () => false);
  }, 30).then(() => true, () => false);
  drill.report.check(
    "3. a server IceGrid stops ends cleanly (exit code 0), and serves when started again",
    state.startsWith("inactive") && end.startsWith("detected termination") && !/exit code|signal/.test(end) && serves,
    `state after stop: ${state}; node log: ${end}; serves after start: ${serves}`,
  );
}

/**
 * Whether a failed call is one a client retries through Main: its service is gone, or none is available, or (as
 * ./run_client renews a refused token once) its token expired while the session waited for a dead host.
 */
function retriable(error: unknown): boolean {
  return isUnreachable(error) || error instanceof IceFlix.TemporaryUnavailable || error instanceof IceFlix.Unauthorized;
}

/**
 * A client load through Main: {@linkcode CLIENTS} simulated clients, each in a loop of sessions (ask Main for an
 * Authenticator, log in, ask Main for a catalog, search, tag the sample). An operation that fails because its
 * service is gone is retried once, through Main, on a new connection (an edit with a fresh token); failing again, it
 * counts as failed.
 */
class ClusterLoad {
  readonly completions: number[] = [];
  readonly failures: string[] = [];
  /** Tags acknowledged to a client. */
  readonly tags: string[] = [];
  /** Tokens issued, with when. */
  readonly tokens: { token: string; time: number }[] = [];
  retries = 0;
  #stopping = false;
  #running: Promise<void>[] = [];

  constructor(readonly drill: ClusterDrill) {}

  start(): void {
    this.#running = Array.from({ length: CLIENTS }, (_, index) => this.#loop(index));
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#running);
  }

  /** Resolves once `count` more operations have completed. */
  async progress(count: number): Promise<void> {
    const target = this.completions.length + count;
    await eventually(`${count} more client operations`, () => this.completions.length >= target, 60);
  }

  /** The longest time between `from` and `to` without any operation completing (ms). */
  longestStall(from: number, to: number): number {
    const times = [from, ...this.completions.filter((time) => time > from && time < to), to];
    return Math.max(...times.slice(1).map((time, i) => time - times[i]));
  }

  async #loop(index: number): Promise<void> {
    let connection = 0;
    let sessions = 0;
    while (!this.#stopping) {
      const session = ++sessions;
      let main = this.drill.main(`load-${index}-${connection}`);
      // The retry goes through Main on a new connection: the old one may lead to a host that died.
      const operation = async <T>(
        what: string,
        attempt: (main: IceFlix.MainPrx, retry: boolean) => Promise<T>,
      ): Promise<T> => {
        try {
          return this.#completed(await attempt(main, false));
        } catch (first) {
          if (!retriable(first)) throw this.#failed(what, first);
          this.retries++;
          main = this.drill.main(`load-${index}-${++connection}`);
          try {
            return this.#completed(await attempt(main, true));
          } catch (second) {
            throw this.#failed(what, second);
          }
        }
      };
      const logIn = async (main: IceFlix.MainPrx) => {
        const auth = (await main.getAuthenticator()).ice_invocationTimeout(CLIENT_TIMEOUT);
        const token = await auth.refreshAuthorization(USER, PASSWORD_HASH);
        this.tokens.push({ token, time: performance.now() });
        return token;
      };
      try {
        let token = await operation("log in", logIn);
        const catalog = async (main: IceFlix.MainPrx) =>
          (await main.getCatalogService()).ice_invocationTimeout(CLIENT_TIMEOUT);
        await operation("search", async (main) => (await catalog(main)).getTilesByName("test_pattern", false));
        const tag = `load-${index}-${session}`;
        await operation("tag", async (main, retry) => {
          if (retry) token = await logIn(main);
          await (await catalog(main)).addTags(this.drill.sampleId, [tag], token);
        });
        this.tags.push(tag);
      } catch (error) {
        if (!(error instanceof FailedOperation)) throw error;
      }
      await delay(50);
    }
  }

  #completed<T>(result: T): T {
    this.completions.push(performance.now());
    return result;
  }

  #failed(what: string, error: unknown): FailedOperation {
    const message = `${what}: ${describeError(error)}`;
    this.failures.push(message);
    return new FailedOperation(message);
  }
}

/** An operation that failed after its retry. */
class FailedOperation extends Error {}

/** The acknowledged tags missing from the catalog of `host`. */
async function missingTags(drill: ClusterDrill, host: string, tags: string[]): Promise<string[]> {
  const tile = await drill.catalog(host).getTile(drill.sampleId);
  const present = new Set(tile.info.tags);
  return tags.filter((tag) => !present.has(tag));
}

/** Plays the sample from `provider` to a receiver on this host; returns the receiver once frames arrive. */
async function play(drill: ClusterDrill, provider: IceFlix.StreamProviderPrx, port: number): Promise<RtpReceiver> {
  const token = await drill.token().catch((error) => Promise.reject(new Error(`log in: ${describeError(error)}`)));
  const controller = await provider.ice_invocationTimeout(CLIENT_TIMEOUT).getStream(drill.sampleId, token)
    .catch((error) => Promise.reject(new Error(`getStream: ${describeError(error)}`)));
  const receiver = await RtpReceiver.onPort(port);
  try {
    await controller!.ice_invocationTimeout(CLIENT_TIMEOUT).getSDP(token, port);
  } catch (error) {
    await receiver.stop();
    throw new Error(`getSDP: ${describeError(error)}`);
  }
  await eventually("frames arrive", () => receiver.frames >= SOME_FRAMES, 20).catch(() => {});
  return receiver;
}

/** Check 2: host3 dies under load. */
async function hostDeath(drill: ClusterDrill): Promise<ClusterLoad> {
  // A stream from the doomed host, playing when it dies.
  const doomedProvider = drill.announcements.find((a) => a.kind === "media" && a.proxy && hostOf(a.proxy) === DOOMED)
    ?.proxy;
  if (!doomedProvider) throw new Error(`no streaming service of ${DOOMED} was announced`);
  const first = await play(drill, IceFlix.StreamProviderPrx.uncheckedCast(doomedProvider), 40000);
  const playedBefore = first.frames;

  const load = new ClusterLoad(drill);
  load.start();
  await load.progress(30);
  const killed = performance.now();
  await runCluster(drill, "kill", DOOMED);
  drill.logger.info(`${DOOMED} killed`);
  await delay(2000);
  const framesAtDeath = first.frames;
  await delay(2000);
  const streamEnded = first.frames === framesAtDeath;
  await first.stop();

  // Playback resumes: the catalog names a live provider, on another host, and a new getStream plays from it.
  let resumed: RtpReceiver | undefined;
  let resumedHost = "";
  await eventually("the catalog names a live provider", async () => {
    try {
      const catalog = (await drill.main().getCatalogService().catch((error) =>
        Promise.reject(new Error(`getCatalogService: ${describeError(error)}`))
      )).ice_invocationTimeout(CLIENT_TIMEOUT);
      const tile = await catalog.getTile(drill.sampleId)
        .catch((error) =>
          Promise.reject(new Error(`getTile: ${describeError(error)}`))
        );
      resumedHost = hostOf(tile.provider!);
      if (resumedHost === DOOMED) return false;
      resumed = await play(drill, tile.provider!, 40002);
      return true;
    } catch (error) {
      drill.logger.info(`no playback yet: ${describeError(error)}`);
      return false;
    }
  }, 40);
  const playedAfter = resumed?.frames ?? 0;
  await resumed?.stop();

  await load.progress(60);
  const afterLoad = performance.now();
  // Revocations: a token issued after the death is revoked when it expires (token-lifetime, 10 s in the test).
  const revokedAfterDeath = () =>
    load.tokens.some(({ token, time }) => time > killed + 3000 && drill.revocations.has(token));
  await eventually("a token issued after the death is revoked", revokedAfterDeath, 60).catch(() => {});
  const revoked = revokedAfterDeath();
  const lastRevocation = Math.max(...drill.revocations.values()) - killed;
  // Media announcements: a surviving provider announces its media again, and the announcements arrive.
  // (Asked again every few seconds: while IceStorm elects, the provider's own publishing may outlast our call.)
  const asked = performance.now();
  const survivor = drill.announcements.find((a) => a.kind === "media" && a.proxy && hostOf(a.proxy) !== DOOMED);
  const provider = IceFlix.StreamProviderPrx.uncheckedCast(survivor!.proxy!).ice_invocationTimeout(CLIENT_TIMEOUT);
  const announced = await eventually("newMedia arrives", async () => {
    if (drill.newMedia.some(({ time }) => time > asked)) return true;
    await provider.reannounceMedia().catch((error) => drill.logger.info(`reannounceMedia: ${describeError(error)}`));
    return await delay(1000).then(() => drill.newMedia.some(({ time }) => time > asked));
  }, 40).then(() => true, () => false);
  await load.stop();

  let missing: string[] = [];
  await eventually("every acknowledged tag is on the surviving catalogs", async () => {
    missing = (await Promise.all(["host1", "host2"].map((host) => missingTags(drill, host, load.tags)))).flat();
    return missing.length === 0;
  }, 20).catch(() => {});

  // IceStorm's failover: the longest silence on ServiceAvailability, where a dozen services announce every second.
  const heard = [killed, ...drill.announcements.map(({ time }) => time).filter((time) => time > killed), afterLoad];
  const failover = Math.max(...heard.filter((time) => time <= afterLoad).slice(1).map((time, i) => time - heard[i]));
  drill.report.figure(
    `2. client load: ${load.completions.length} operations, ${load.retries} retried once through Main, ` +
      `${load.failures.length} failed; longest client stall when ${DOOMED} died: ` +
      `${Math.round(load.longestStall(killed, afterLoad))} ms`,
  );
  drill.report.figure(`2. IceStorm failover (longest silence of ServiceAvailability): ${Math.round(failover)} ms`);
  drill.report.figure(
    `2. playback: ${playedBefore} frames from ${DOOMED} before, ${playedAfter} from ${resumedHost} after`,
  );
  drill.report.check(
    "2. no client operation failed beyond one retry through Main",
    load.failures.length === 0,
    load.failures.join("\n"),
  );
  drill.report.check(
    "2. every acknowledged edit is on the surviving catalogs",
    load.tags.length > 0 && missing.length === 0,
    `${load.tags.length} tags acknowledged; missing: ${missing.join(", ")}`,
  );
  drill.report.check(
    "2. revocations keep flowing (a token issued after the death is revoked)",
    revoked,
    `${drill.revocations.size} revocations heard, the last ${Math.round(lastRevocation)} ms after the death; ` +
      `${load.tokens.filter(({ time }) => time > killed + 3000).length} tokens issued since`,
  );
  drill.report.check("2. media announcements keep flowing", announced);
  drill.report.check(
    "2. the stream from the dead host ends, and a new getStream plays from a provider on another host",
    playedBefore >= SOME_FRAMES && streamEnded && playedAfter >= SOME_FRAMES && resumedHost !== DOOMED,
    `before ${playedBefore}, stream ended ${streamEnded}, after ${playedAfter} from ${resumedHost}`,
  );
  return load;
}

/** Check 4: the dead host comes back. */
async function hostReturn(drill: ClusterDrill, load: ClusterLoad): Promise<void> {
  const revived = performance.now();
  await runCluster(drill, "revive", DOOMED);
  const servers = ["IceFlix.IceStorm3", "Main-host3", "Auth-host3", "Catalog-host3", "Streaming-host3"];
  const states = new Map<string, string>();
  await eventually(`the servers of ${DOOMED} are active`, async () => {
    for (const server of servers) states.set(server, await admin(`server state ${server}`).catch(String));
    return [...states.values()].every((state) => state.startsWith("active"));
  }, 90).catch(() => {});
  const back = performance.now() - revived;
  // Its IceStorm replica answers for the topics the group holds.
  const replica = IceStorm.TopicManagerPrx.uncheckedCast(
    drill.proxy("IceFlix.IceStorm/TopicManager@IceFlix.IceStorm3.TopicManager"),
  );
  let topics: string[] = [];
  await eventually("the IceStorm replica of the host that came back holds the topics", async () => {
    topics = await replica.retrieveAll().then((all) => [...all.keys()], (error) => [describeError(error)]);
    return topics.includes(TOPICS.serviceAvailability);
  }, 30).catch(() => {});
  // The catalogs converge: the same tags on the sample everywhere, every acknowledged one among them.
  let views: string[] = [];
  await eventually("the three catalogs agree", async () => {
    try {
      views = await Promise.all(
        HOSTS.map(async (host) =>
          JSON.stringify((await drill.catalog(host).getTile(drill.sampleId)).info.tags.toSorted())
        ),
      );
      return new Set(views).size === 1 && (await missingTags(drill, DOOMED, load.tags)).length === 0;
    } catch {
      return false;
    }
  }, 60).catch(() => {});
  const handedOut = await eventually("Main hands out the catalog of the host that came back", async () => {
    const catalog = await drill.main().getCatalogService();
    return hostOf(catalog) === DOOMED;
  }, 30).then(() => true, () => false);
  drill.report.figure(`4. ${DOOMED} back: its servers active after ${Math.round(back)} ms`);
  drill.report.check(
    `4. ${DOOMED} comes back: its node, IceStorm replica and servers rejoin, and the catalogs converge`,
    [...states.values()].every((state) => state.startsWith("active")) &&
      topics.includes(TOPICS.serviceAvailability) && new Set(views).size === 1 && views.length === 3 && handedOut,
    `states ${JSON.stringify([...states])}; replica topics ${topics}; views ${views.length} ` +
      `(${new Set(views).size} different); Main hands it out: ${handedOut}`,
  );
}

if (import.meta.main) {
  const [cluster] = Deno.args;
  const drill = new ClusterDrill(cluster, await sha256File(`${ROOT}media/test_pattern.mp4`));
  try {
    await drill.start();
    await clientSession(drill);
    await webClient(drill);
    await serverRestart(drill);
    const load = await hostDeath(drill);
    await hostReturn(drill, load);
    await cleanStop(drill);
  } catch (error) {
    drill.report.check("the drill ran to its end", false, describeError(error) + "\n" + (error as Error).stack);
  } finally {
    await drill.stop().catch(() => {});
  }
  console.log(JSON.stringify({ checks: drill.report.checks, figures: drill.report.figures }));
  Deno.exit(0);
}
