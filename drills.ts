/**
 * The failure drills (issue 7) that `./run_drills` runs and
 * tests/drills_test.ts asserts: each returns its checks and its figures. What
 * each drill does and checks is in the README, "Failure drills".
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
import { isUnreachable } from "./discovery.ts";
import { EventChannel, TOPICS } from "./events.ts";
import { createLogger, describeError } from "./service.ts";
import { sha256File } from "./streaming.ts";
import { sha256Hex } from "./users.ts";
import {
  AnnouncementCounter,
  Child,
  delay,
  eventually,
  freePort,
  IceStormServer,
  processExists,
  ROOT,
  RtpReceiver,
  scratchDir,
  startIceFlixService,
  testCommunicator,
  writeUsersFile,
} from "./harness.ts";

/** The drills' user. */
const USER = "drill";
const PASSWORD_HASH = await sha256Hex("drill password");

/** The platform's `IceFlix.Discovery.AnnounceInterval` and `IceFlix.Discovery.CallTimeout` (seconds). */
const ANNOUNCE_INTERVAL = 1;
const CALL_TIMEOUT = 1;

/**
 * How long a simulated client waits for any call (ms): more than a call may take with one replica of each kind
 * hung, e.g. an edit whose token check meets the hung Authenticator and whose spread meets the hung catalog, each
 * for one call timeout.
 */
const CLIENT_TIMEOUT = 5 * CALL_TIMEOUT * 1000;

/** The video the platform starts with (H.264 in MP4: sent as it is, light on the CPU). */
const SAMPLE = "test_pattern.mp4";

/** Frames a receiver must decode to count as playing. */
const SOME_FRAMES = 15;

/** Titles in the catalog database from the start, without a provider: the ones the clients edit. */
const TITLES = await Promise.all(
  Array.from({ length: 6 }, async (_, i) => ({ id: await sha256Hex(`drill title ${i}`), name: `drill title ${i}` })),
);

/** The simulated clients of a load: each edits a title of its own. */
const CLIENTS = 3;

/** Operations the load completes between two steps of a drill, so that every step is made under load. */
const STEP_OPERATIONS = 60;

/** The services `./run_iceflix` runs. */
export type ServiceName = "main" | "auth" | "catalog" | "streaming";

/** The kind each service announces itself as on `ServiceAvailability` (Main announces nothing). */
const KINDS = { auth: "auth", catalog: "catalog", streaming: "media" } as const;

/** One running instance of a service. */
export interface Instance {
  service: ServiceName;
  /** Its name as `./run_iceflix` gives it (`catalog`, `catalog-2`, ...): its log is `<data>/logs/<name>.log`. */
  name: string;
  pid: number;
  /** Its proxy, as it printed it when ready. */
  proxy: string;
  /** Its discovery id, for the services that announce themselves. */
  id?: string;
  /** An instance the drill (re)started itself with `./run_service`: its log is the child's stderr. */
  child?: Child;
}

/**
 * A platform run by `./run_iceflix --replicas 2` (two Mains on free ports),
 * with an IceStorm of its own that a drill may restart, in a scratch folder:
 * users, catalog databases, media, logs and pid files.
 */
export class DrillPlatform {
  /** The instances running now (a killed one leaves the list; a restarted one comes back with its new pid). */
  readonly instances: Instance[];
  /** The id of the video sample, which both streaming services hold. */
  readonly sampleId: string;

  private constructor(
    readonly dir: string,
    readonly icestorm: IceStormServer,
    readonly runIceflix: Child,
    readonly communicator: Ice.Communicator,
    readonly adapter: Ice.ObjectAdapter,
    /** The properties every service gets. */
    readonly properties: string[],
    /** Each Main's endpoints, the first Main's first. */
    readonly mainEndpoints: string[],
    /** Seconds a token lives (`IceFlix.Auth.TokenLifetime`). */
    readonly tokenLifetime: number,
    instances: Instance[],
    sampleId: string,
  ) {
    this.instances = instances;
    this.sampleId = sampleId;
  }

  /** Starts the platform and waits until every service knows every other one. */
  static async start(options: { tokenLifetime?: number } = {}): Promise<DrillPlatform> {
    const dir = await scratchDir("drill-");
    await writeUsersFile(dir, { [USER]: "drill password" });
    await Deno.mkdir(`${dir}/media`);
    await Deno.copyFile(`${ROOT}media/${SAMPLE}`, `${dir}/media/${SAMPLE}`);
    const titles = Object.fromEntries(TITLES.map(({ id, name }) => [id, { name, tags: [] }]));
    await Deno.writeTextFile(`${dir}/catalog.json`, JSON.stringify(titles, null, 1));
    const icestorm = await IceStormServer.start();
    const mainEndpoints = [`tcp -h 127.0.0.1 -p ${await freePort()}`, `tcp -h 127.0.0.1 -p ${await freePort()}`];
    const tokenLifetime = options.tokenLifetime ?? 30;
    const properties = [
      icestorm.option,
      `--IceFlix.Auth.UsersFile=${dir}/users.json`,
      `--IceFlix.Auth.TokenLifetime=${tokenLifetime}`,
      `--IceFlix.Catalog.DatabaseFile=${dir}/catalog.json`,
      `--IceFlix.Streaming.MediaDir=${dir}/media`,
      `--IceFlix.Discovery.AnnounceInterval=${ANNOUNCE_INTERVAL}`,
      `--IceFlix.Discovery.CallTimeout=${CALL_TIMEOUT}`,
      // The simulated clients add a tag at every session to a title of their own: more than a title may have.
      "--IceFlix.Catalog.MaxTagsPerTitle=100000",
    ];
    // IceStorm is the drill's, not run_iceflix's: a drill kills and restarts it.
    const runIceflix = new Child(`${ROOT}run_iceflix`, [
      ...["--replicas", "2", "--data", dir, "--no-icestorm", "--no-web"],
      ...mainEndpoints.flatMap((endpoints) => ["--main-endpoints", endpoints]),
      ...properties,
    ]);
    const { communicator, adapter } = await testCommunicator([icestorm.option]);
    let platform: DrillPlatform | undefined;
    try {
      // One line per Main once every instance is ready; the instances are on stderr, with their pids.
      await runIceflix.line(mainEndpoints.length, 120);
      const instances = [...runIceflix.stderr.matchAll(/^run_iceflix: (\S+) ready \(pid (\d+)\): (.*)$/gm)]
        .map(([, name, pid, proxy]) => ({
          service: name.replace(/-\d+$/, "") as ServiceName,
          name,
          pid: Number(pid),
          proxy,
        }));
      platform = new DrillPlatform(
        dir,
        icestorm,
        runIceflix,
        communicator,
        adapter,
        properties,
        mainEndpoints,
        tokenLifetime,
        instances,
        await sha256File(`${dir}/media/${SAMPLE}`),
      );
      await platform.#settle();
      return platform;
    } catch (error) {
      if (platform) await platform.stop();
      else {
        await runIceflix.stop();
        await communicator.destroy();
        await icestorm.stop();
        await Deno.remove(dir, { recursive: true });
      }
      throw error;
    }
  }

  /**
   * A Main proxy that lists every Main's endpoints, in order from Main
   * `first`: Ice connects to the first that answers, and moves on to the next
   * when that one is gone. `connection` gives the client a connection of its own.
   */
  mainProxy(first = 0, connection = ""): IceFlix.MainPrx {
    const endpoints = [...this.mainEndpoints.slice(first), ...this.mainEndpoints.slice(0, first)];
    const proxy = this.communicator.stringToProxy(`Main:${endpoints.join(":")}`)
      .ice_endpointSelection(Ice.EndpointSelectionType.Ordered)
      .ice_connectionId(connection)
      .ice_invocationTimeout(CLIENT_TIMEOUT);
    return IceFlix.MainPrx.uncheckedCast(proxy);
  }

  /** The running instances of `service`. */
  live(service: ServiceName): Instance[] {
    return this.instances.filter((instance) => instance.service === service);
  }

  /** Whether `proxy` is `instance`'s object (same identity, same endpoints). */
  is(instance: Instance, proxy: Ice.ObjectPrx): boolean {
    const endpoints = (prx: Ice.ObjectPrx) => prx.ice_getEndpoints().map((endpoint) => endpoint.toString()).join(":");
    const own = this.communicator.stringToProxy(instance.proxy);
    return Ice.identityToString(own.ice_getIdentity()) === Ice.identityToString(proxy.ice_getIdentity()) &&
      endpoints(own) === endpoints(proxy);
  }

  /** The running instance of `service` whose object `proxy` is. */
  instanceOf(service: ServiceName, proxy: Ice.ObjectPrx): Instance {
    const found = this.live(service).find((instance) => this.is(instance, proxy));
    if (!found) throw new Error(`no running ${service} is ${this.communicator.proxyToString(proxy)}`);
    return found;
  }

  /** A proxy to `instance`'s object, with the clients' timeout. */
  proxyOf(instance: Instance): Ice.ObjectPrx {
    return this.communicator.stringToProxy(instance.proxy).ice_invocationTimeout(CLIENT_TIMEOUT);
  }

  /** Everything `instance` has logged. */
  async log(instance: Instance): Promise<string> {
    return instance.child?.stderr ?? await Deno.readTextFile(`${this.dir}/logs/${instance.name}.log`);
  }

  /** How much each instance has logged so far: {@linkcode logSince} reads what comes after. */
  async logMarks(): Promise<Map<Instance, number>> {
    return new Map(await Promise.all(this.instances.map(async (i) => [i, (await this.log(i)).length] as const)));
  }

  /** What `instance` has logged since `marks` were taken. */
  async logSince(instance: Instance, marks: Map<Instance, number>): Promise<string> {
    return (await this.log(instance)).slice(marks.get(instance) ?? 0);
  }

  /** Sends `signal` to `instance`; one killed leaves {@linkcode instances}. */
  signal(instance: Instance, signal: Deno.Signal): void {
    Deno.kill(instance.pid, signal);
    if (signal === "SIGKILL") this.instances.splice(this.instances.indexOf(instance), 1);
  }

  /**
   * Starts `instance` again by hand, as an operator would, with the
   * arguments run_iceflix gave it (the same database file for a catalog),
   * and waits until it is ready.
   */
  async restart(instance: Instance): Promise<Instance> {
    const restarted = await this.startInstance(instance.service, instance.name);
    this.instances.push(restarted);
    return restarted;
  }

  /**
   * Starts an instance of `service` with `./run_service` and the platform's
   * properties; `name` says which one of run_iceflix's it stands for (its
   * database or endpoints), and `extra` properties come last.
   */
  async startInstance(service: ServiceName, name: string, extra: string[] = []): Promise<Instance> {
    const number = Number(/-(\d+)$/.exec(name)?.[1] ?? 1);
    const own = service === "main"
      ? [`--MainAdapter.Endpoints=${this.mainEndpoints[number - 1]}`]
      : service === "catalog" && number > 1
      ? [`--IceFlix.Catalog.DatabaseFile=${this.dir}/catalog-${number}.json`]
      : [];
    const { child, proxy } = await startIceFlixService(service, [...this.properties, ...own, ...extra]);
    return { service, name, pid: child.process.pid, proxy, id: discoveryId(child.stderr), child };
  }

  /**
   * Waits until every announcing instance has been found by every other
   * instance, and each catalog holds the titles and has met its replica.
   */
  async #settle(): Promise<void> {
    for (const instance of this.instances) {
      if (instance.service !== "main") instance.id = discoveryId(await this.log(instance));
    }
    await this.waitUntilAllFound(this.instances);
    const catalogs = this.live("catalog");
    await eventually("each catalog has met the other replica", async () => {
      for (const catalog of catalogs) {
        const log = await this.log(catalog);
        if (!catalogs.every((other) => other === catalog || log.includes(`replica ${other.proxy} found`))) return false;
      }
      return true;
    }, 30);
    await eventually("each catalog lists every title and serves the sample", async () => {
      for (const catalog of catalogs) {
        const proxy = IceFlix.MediaCatalogPrx.uncheckedCast(this.proxyOf(catalog));
        if ((await proxy.getTilesByName("drill title", false)).length !== TITLES.length) return false;
        if (!await proxy.getTile(this.sampleId).then(() => true, () => false)) return false;
      }
      return true;
    }, 30);
  }

  /** Waits until every running instance has found each of `announcers` (those that announce themselves). */
  async waitUntilAllFound(announcers: Instance[], marks?: Map<Instance, number>): Promise<void> {
    await eventually("every service has found every other one", async () => {
      for (const instance of this.instances) {
        const log = marks ? await this.logSince(instance, marks) : await this.log(instance);
        for (const other of announcers) {
          if (other === instance || !other.id) continue;
          if (!log.includes(`${KINDS[other.service as keyof typeof KINDS]} service ${other.id} found`)) return false;
        }
      }
      return true;
    }, 30);
  }

  /** Stops everything: run_iceflix and what it runs, the instances started by hand, IceStorm; removes the folder. */
  async stop(): Promise<void> {
    // A hung instance would not stop.
    for (const instance of this.instances) {
      try {
        Deno.kill(instance.pid, "SIGCONT");
      } catch {
        // Gone already.
      }
    }
    await Promise.all([
      this.runIceflix.stop(),
      ...this.instances.flatMap((instance) => instance.child ? [instance.child.stop()] : []),
    ]);
    await this.communicator.destroy();
    await this.icestorm.stop();
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** The discovery id a service logged when it started (the last one, for a log that spans restarts). */
function discoveryId(log: string): string {
  const ids = [...log.matchAll(/announcing itself as \w+ service ([0-9a-f-]{36})/g)];
  if (ids.length === 0) throw new Error(`no discovery id in the log:\n${log}`);
  return ids[ids.length - 1][1];
}

/** An operation that failed even after its one retry through Main: ends the client's session. */
class FailedOperation extends Error {}

/** One simulated client of a load: it edits a title of its own, and remembers what was acknowledged. */
interface SimulatedClient {
  index: number;
  main: IceFlix.MainPrx;
  /** The services Main handed out in this session. */
  services: Partial<Services>;
  title: string;
  /** Its title's name now, as far as it knows (the last rename acknowledged). */
  name: string;
  /** The tags it added and got acknowledged. */
  tags: string[];
  sessions: number;
}

/** Whether a failed call is one a client retries through Main: the service is gone or hung, or none is available. */
function retriable(error: unknown): boolean {
  return isUnreachable(error) || error instanceof IceFlix.TemporaryUnavailable;
}

/**
 * A client load through Main: {@linkcode CLIENTS} simulated clients, each
 * in a loop of sessions as a user of the client program would have them (ask
 * Main for an Authenticator, log in, ask Main for a catalog, search, tag and
 * rename its own title, read the sample's tile). As the real client does,
 * an operation whose service is gone or hung is retried once, on a service
 * Main hands out anew; an operation that fails again counts as failed.
 * Bounded in operations and in time.
 */
export class ClientLoad {
  /** Operations completed, on the first try or on the retry. */
  operations = 0;
  /** Operations that needed their retry, by what failed the first time. */
  readonly retries = new Map<string, number>();
  /** Edits sent again with a new token because theirs had expired meanwhile. */
  renewed = 0;
  /** Operations that failed even after one retry through Main: what and why. */
  readonly failures: string[] = [];
  /** When each operation completed (performance.now()). */
  readonly completions: number[] = [];
  /** The longest an operation took, its retry included (ms). */
  longestOperation = 0;
  readonly clients: SimulatedClient[];
  readonly #deadline: number;
  readonly #maxOperations: number;
  readonly #sampleId: string;
  #stopping = false;
  #running: Promise<void>[] = [];

  constructor(platform: DrillPlatform, limits: { seconds: number; operations: number } = {
    seconds: 120,
    operations: 50_000,
  }) {
    this.#deadline = Date.now() + limits.seconds * 1000;
    this.#maxOperations = limits.operations;
    this.#sampleId = platform.sampleId;
    this.clients = Array.from({ length: CLIENTS }, (_, index) => ({
      index,
      // Clients start at different Mains, each on a connection of its own.
      main: platform.mainProxy(index % platform.mainEndpoints.length, `client-${index}`),
      title: TITLES[index].id,
      name: TITLES[index].name,
      services: {},
      tags: [],
      sessions: 0,
    }));
  }

  /** Starts every client's loop. */
  start(): this {
    this.#running = this.clients.map((client) => this.#loop(client));
    return this;
  }

  /** Stops the clients after their current session. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#running);
  }

  /** How many operations needed their retry. */
  get retried(): number {
    return [...this.retries.values()].reduce((sum, count) => sum + count, 0);
  }

  /** Resolves once `count` more operations have completed (the load goes on); rejects if it has stopped. */
  async progress(count = STEP_OPERATIONS): Promise<void> {
    const target = this.operations + count;
    await eventually(`${count} more client operations complete`, () => {
      if (this.#stopping || this.#overLimits()) throw new Error("the client load has stopped");
      return this.operations >= target;
    }, 60);
  }

  /** Operations per second completed between `from` and `to` (performance.now() times). */
  rate(from: number, to: number): number {
    return this.completions.filter((time) => time >= from && time < to).length / ((to - from) / 1000);
  }

  /** The longest time between `from` and `to` without any operation completing (ms). */
  longestStall(from: number, to: number): number {
    const times = [from, ...this.completions.filter((time) => time > from && time < to), to];
    return Math.max(...times.slice(1).map((time, i) => time - times[i]));
  }

  /** What the load did, in one line. */
  summary(): string {
    const causes = [...this.retries].map(([cause, count]) => `${count} × ${cause}`).join("; ");
    return `${this.operations} operations, ${this.retried} retried once through Main${causes ? ` (${causes})` : ""}, ` +
      `${this.renewed} sent again with a renewed token, ${this.failures.length} failed; ` +
      `longest operation ${Math.round(this.longestOperation)} ms`;
  }

  #overLimits(): boolean {
    return this.operations >= this.#maxOperations || Date.now() >= this.#deadline;
  }

  async #loop(client: SimulatedClient): Promise<void> {
    while (!this.#stopping && !this.#overLimits()) {
      try {
        await this.#session(client);
      } catch (error) {
        if (!(error instanceof FailedOperation)) throw error;
      }
      await delay(20);
    }
  }

  /** One session of a client: every call goes through Main or to a service Main handed out. */
  async #session(client: SimulatedClient): Promise<void> {
    const session = ++client.sessions;
    await this.#operation("getAuthenticator", async () => client.services.auth = await fromMain(client.main, "auth"));
    let token = await this.#use(
      client,
      "auth",
      "refreshAuthorization",
      (auth) => auth.refreshAuthorization(USER, PASSWORD_HASH),
    );
    // An edit refused because the token expired meanwhile (short-lived tokens on a slow machine) is sent once more
    // with a new token, as the client renews its session when refused.
    const edit = (what: string, call: (catalog: IceFlix.MediaCatalogPrx, token: string) => PromiseLike<void>) =>
      this.#use(client, "catalog", what, async (catalog) => {
        try {
          return await call(catalog, token);
        } catch (error) {
          if (!(error instanceof IceFlix.Unauthorized)) throw error;
          token = await (await fromMain(client.main, "auth")).refreshAuthorization(USER, PASSWORD_HASH);
          this.renewed++;
          return await call(catalog, token);
        }
      });
    await this.#operation(
      "getCatalogService",
      async () => client.services.catalog = await fromMain(client.main, "catalog"),
    );
    await this.#use(client, "catalog", "getTilesByName", (catalog) => catalog.getTilesByName(client.name, true));
    const tag = `c${client.index}-s${session}`;
    await edit("addTags", (catalog, token) => catalog.addTags(client.title, [tag], token));
    client.tags.push(tag);
    const name = `drill client ${client.index} session ${session}`;
    await edit("renameTile", (catalog, token) => catalog.renameTile(client.title, name, token));
    client.name = name;
    // About to play the sample: its tile names a live provider.
    await this.#use(client, "catalog", "getTile", (catalog) => catalog.getTile(this.#sampleId));
  }

  /** An operation on the client's `kind` service; its retry goes to a service Main hands out anew. */
  #use<K extends keyof Services, T>(
    client: SimulatedClient,
    kind: K,
    what: string,
    call: (service: Services[K]) => PromiseLike<T>,
  ): Promise<T> {
    return this.#operation(what, async (retry) => {
      if (retry || !client.services[kind]) client.services[kind] = await fromMain(client.main, kind);
      return await call(client.services[kind]!);
    });
  }

  /** Runs `attempt`, and once more (as a retry) if it failed retriably; counts and times the operation. */
  async #operation<T>(what: string, attempt: (retry: boolean) => Promise<T>): Promise<T> {
    const started = performance.now();
    let result: T;
    try {
      result = await attempt(false);
    } catch (first) {
      if (!retriable(first)) throw this.#failed(what, first);
      const cause = `${what}: ${describeError(first)}`;
      this.retries.set(cause, (this.retries.get(cause) ?? 0) + 1);
      try {
        result = await attempt(true);
      } catch (second) {
        throw this.#failed(what, second);
      }
    }
    const now = performance.now();
    this.operations++;
    this.completions.push(now);
    this.longestOperation = Math.max(this.longestOperation, now - started);
    return result;
  }

  #failed(what: string, error: unknown): FailedOperation {
    const message = `${what}: ${describeError(error)}`;
    this.failures.push(message);
    return new FailedOperation(message);
  }
}

/** The services a client gets from Main. */
interface Services {
  auth: IceFlix.AuthenticatorPrx;
  catalog: IceFlix.MediaCatalogPrx;
}

/** The `kind` service Main hands out, with the clients' timeout. */
async function fromMain<K extends keyof Services>(main: IceFlix.MainPrx, kind: K): Promise<Services[K]> {
  const service = kind === "auth" ? await main.getAuthenticator() : await main.getCatalogService();
  if (!service) throw new Error(`Main handed out no ${kind} service`);
  return service.ice_invocationTimeout(CLIENT_TIMEOUT) as Services[K];
}

/** A title's edits acknowledged to a client. */
interface EditedTitle {
  id: string;
  /**
   * The names the title may have now: the last one acknowledged, and the one in flight when the catalog died, if
   * any (it may have reached the disk before the reply was lost).
   */
  names: string[];
  /** The tags acknowledged. */
  tags: string[];
}

/** The acknowledged edits of `titles` missing from each of `catalogs` (every running one), one line each. */
async function missingEdits(
  platform: DrillPlatform,
  titles: EditedTitle[],
  catalogs = platform.live("catalog"),
): Promise<string[]> {
  const missing: string[] = [];
  for (const instance of catalogs) {
    const catalog = IceFlix.MediaCatalogPrx.uncheckedCast(platform.proxyOf(instance));
    for (const title of titles) {
      const named = await Promise.all(title.names.map((name) => catalog.getTilesByName(name, true)));
      if (!named.some((ids) => ids.includes(title.id))) {
        missing.push(`${instance.name}: title ${title.id.slice(0, 8)} is not named ${title.names.join(" or ")}`);
      }
      for (const tag of title.tags) {
        if (!(await catalog.getTilesByTags([tag], false)).includes(title.id)) {
          missing.push(`${instance.name}: title ${title.id.slice(0, 8)} lacks tag ${tag}`);
        }
      }
    }
  }
  return missing;
}

/** The edits a load got acknowledged, per title. */
function loadEdits(load: ClientLoad): EditedTitle[] {
  return load.clients.map((client) => ({ id: client.title, names: [client.name], tags: client.tags }));
}

/** One thing a drill checks. */
export interface Check {
  what: string;
  ok: boolean;
  /** What was found, when it is not what was expected. */
  detail: string;
}

/** What a drill found: its checks, and figures for the operator. */
export class DrillReport {
  readonly checks: Check[] = [];
  readonly figures: string[] = [];

  constructor(readonly title: string) {}

  check(what: string, ok: boolean, detail = ""): void {
    this.checks.push({ what, ok, detail });
  }

  figure(line: string): void {
    this.figures.push(line);
  }

  /** The checks every drill makes about its client load: none failed, nothing acknowledged was lost. */
  async checkLoad(platform: DrillPlatform, load: ClientLoad, titles: EditedTitle[] = []): Promise<void> {
    this.figure(`client load: ${load.summary()}`);
    this.check(
      "no client operation failed beyond one retry through Main",
      load.failures.length === 0,
      load.failures.join("\n"),
    );
    const edits = [...loadEdits(load), ...titles];
    const acknowledged = edits.reduce((sum, title) => sum + title.tags.length, 0);
    // Edits reach a replica that missed them (hung, restarted) at its next pull: within an announce interval or two.
    let missing: string[] = [];
    await eventually("every acknowledged edit is on every catalog", async () => {
      missing = await missingEdits(platform, edits);
      return missing.length === 0;
    }, 15).catch(() => {});
    this.figure(
      `acknowledged edits: ${acknowledged} tags and ${edits.length} renamed titles, ` +
        `checked on ${platform.live("catalog").length} catalog(s): ${missing.length} missing`,
    );
    this.check("every acknowledged edit is on every running catalog", missing.length === 0, missing.join("\n"));
  }
}

/** ms since `start` (performance.now()), rounded. */
function since(start: number): number {
  return Math.round(performance.now() - start);
}

/**
 * SIGKILL one replica of each kind in turn, under load: Authenticator,
 * catalog, streaming service (the one playing a title to a client, which
 * then asks the catalog again and plays it from the other provider), Main.
 */
export async function killDrill(platform: DrillPlatform): Promise<DrillReport> {
  const report = new DrillReport("SIGKILL one replica of each kind in turn, under load");
  const load = new ClientLoad(platform).start();
  try {
    await load.progress();
    for (const service of ["auth", "catalog", "streaming", "main"] as const) {
      if (service === "streaming") {
        await playbackFailover(platform, report);
      } else {
        const victim = platform.live(service)[0];
        const killed = performance.now();
        platform.signal(victim, "SIGKILL");
        await load.progress();
        report.figure(
          `${victim.name} killed: the load went on, longest stall ${
            Math.round(load.longestStall(killed, performance.now()))
          } ms`,
        );
      }
      await load.progress();
    }
  } finally {
    await load.stop();
  }
  await report.checkLoad(platform, load);
  return report;
}

/**
 * A client plays the sample from the provider the catalog names; that
 * provider is killed; its stream ends with it; the client asks the catalog
 * again, which names the other provider, and plays from it, on the same port.
 */
async function playbackFailover(platform: DrillPlatform, report: DrillReport): Promise<void> {
  const main = platform.mainProxy();
  const token = await (await fromMain(main, "auth")).refreshAuthorization(USER, PASSWORD_HASH);
  const catalog = await fromMain(main, "catalog");
  const port = await freePort();
  const receiver = await RtpReceiver.onPort(port);
  try {
    const first = await catalog.getTile(platform.sampleId);
    const provider = platform.instanceOf("streaming", first.provider!);
    const firstStream = await first.provider!.ice_invocationTimeout(CLIENT_TIMEOUT).getStream(platform.sampleId, token);
    await firstStream!.getSDP(token, port);
    await eventually("the client receives video from the first provider", () => receiver.frames >= SOME_FRAMES, 20);
    const senders = [...(await platform.log(provider)).matchAll(/gst-launch-1\.0 pid (\d+)\)/g)];
    const sender = Number(senders[senders.length - 1][1]);

    const killed = performance.now();
    platform.signal(provider, "SIGKILL");
    // The stream dies with its provider: nothing keeps sending to the client that nobody can stop.
    const senderGone = await eventually("the killed provider's sender ends", () => !processExists(sender), 5)
      .then(() => true, () => false);
    report.check(
      `the stream of the killed ${provider.name} ended with it`,
      senderGone,
      `gst-launch-1.0 ${sender} runs`,
    );
    const before = receiver.frames;

    // The client asks again; the catalog knows the title is on the other provider too.
    const second = await catalog.getTile(platform.sampleId);
    const survivor = platform.instanceOf("streaming", second.provider!);
    report.check("the catalog names the surviving provider", survivor !== provider, survivor.name);
    const secondStream = await second.provider!.ice_invocationTimeout(CLIENT_TIMEOUT).getStream(
      platform.sampleId,
      token,
    );
    await secondStream!.getSDP(token, port);
    const resumed = await eventually(
      "the client receives video again",
      () => receiver.frames >= before + SOME_FRAMES,
      20,
    ).then(() => true, () => false);
    report.check(`playback resumes from ${survivor.name} after a new getStream`, resumed, `${receiver.frames} frames`);
    report.figure(
      `${provider.name} killed while streaming: video again from ${survivor.name} ${since(killed)} ms later ` +
        `(${receiver.frames - before} frames since)`,
    );
    await secondStream!.stop();
  } finally {
    await receiver.stop();
  }
}

/**
 * SIGSTOP a replica of each kind in turn (hung, not dead), under load: calls
 * to it time out after the call timeout, every other service drops it, the
 * load goes on; after SIGCONT it is found again and serves again.
 */
export async function hangDrill(platform: DrillPlatform): Promise<DrillReport> {
  const report = new DrillReport("SIGSTOP a replica of each kind in turn (hung, not dead), under load");
  const load = new ClientLoad(platform).start();
  try {
    await load.progress();
    for (const service of ["auth", "catalog", "streaming"] as const) {
      const victim = platform.live(service)[1];
      const kind = KINDS[service];
      const others = platform.instances.filter((instance) => instance !== victim);
      const marks = await platform.logMarks();
      const stopped = performance.now();
      platform.signal(victim, "SIGSTOP");

      // Hung indeed: a call to it gets no answer, and times out.
      const call = platform.proxyOf(victim).ice_invocationTimeout(CALL_TIMEOUT * 1000).ice_ping();
      const timedOut = await call.then(() => false, (error) => error instanceof Ice.InvocationTimeoutException);
      report.check(`a call to the hung ${victim.name} times out`, timedOut);

      // Every other service drops it (discovery's pings time out); the clients' operations go on meanwhile.
      await load.progress();
      const pruned = await eventually(`every service drops the hung ${victim.name}`, async () => {
        for (const other of others) {
          if (!(await platform.logSince(other, marks)).includes(`${kind} service ${victim.id} gone`)) return false;
        }
        return true;
      }, 20).then(() => true, () => false);
      report.check(`every other service drops the hung ${victim.name}`, pruned);
      const prunedAfter = since(stopped);
      await load.progress();
      report.figure(
        `${victim.name} hung: dropped by all ${others.length} others within ${prunedAfter} ms; longest stall ` +
          `${Math.round(load.longestStall(stopped, performance.now()))} ms`,
      );

      const resumedMarks = await platform.logMarks();
      const resumed = performance.now();
      platform.signal(victim, "SIGCONT");
      await platform.waitUntilAllFound([victim], resumedMarks).then(
        () => report.check(`${victim.name} is found again by every service after SIGCONT`, true),
        (error) => report.check(`${victim.name} is found again by every service after SIGCONT`, false, `${error}`),
      );
      report.check(`${victim.name} serves again`, await servesAgain(platform, victim), "");
      report.figure(`${victim.name} resumed: found again by every service and serving within ${since(resumed)} ms`);
      await load.progress();
    }
  } finally {
    await load.stop();
  }
  await report.checkLoad(platform, load);
  return report;
}

/**
 * Whether a replica that was hung is back in service: an Authenticator
 * accepts a token another one issues now; a catalog has the edits made
 * meanwhile (checked with the load's); a provider is handed out again by
 * every catalog for the sample.
 */
async function servesAgain(platform: DrillPlatform, instance: Instance): Promise<boolean> {
  const proxy = platform.proxyOf(instance);
  const check = async () => {
    switch (instance.service) {
      case "auth": {
        const other = platform.live("auth").find((auth) => auth !== instance)!;
        const token = await IceFlix.AuthenticatorPrx.uncheckedCast(platform.proxyOf(other))
          .refreshAuthorization(USER, PASSWORD_HASH);
        return await IceFlix.AuthenticatorPrx.uncheckedCast(proxy).isAuthorized(token);
      }
      case "catalog":
        return (await IceFlix.MediaCatalogPrx.uncheckedCast(proxy).getTilesByName("drill", false)).length > 0;
      default:
        for (const catalog of platform.live("catalog")) {
          const tile = await IceFlix.MediaCatalogPrx.uncheckedCast(platform.proxyOf(catalog))
            .getTile(platform.sampleId);
          if (platform.instanceOf("streaming", tile.provider!) !== instance) return false;
        }
        return true;
    }
  };
  return await eventually(`${instance.name} serves again`, () => check().catch(() => false), 15)
    .then(() => true, () => false);
}

/**
 * Restart IceStorm twice under load, with no service restarted: killed
 * (SIGKILL) and started again on the same port, first with its database,
 * then with its database wiped (every topic and subscription must be made
 * again by the services). Each time: every service announces itself again
 * (a fresh subscriber hears them all), Main discovers a new Authenticator,
 * expiries are published (revoke events for fresh tokens of each
 * Authenticator), and new videos are announced and listed by every catalog.
 */
export async function icestormDrill(platform: DrillPlatform): Promise<DrillReport> {
  const report = new DrillReport("restart IceStorm (kill -9, run_icestorm on the same port), under load");
  const pids = platform.instances.map((instance) => instance.pid);
  const load = new ClientLoad(platform).start();
  const logger = createLogger("drill", platform.communicator.getProperties());
  try {
    await load.progress();
    for (const [round, forget] of [[1, false], [2, true]] as const) {
      const label = forget ? "with its database wiped" : "with its database";
      const events = new EventChannel(platform.communicator, logger);
      const restarted = performance.now();
      await platform.icestorm.restart({ forget });
      const back = performance.now();
      report.figure(`IceStorm restarted ${label} (${since(restarted)} ms down)`);

      // Announcements: a subscriber that arrives now hears every service.
      const counter = new AnnouncementCounter();
      await events.subscribe(TOPICS.serviceAvailability, platform.adapter.addWithUUID(counter));
      const announcers = platform.instances.filter((instance) => instance.id);
      const announced = await eventually(
        "every service announces itself again",
        () => announcers.every((instance) => counter.heard.has(instance.id!)),
        20,
      ).then(() => true, () => false);
      report.check(
        `every service announces itself again (IceStorm ${label})`,
        announced,
        `heard ${counter.heard.size}`,
      );
      report.figure(`  every service heard again ${since(back)} ms after IceStorm was back`);

      // Discovery: Main, subscribed again by itself, finds a newcomer.
      const newcomer = await platform.startInstance("auth", `auth-new-${round}`);
      const ready = performance.now();
      try {
        const main = platform.mainProxy();
        const found = await eventually("Main hands out the new Authenticator", async () => {
          const handedOut = await Promise.all([0, 1, 2].map(() => main.getAuthenticator()));
          return handedOut.some((auth) => platform.is(newcomer, auth!));
        }, 20).then(() => true, () => false);
        report.check(`Main discovers a new Authenticator (IceStorm ${label})`, found);
        report.figure(`  a new Authenticator handed out by Main ${since(ready)} ms after it was ready`);
      } finally {
        await newcomer.child!.stop();
      }

      // Revocation: each Authenticator publishes the expiry of a token issued now.
      const revoked = new Set<string>();
      await events.subscribe(
        TOPICS.authenticationStatus,
        platform.adapter.addWithUUID(new RevocationListener(revoked)),
      );
      const issued = performance.now();
      const tokens = await Promise.all(
        platform.live("auth").map((auth) =>
          IceFlix.AuthenticatorPrx.uncheckedCast(platform.proxyOf(auth)).refreshAuthorization(USER, PASSWORD_HASH)
        ),
      );
      const expired = await eventually("every fresh token is revoked", () => tokens.every((t) => revoked.has(t)), 30)
        .then(() => true, () => false);
      report.check(`each Authenticator publishes its tokens' expiry (IceStorm ${label})`, expired);
      report.figure(
        `  revoke events received ${since(issued) - platform.tokenLifetime * 1000} ms after the tokens expired`,
      );

      // Media announcements: a new video, rescanned by every provider (./reload_media), reaches every catalog.
      const name = `late_video_${round}`;
      const video = await Deno.readFile(`${ROOT}media/${SAMPLE}`);
      // Other bytes, another id: an MP4 plays with bytes after its last box.
      await Deno.writeFile(`${platform.dir}/media/${name}.mp4`, new Uint8Array([...video, round]));
      const rescan = performance.now();
      const reload = await new Deno.Command(`${ROOT}reload_media`, {
        args: [`--pid-file=${platform.dir}/pids/streaming.pid`],
        stdout: "null",
        stderr: "null",
      }).output();
      report.check("./reload_media signals the streaming services", reload.success);
      const listed = await eventually(`every catalog lists ${name}`, async () => {
        for (const catalog of platform.live("catalog")) {
          const ids = await IceFlix.MediaCatalogPrx.uncheckedCast(platform.proxyOf(catalog)).getTilesByName(name, true);
          if (ids.length !== 1) return false;
        }
        return true;
      }, 20).then(() => true, () => false);
      report.check(`a new video is announced to every catalog (IceStorm ${label})`, listed);
      report.figure(`  the new video listed by every catalog ${since(rescan)} ms after ./reload_media`);
      await events.close();
      await load.progress();
    }
  } finally {
    await load.stop();
  }
  const running = pids.every(processExists) && platform.instances.every((instance) => pids.includes(instance.pid));
  report.check("no service was restarted", running);
  await report.checkLoad(platform, load);
  return report;
}

/** Records the tokens revoked on `AuthenticationStatus`. */
class RevocationListener extends IceFlix.TokenRevocation {
  constructor(readonly revoked: Set<string>) {
    super();
  }

  revoke(token: string): void {
    this.revoked.add(token);
  }
}

/**
 * SIGKILL a catalog in the middle of a stream of edits sent to it directly,
 * under load through Main: its database file is intact (it starts again on
 * it alone, with nothing to catch up from) and holds every acknowledged edit;
 * started again among the platform, it catches up and agrees with the other.
 */
export async function crashDrill(platform: DrillPlatform): Promise<DrillReport> {
  const report = new DrillReport("SIGKILL a catalog during a stream of edits, under load");
  const load = new ClientLoad(platform).start();
  const victim = platform.live("catalog")[1];
  // run_iceflix gives catalog k >= 2 the database <data>/catalog-<k>.json.
  const database = `${platform.dir}/${victim.name}.json`;
  const writers: EditedTitle[] = [];
  try {
    await load.progress();
    const catalog = IceFlix.MediaCatalogPrx.uncheckedCast(platform.proxyOf(victim));
    const login = async () =>
      await (await fromMain(platform.mainProxy(), "auth")).refreshAuthorization(USER, PASSWORD_HASH);
    let token = await login();
    // Two writers, each on a title of its own, send edit after edit to the victim until it dies.
    let sent = 0;
    let acknowledged = 0;
    const writerFailures: string[] = [];
    const write = async (title: EditedTitle, writer: number) => {
      for (let n = 1;; n++) {
        const tag = `w${writer}-e${n}`;
        const name = `drill writer ${writer} edit ${n}`;
        try {
          sent++;
          await catalog.addTags(title.id, [tag], token);
          title.tags.push(tag);
          acknowledged++;
          sent++;
          title.names.push(name);
          await catalog.renameTile(title.id, name, token);
          title.names = [name];
          acknowledged++;
        } catch (error) {
          if (isUnreachable(error)) return;
          // On a loaded machine the edits may outlast the token: log in again, as a client renews its session.
          if (error instanceof IceFlix.Unauthorized) {
            token = await login();
            continue;
          }
          throw error;
        }
      }
    };
    const streams = [CLIENTS, CLIENTS + 1].map((index, writer) => {
      const title = { id: TITLES[index].id, names: [TITLES[index].name], tags: [] };
      writers.push(title);
      // Handled at once: a writer's failure is a failed check of the drill, not an error nothing awaits.
      return write(title, writer).catch((error) =>
        void writerFailures.push(`writer ${writer}: ${describeError(error)}`)
      );
    });
    // Past a compaction (after 1,000 journal lines the database file is rewritten), and then 100 edits more: the
    // kill finds both the file and the journal in use.
    await eventually(
      `${victim.name} rewrites its database file`,
      () => Deno.stat(database).then(() => true, () => false),
      60,
    );
    const compacted = acknowledged;
    await eventually("the writers get 100 more edits acknowledged", () => acknowledged >= compacted + 100, 60);
    platform.signal(victim, "SIGKILL");
    await Promise.all(streams);
    report.figure(`${victim.name} killed after ${acknowledged} acknowledged edits (${sent} sent)`);
    report.check(
      "the writers' edits were taken until the kill",
      writerFailures.length === 0,
      writerFailures.join("\n"),
    );

    // The files as the kill left them: the database (if written yet) and its journal read as the service reads them.
    const stored = await storedState(database);
    report.check(`${victim.name}'s database and journal are intact after the kill`, stored.intact, stored.detail);
    report.figure(`${victim.name}'s files after the kill: ${stored.detail}`);

    // Alone (IceStorm unreachable: no replica to catch up from), on its own file: every acknowledged edit is there.
    const nowhere = `--IceStorm.TopicManager.Proxy=IceStorm/TopicManager:tcp -h 127.0.0.1 -p ${await freePort()}`;
    const alone = await platform.startInstance("catalog", victim.name, [nowhere]);
    try {
      const missing = await missingEdits(platform, writers, [alone]);
      const tags = writers.reduce((sum, title) => sum + title.tags.length, 0);
      report.figure(
        `${victim.name} restarted alone on its files: ${missing.length} of ${tags} acknowledged tags missing`,
      );
      report.check(
        "restarted alone on its file, the catalog has every acknowledged edit",
        missing.length === 0,
        missing.join("\n"),
      );
    } finally {
      await alone.child!.stop();
    }

    // Back among the platform: it catches up, and agrees with the other catalog.
    const back = await platform.restart(victim);
    report.figure(`${back.name} started again on its file and caught up`);
    await load.progress();
  } finally {
    await load.stop();
  }
  await report.checkLoad(platform, load, writers);
  return report;
}

/**
 * Whether the catalog database `path` and its journal are as a crash may
 * leave them: the file, if it exists yet, is JSON; each complete journal
 * line is JSON (the last one may be torn: a crash while appending an edit
 * that was never acknowledged).
 */
async function storedState(path: string): Promise<{ intact: boolean; detail: string }> {
  const read = (file: string) =>
    Deno.readTextFile(file).catch((error) => {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    });
  const [file, journal] = await Promise.all([read(path), read(`${path}.journal`)]);
  const parses = (text: string) => {
    try {
      JSON.parse(text);
      return true;
    } catch {
      return false;
    }
  };
  const lines = journal?.split("\n") ?? [];
  const torn = lines.pop() ?? "";
  const bad = lines.filter((line) => !parses(line)).length;
  const intact = (file === undefined || parses(file)) && bad === 0;
  const detail = `database ${file === undefined ? "not written yet" : `${file.length} bytes`}, journal ` +
    `${lines.length} complete line(s)${bad > 0 ? ` of which ${bad} unreadable` : ""}` +
    `${torn === "" ? "" : " and a torn last one"}`;
  return { intact, detail };
}

/** The drills, by the name `./run_drills` knows them by, with the token lifetime each platform needs. */
export const DRILLS = {
  kill: { run: killDrill, tokenLifetime: 30 },
  hang: { run: hangDrill, tokenLifetime: 30 },
  // Short-lived tokens: their expiries must be published, and seen, within the drill.
  icestorm: { run: icestormDrill, tokenLifetime: 3 },
  crash: { run: crashDrill, tokenLifetime: 30 },
} as const;

/** Runs drill `name` on a platform of its own and returns its report. */
export async function runDrill(name: keyof typeof DRILLS): Promise<DrillReport> {
  const drill = DRILLS[name];
  const platform = await DrillPlatform.start({ tokenLifetime: drill.tokenLifetime });
  try {
    return await drill.run(platform);
  } finally {
    await platform.stop();
  }
}

if (import.meta.main) {
  const names = Deno.args.length > 0 ? Deno.args : Object.keys(DRILLS);
  const unknown = names.filter((name) => !(name in DRILLS));
  if (unknown.length > 0) {
    console.error(`run_drills: unknown drill ${unknown.join(", ")}; the drills are ${Object.keys(DRILLS).join(", ")}`);
    Deno.exit(2);
  }
  let failed = 0;
  for (const name of names as (keyof typeof DRILLS)[]) {
    console.log(`== ${name}: starting a platform of its own (./run_iceflix --replicas 2)`);
    const report = await runDrill(name);
    console.log(`== ${name}: ${report.title}`);
    for (const line of report.figures) console.log(`   ${line}`);
    for (const { what, ok, detail } of report.checks) {
      console.log(
        `   ${ok ? "ok    " : "FAILED"} ${what}${ok || !detail ? "" : `\n${detail.replace(/^/gm, "          ")}`}`,
      );
      if (!ok) failed++;
    }
  }
  console.log(failed === 0 ? "all drills passed" : `${failed} check(s) FAILED`);
  Deno.exit(failed === 0 ? 0 : 1);
}
