/**
 * What the tests, the benchmarks and the drills start IceFlix with: real
 * IceStorm and real service processes on free loopback ports, each run with
 * its own, all stopped when it ends.
 *
 * @module
 */
import { Ice } from "ice";
import net from "node:net";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
import { createObjectAdapter } from "./acceptor.ts";
import { descriptorLimit } from "./connection_limits.ts";
import { initializeCommunicator } from "./service.ts";
import { hashPassword, sha256Hex } from "./users.ts";

/** The project's root folder. */
export const ROOT = new URL(".", import.meta.url).pathname;

/** Debian's Python, which has the ZeroC Ice module (python3-zeroc-ice). */
export const PYTHON = "/usr/bin/python3";

/** A TCP port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on `port`, or rejects after `seconds`. */
export async function waitForPort(port: number, seconds = 10): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (true) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after ${seconds} s`);
      await delay(50);
    }
  }
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` until it holds; rejects with `what` after `seconds`. */
export async function eventually(what: string, condition: () => boolean | Promise<boolean>, seconds = 15) {
  const deadline = Date.now() + seconds * 1000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await delay(50);
  }
}

/** A child process of a test, with its output kept for assertions and for failure reports. */
export class Child {
  readonly process: Deno.ChildProcess;
  /** Everything the process wrote on stderr so far. */
  stderr = "";
  readonly #stdoutLines: string[] = [];
  readonly #stdoutWaiters: (() => void)[] = [];
  readonly #done: Promise<Deno.CommandStatus>;

  constructor(command: string, args: string[], options: { env?: Record<string, string>; cwd?: string } = {}) {
    // Through setpriv (util-linux): the kernel sends SIGTERM to the child when the test process dies, even of a crash
    // or SIGKILL, so no platform is left running orphaned. setpriv executes the command in its own process: the pid
    // stays the command's.
    this.process = new Deno.Command("setpriv", {
      args: ["--pdeathsig", "TERM", "--", command, ...args],
      cwd: options.cwd ?? ROOT,
      env: options.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const readLines = async (stream: ReadableStream<Uint8Array>, onText: (text: string) => void) => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) onText(chunk);
    };
    let partial = "";
    const stdout = readLines(this.process.stdout, (text) => {
      const lines = (partial + text).split("\n");
      partial = lines.pop()!;
      this.#stdoutLines.push(...lines);
      this.#stdoutWaiters.splice(0).forEach((wake) => wake());
    });
    const stderr = readLines(this.process.stderr, (text) => this.stderr += text);
    this.#done = Promise.all([stdout, stderr]).then(() => this.process.status);
  }

  /** The lines written on stdout so far. */
  get lines(): readonly string[] {
    return this.#stdoutLines;
  }

  /** Waits for the `n`-th stdout line (1-based) and returns it. */
  async line(n = 1, seconds = 30): Promise<string> {
    const deadline = Date.now() + seconds * 1000;
    while (this.#stdoutLines.length < n) {
      const status = await Promise.race([
        new Promise<"more">((resolve) => this.#stdoutWaiters.push(() => resolve("more"))),
        this.#done.then(() => "ended" as const),
        delay(Math.max(0, deadline - Date.now())).then(() => "timeout" as const),
      ]);
      if (status !== "more" && this.#stdoutLines.length < n) {
        throw new Error(`no line ${n} on stdout (${status}); stderr:\n${this.stderr}`);
      }
    }
    return this.#stdoutLines[n - 1];
  }

  /** Sends `signal` (if still running) and waits for the process to end. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    try {
      this.process.kill(signal);
    } catch {
      // Already ended.
    }
    return await this.#done;
  }

  /** Waits for the process to end by itself. */
  wait(): Promise<Deno.CommandStatus> {
    return this.#done;
  }
}

/** An IceStorm of a test's own: a free port and a fresh data folder. */
export class IceStormServer {
  readonly port: number;
  readonly dataDir: string;
  #child: Child;

  private constructor(port: number, dataDir: string, child: Child) {
    this.port = port;
    this.dataDir = dataDir;
    this.#child = child;
  }

  /** Starts `./run_icestorm` on a free port and waits until it listens. */
  static async start(): Promise<IceStormServer> {
    const port = await freePort();
    const dataDir = await Deno.makeTempDir({ prefix: "iceflix-icestorm-" });
    return new IceStormServer(port, dataDir, await IceStormServer.#run(port, dataDir));
  }

  static async #run(port: number, dataDir: string): Promise<Child> {
    const child = new Child(`${ROOT}run_icestorm`, ["--port", String(port), "--data", dataDir]);
    await waitForPort(port);
    // Until IceBox says its service is ready it ignores SIGTERM (config/icestorm.config): a stop would be lost.
    await child.line(1);
    return child;
  }

  /**
   * Kills IceStorm (SIGKILL) and starts it again on the same port; with
   * `forget`, its stored topics and subscribers are wiped as well. `whileDown`
   * runs before it starts again.
   */
  async restart(options: { forget?: boolean; whileDown?: () => Promise<void> } = {}): Promise<void> {
    await this.#child.stop("SIGKILL");
    await options.whileDown?.();
    if (options.forget) {
      await Deno.remove(this.dataDir, { recursive: true });
      await Deno.mkdir(this.dataDir);
    }
    this.#child = await IceStormServer.#run(this.port, this.dataDir);
  }

  /** The TopicManager proxy. */
  get proxy(): string {
    return `IceStorm/TopicManager:tcp -h 127.0.0.1 -p ${this.port}`;
  }

  /** The command-line option that points a service at this IceStorm. */
  get option(): string {
    return `--IceStorm.TopicManager.Proxy=${this.proxy}`;
  }

  /** Stops IceStorm and removes its data. */
  async stop(): Promise<void> {
    await this.#child.stop();
    await Deno.remove(this.dataDir, { recursive: true });
  }
}

/**
 * Starts an IceFlix program with `deno run` and the given permissions and
 * arguments, and waits for its ready line (its proxy) on stdout.
 */
export async function startService(script: string, args: string[], permissions = ["--allow-all"]): Promise<
  { child: Child; proxy: string }
> {
  const child = new Child(Deno.execPath(), ["run", ...permissions, `${ROOT}${script}`, ...args]);
  const proxy = await child.line(1);
  return { child, proxy };
}

/** Runs a Python (IcePy) script from tests/interop; returns its stdout, fails on a non-zero exit. */
export async function runPython(script: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(PYTHON, { args: [`${ROOT}tests/interop/${script}`, ...args], cwd: ROOT })
    .output();
  const stdout = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    throw new Error(`${script} failed (${output.code}):\n${stdout}\n${new TextDecoder().decode(output.stderr)}`);
  }
  return stdout;
}

/**
 * One run of tests/interop/outsider.py, an attacker without the installation secret (trust and connection tests): its
 * attack keeps going until {@linkcode finish}.
 */
export class Outsider {
  readonly #process: Deno.ChildProcess;
  readonly #output: Promise<string>;
  readonly #ready: Promise<void>;
  #finished: Promise<Record<string, number>> | undefined;

  private constructor(args: string[]) {
    this.#process = new Deno.Command(PYTHON, {
      args: [`${ROOT}tests/interop/outsider.py`, ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = this.#process.stdout.pipeThrough(new TextDecoderStream());
    const ready = Promise.withResolvers<void>();
    this.#ready = ready.promise;
    this.#output = (async () => {
      let text = "";
      for await (const chunk of lines) {
        text += chunk;
        if (text.startsWith("ready\n")) ready.resolve();
      }
      ready.reject(new Error(`the outsider stopped before it was ready: ${text}`));
      return text;
    })();
  }

  /** Starts `attack` against the platform of `icestorm`; resolves once the attack is under way. */
  static async start(attack: string, icestorm: IceStormServer, args: string[]): Promise<Outsider> {
    const outsider = new Outsider([attack, icestorm.proxy, ...args]);
    await outsider.#ready;
    return outsider;
  }

  /** Stops announcing (and the idle flood); the tarpits keep the connections they hold until {@linkcode finish}. */
  async quiet(): Promise<void> {
    const writer = this.#process.stdin.getWriter();
    await writer.write(new TextEncoder().encode("quiet\n"));
    writer.releaseLock();
  }

  /** Ends the attack (once, however often called); resolves to what the outsider saw (calls, answers, sockets). */
  finish(): Promise<Record<string, number>> {
    this.#finished ??= (async () => {
      await this.#process.stdin.close();
      const [output, status] = await Promise.all([this.#output, this.#process.status]);
      if (!status.success) throw new Error(`the outsider failed:\n${output}`);
      return JSON.parse(output.trim().split("\n").at(-1)!);
    })();
    return this.#finished;
  }
}

/**
 * A communicator with a listening adapter `TestAdapter` in the test process
 * itself, for servants the services call back (IceStorm subscribers, ...).
 */
export async function testCommunicator(properties: string[] = []): Promise<
  { communicator: Ice.Communicator; adapter: Ice.ObjectAdapter }
> {
  const communicator = initializeCommunicator(["--TestAdapter.Endpoints=tcp -h 127.0.0.1", ...properties]);
  const adapter = await createObjectAdapter(communicator, "TestAdapter");
  await adapter.activate();
  return { communicator, adapter };
}

/** The descriptors process `pid` holds open now (Linux's /proc; a test has every permission). */
export function openDescriptors(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

/** The TCP connections process `pid` has open to `port` on this machine (its sockets, found in /proc/net/tcp). */
export function connectionsTo(pid: number, port: number): number {
  const inodes = new Set<string>();
  for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
    const target = (() => {
      try {
        return Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`);
      } catch {
        return ""; // closed meanwhile
      }
    })();
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode) inodes.add(inode);
  }
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  return ["/proc/net/tcp", "/proc/net/tcp6"].flatMap((table) => Deno.readTextFileSync(table).split("\n").slice(1))
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields[2]?.endsWith(`:${hexPort}`) && inodes.has(fields[9])).length;
}

/** Whether process `pid` exists (a zombie, not reaped yet, counts as existing). */
export function processExists(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Counts, per service id, the announcements heard on `ServiceAvailability` (subscribe it to the topic). */
export class AnnouncementCounter extends IceFlix.ServiceAvailability {
  /** Service id -> announcements heard. */
  readonly heard = new Map<string, number>();

  catalogService(_service: IceFlix.MediaCatalogPrx | null, id: string): void {
    this.#count(id);
  }

  authenticationService(_service: IceFlix.AuthenticatorPrx | null, id: string): void {
    this.#count(id);
  }

  mediaService(_service: IceFlix.StreamProviderPrx | null, id: string): void {
    this.#count(id);
  }

  #count(id: string): void {
    this.heard.set(id, (this.heard.get(id) ?? 0) + 1);
  }
}

/**
 * Starts an IceFlix service the way operators do, `./run_service <name> [--Name=value ...]` (same launcher, same
 * narrow permissions; through `prefix`, e.g. `prlimit --nofile=1024`, which must exec it), and waits for its ready
 * line (its proxy). A service that does not get ready is stopped.
 */
export async function startIceFlixService(
  name: string,
  args: string[],
  prefix: string[] = [],
): Promise<{ child: Child; proxy: string }> {
  const [command, ...rest] = [...prefix, `${ROOT}run_service`, name, ...args];
  const child = new Child(command, rest);
  try {
    return { child, proxy: await child.line(1) };
  } catch (error) {
    await child.stop("SIGKILL");
    throw error;
  }
}

/**
 * Starts IceFlix service `name` of the clone at `root` (this one unless given) as `./run_service` does (its
 * configuration files, from its folder, the descriptor limit it hands on), but with every permission and, with
 * `profileDir`, Deno's `--cpu-prof` writing a V8 CPU profile there when the service stops: for benchmarks. Resolves
 * with the child and its proxy once it is ready.
 */
export async function startBenchService(
  name: string,
  args: string[],
  options: { root?: string; profileDir?: string } = {},
): Promise<{ child: Child; proxy: string }> {
  const root = options.root ?? ROOT;
  const common = await Deno.stat(`${root}config/common.config`).then(() => true, () => false);
  const profile = options.profileDir === undefined ? [] : [
    "--cpu-prof",
    `--cpu-prof-dir=${options.profileDir}`,
    `--cpu-prof-name=${name}-${crypto.randomUUID()}.cpuprofile`,
  ];
  const child = new Child(`${root}node_modules/deno/deno`, [
    "run",
    "--allow-all",
    ...profile,
    `${root}${name}.ts`,
    `--Ice.Config=${common ? "config/common.config," : ""}config/${name}.config`,
    ...args,
  ], { cwd: root, env: { ICEFLIX_DESCRIPTOR_LIMIT: String(descriptorLimit()) } });
  try {
    return { child, proxy: await child.line(1) };
  } catch (error) {
    await child.stop("SIGKILL");
    throw error;
  }
}

/** Waits until something is bound to UDP `port` on this machine (from Linux's /proc/net/udp). */
export async function waitForUdpPort(port: number, seconds = 15): Promise<void> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  await eventually(`UDP port ${port} is bound`, async () => {
    const tables = await Promise.all(["/proc/net/udp", "/proc/net/udp6"].map((file) => Deno.readTextFile(file)));
    return tables.some((table) => table.split("\n").some((line) => line.trim().split(/\s+/)[1]?.endsWith(hex)));
  }, seconds);
}

/** The caps of the RTP/H.264 stream a StreamController sends, for a receiver that has no SDP. */
const RTP_H264_CAPS = "application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96";

/**
 * A video player without a screen (gst-launch-1.0): it receives a StreamController's RTP/H.264 stream,
 * decodes it, and counts the decoded frames.
 */
export class RtpReceiver {
  readonly #child: Child;
  readonly #sdpFile: string | undefined;

  private constructor(source: string[], sdpFile?: string) {
    this.#sdpFile = sdpFile;
    // -v makes fakesink print one "last-message = chain" line per decoded frame it gets.
    this.#child = new Child("gst-launch-1.0", [
      ...["-v", ...source, "!", "rtph264depay", "!", "avdec_h264", "!", "fakesink", "silent=false"],
    ]);
  }

  /** Listens on UDP `port`; the port is bound when this resolves. */
  static async onPort(port: number): Promise<RtpReceiver> {
    const receiver = new RtpReceiver(["udpsrc", `port=${port}`, `caps=${RTP_H264_CAPS}`]);
    await waitForUdpPort(port);
    return receiver;
  }

  /** Plays an SDP (what getSDP returned), as a player given that text does. */
  static async fromSdp(sdp: string): Promise<RtpReceiver> {
    const file = await Deno.makeTempFile({ suffix: ".sdp" });
    await Deno.writeTextFile(file, sdp);
    return new RtpReceiver(["filesrc", `location=${file}`, "!", "sdpdemux"], file);
  }

  /** The frames decoded so far. */
  get frames(): number {
    return this.#child.lines.filter((line) => line.includes("last-message = chain")).length;
  }

  async stop(): Promise<void> {
    await this.#child.stop("SIGKILL");
    if (this.#sdpFile) await Deno.remove(this.#sdpFile);
  }
}

/** A fresh folder for a test's files inside the checkout's data/, where ./run_service lets the services read. */
export async function scratchDir(prefix = "test-"): Promise<string> {
  await Deno.mkdir(`${ROOT}data`, { recursive: true });
  return await Deno.makeTempDir({ dir: `${ROOT}data`, prefix });
}

/** Writes `dir`/users.json with these user -> password pairs, as ./add_user stores them; returns its path. */
export async function writeUsersFile(dir: string, passwords: Record<string, string>): Promise<string> {
  const path = `${dir}/users.json`;
  const users = Object.fromEntries(
    await Promise.all(
      Object.entries(passwords).map(async ([user, password]) => [user, await hashPassword(await sha256Hex(password))]),
    ),
  );
  await Deno.writeTextFile(path, JSON.stringify(users), { mode: 0o600 });
  return path;
}

/**
 * A streaming service of a benchmark's own: a real IceStorm, the streaming
 * service on `mediaDir` with both stream caps at `maxStreams`, and the toy
 * Authenticator (tests/toy_service.ts, user "toy") that it checks tokens
 * with. Resolves once the service knows the Authenticator; `stop` ends all.
 */
export async function startBenchStreaming(mediaDir: string, maxStreams: number) {
  const icestorm = await IceStormServer.start();
  const streaming = await startIceFlixService("streaming", [
    icestorm.option,
    `--IceFlix.Streaming.MediaDir=${mediaDir}`,
    `--IceFlix.Streaming.MaxStreams=${maxStreams}`,
    `--IceFlix.Streaming.MaxStreamsPerUser=${maxStreams}`,
    "--IceFlix.Discovery.AnnounceInterval=1",
  ]);
  const toy = await startService("tests/toy_service.ts", [
    "--ToyAdapter.Endpoints=tcp -h 127.0.0.1",
    icestorm.option,
    "--IceFlix.Discovery.AnnounceInterval=1",
  ]);
  const communicator = initializeCommunicator([]);
  await eventually("the service knows the Authenticator", () => /auth service \S+ found/.test(streaming.child.stderr));
  return {
    streaming,
    provider: IceFlix.StreamProviderPrx.uncheckedCast(communicator.stringToProxy(streaming.proxy)),
    communicator,
    stop: async () => {
      await communicator.destroy();
      await toy.child.stop();
      await streaming.child.stop();
      await icestorm.stop();
    },
  };
}
