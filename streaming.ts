/**
 * The StreamProvider (spec 1.4, 2.4): offers the videos of a folder and
 * creates a StreamController for each client that wants to watch one.
 *
 * At start it scans `IceFlix.Streaming.MediaDir` (default `media/`): every
 * video file gets its id, the SHA-256 of its bytes, and is announced with
 * `StreamAnnounces.newMedia(id, initialName, providerId)` on topic
 * `MediaAnnouncements`; the provider itself is announced through discovery as
 * kind "media". SIGUSR2 (sent by `./reload_media`) rescans the folder: new
 * files are hashed and announced, removed ones stop being available, and
 * unchanged ones (same size, inode, modification and status change times)
 * are not hashed again. A symbolic link is followed only to a file inside the
 * folder.
 *
 *   ./run_service streaming [--Name=value ...]
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
// @ts-types="./slice/streams.d.ts"
import { IceFlixStreams } from "./slice/streams.js";
import { createHash } from "node:crypto";
import { basename, dirname, extname, isAbsolute, join, relative, resolve } from "node:path";
import { Discovery } from "./discovery.ts";
import { TOPICS } from "./events.ts";
import { probeVideo, type VideoFormat } from "./gstreamer.ts";
import { requireTokenOwner } from "./authorization.ts";
import { descriptorLimit } from "./connection_limits.ts";
import { type StreamContext, StreamController, type StreamMedia } from "./controller.ts";
import { RELOAD_SIGNAL, reloadOnSignal } from "./reload_signal.ts";
import { describeError, type Logger, runService, secondsProperty } from "./service.ts";
import { serveHttpStreaming } from "./http_streaming.ts";
import { serveHoldings } from "./media_holdings.ts";
import { readJsonFile, writeJsonFileAtomic } from "./json_file.ts";
import { inParallel } from "./in_parallel.ts";

/** The file extensions looked at as videos (lowercase); other files are skipped. */
export const VIDEO_EXTENSIONS: ReadonlySet<string> = new Set([
  "mp4",
  "m4v",
  "mov",
  "mkv",
  "webm",
  "avi",
  "ogv",
  "mpg",
  "mpeg",
  "ts",
  "flv",
  "wmv",
  "3gp",
]);

/** Streams one user may hold at once unless `IceFlix.Streaming.MaxStreamsPerUser` says otherwise (a premium plan's). */
const DEFAULT_MAX_STREAMS_PER_USER = 4;

/**
 * What one copy-mode sender costs, measured (issue 14: 150 at once, each at full rate): memory (MB of RSS of one
 * gst-launch-1.0) and descriptors (held by the service per sender: its stderr pipe and its process handle).
 */
const SENDER_COST = { megabytes: 14, descriptors: 2 };

/**
 * Copy-mode streams per core: each takes about 0.6 % of a core, so these take under half of every core and leave
 * the rest for the service, receivers on the same machine and the other programs. Measured on 2 cores
 * (`deno task bench streaming_capacity`): 150 streams at full rate with the receivers on the same machine, 200 not
 * (CPU). A re-encoded stream costs 14 times as much: a folder of non-H.264 videos wants a MaxStreams of its own.
 */
const STREAMS_PER_CORE = 75;

/** What the machine offers, as {@linkcode machineStreamLimit} weighs it. */
export interface MachineResources {
  cores: number;
  /** MB of memory available now (MemAvailable). */
  availableMegabytes: number;
  /** The soft limit of open files (`ulimit -n`). */
  descriptors: number;
}

/** The default of `IceFlix.Streaming.MaxStreams`, and why. */
export interface StreamLimit {
  streams: number;
  /** How each resource's budget was reckoned, for the start-up log line. */
  reasons: string;
  /** The resource that gives the smallest budget: `cpu`, `memory` or `descriptors`. */
  bound: "cpu" | "memory" | "descriptors";
}

/**
 * How many streams the machine can serve at once: the smallest of its
 * budgets. CPU: {@linkcode STREAMS_PER_CORE} per core. Memory: half of what
 * is available now (the rest is headroom for the other programs) at
 * {@linkcode SENDER_COST} each. Descriptors: the quarter of `ulimit -n` that
 * incoming connections leave (`IceFlix.Connections.Max` takes three quarters)
 * at {@linkcode SENDER_COST} each.
 */
export function machineStreamLimit(machine: MachineResources): StreamLimit {
  const budgets = {
    cpu: Math.floor(machine.cores * STREAMS_PER_CORE),
    memory: Math.floor(machine.availableMegabytes / 2 / SENDER_COST.megabytes),
    descriptors: Math.floor(machine.descriptors / 4 / SENDER_COST.descriptors),
  };
  const bound = (Object.keys(budgets) as StreamLimit["bound"][])
    .reduce((smallest, resource) => budgets[resource] < budgets[smallest] ? resource : smallest);
  const reasons = `CPU ${machine.cores} core(s) x ${STREAMS_PER_CORE} = ${budgets.cpu}; ` +
    `memory ${Math.round(machine.availableMegabytes)} MB available / 2 / ${SENDER_COST.megabytes} MB = ` +
    `${budgets.memory}; descriptors ${machine.descriptors} (ulimit -n) / 4 / ${SENDER_COST.descriptors} = ` +
    `${budgets.descriptors}`;
  return { streams: Math.max(1, budgets[bound]), reasons, bound };
}

/** This machine's cores (those this process may run on), available memory and descriptor limit. */
export function machineResources(): MachineResources {
  // Asked first: a missing permission must not become a prompt. Without it: a small machine's memory.
  const memory = Deno.permissions.querySync({ name: "sys", kind: "systemMemoryInfo" }).state === "granted"
    ? Deno.systemMemoryInfo().available
    : 1 << 30;
  return { cores: navigator.hardwareConcurrency, availableMegabytes: memory / 2 ** 20, descriptors: descriptorLimit() };
}

/** Bytes read at a time while hashing: memory use stays this small whatever the file size. */
const HASH_CHUNK = 1 << 20;

/** A scan that takes longer than this logs its progress at this interval (ms). */
const PROGRESS_INTERVAL = 2000;

/** Files of the folder looked at (stat) at once during a scan. */
const STATS_IN_FLIGHT = 32;

/** `newMedia` events sent to IceStorm at once: one at a time, 1,000 took about a second. */
const ANNOUNCEMENTS_IN_FLIGHT = 32;

/**
 * The lowercase hex SHA-256 of a file's bytes, read in chunks: a file of any
 * size is hashed in constant memory (node:crypto's hash is incremental, which
 * Web Crypto's digest is not).
 *
 * @param onRead called with the number of bytes after every chunk
 */
export async function sha256File(path: string, onRead: (bytes: number) => void = () => {}): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  const buffer = new Uint8Array(HASH_CHUNK);
  for (let count; (count = await file.read(buffer)) !== null;) {
    hash.update(buffer.subarray(0, count));
    onRead(count);
  }
  return hash.digest("hex");
}

/**
 * A file of the folder as the last scan found it: together these tell
 * whether it changed since it was examined (writing changes the modification
 * time and the status change time, which no one can set back; replacing it
 * changes the inode).
 */
interface FileState {
  path: string;
  size: number;
  /** Modification time (ms since the epoch). */
  modified: number;
  inode: number;
  /**
   * Status change time (ms since the epoch), in whole seconds as Deno gives
   * it; {@linkcode UNTRUSTED} for a file examined within the second of its
   * last change, when a change later in that second would not show.
   */
  changed: number;
}

/** The status change time kept for a file that must be examined again at the next scan (see FileState). */
const UNTRUSTED = -1;

/** What examining a file found: its video, or why it cannot be streamed. */
interface Examined extends FileState {
  media?: StreamMedia;
  refused?: string;
}

function sameFile(a: FileState, b: FileState): boolean {
  return a.size === b.size && a.modified === b.modified && a.inode === b.inode && a.changed === b.changed;
}

/** A scan cache entry as stored: the file's state, and its id and format, or why it was refused. */
interface CachedJson {
  size: number;
  modified: number;
  inode: number;
  changed: number;
  id?: string;
  format?: VideoFormat;
  refused?: string;
}

/**
 * What the scans of one folder found, kept in a JSON file (written
 * atomically) so that a restart examines only the files that changed: file
 * name -> {@linkcode CachedJson}. It is only a cache: one that cannot be read
 * is replaced.
 */
class ScanCache {
  readonly path: string;
  readonly #logger: Logger;

  constructor(path: string, logger: Logger) {
    this.path = path;
    this.#logger = logger;
  }

  /** The cached examinations of the files of `folder`, by path. */
  async load(folder: string): Promise<Map<string, Examined>> {
    const examined = new Map<string, Examined>();
    let stored: unknown;
    try {
      stored = await readJsonFile(this.path);
    } catch (error) {
      this.#logger.warn(`ignoring the scan cache: ${describeError(error)}`);
      return examined;
    }
    if (stored === undefined) return examined;
    const files = (stored as { files?: unknown }).files;
    if (typeof files !== "object" || files === null) {
      this.#logger.warn(`ignoring the scan cache ${this.path}: it has no "files" object`);
      return examined;
    }
    for (const [name, value] of Object.entries(files)) {
      const entry = value as Partial<CachedJson>;
      const numbers = [entry.size, entry.modified, entry.inode, entry.changed].every(Number.isFinite);
      const format = entry.format;
      const playable = typeof entry.id === "string" && /^[0-9a-f]{64}$/.test(entry.id) &&
        typeof format?.container === "string" && typeof format.video === "string" && typeof format.copy === "boolean";
      if (!numbers || (!playable && typeof entry.refused !== "string") || name.includes("/")) continue;
      const path = join(folder, name);
      const state = {
        path,
        size: entry.size!,
        modified: entry.modified!,
        inode: entry.inode!,
        changed: entry.changed!,
      };
      const media = playable
        ? { id: entry.id!, name: basename(name, extname(name)), path, format: format! }
        : undefined;
      examined.set(path, { ...state, media, refused: playable ? undefined : entry.refused });
    }
    return examined;
  }

  /** Replaces the cache with `examined`; a failure is logged (the next start examines again). */
  async save(folder: string, examined: Iterable<Examined>): Promise<void> {
    const files: Record<string, CachedJson> = {};
    for (const { path, size, modified, inode, changed, media, refused } of examined) {
      files[basename(path)] = { size, modified, inode, changed, id: media?.id, format: media?.format, refused };
    }
    try {
      await Deno.mkdir(dirname(this.path), { recursive: true });
      await writeJsonFileAtomic(this.path, { folder, files });
    } catch (error) {
      this.#logger.warn(`cannot write the scan cache: ${describeError(error)}`);
    }
  }
}

/**
 * Where the scan cache of `folder` is kept unless `IceFlix.Streaming.ScanCache`
 * says otherwise: `data/scan-cache/` of the checkout, one file per folder.
 */
export function defaultScanCache(folder: string): string {
  const key = createHash("sha256").update(resolve(folder)).digest("hex").slice(0, 16);
  return join(new URL(".", import.meta.url).pathname, "data", "scan-cache", `${key}.json`);
}

/**
 * The videos of one folder, by id. {@linkcode scan} brings them up to date
 * with the folder; files that did not change are not read again.
 */
export class MediaLibrary {
  readonly folder: string;
  readonly #logger: Logger;
  #byId = new Map<string, StreamMedia>();
  /** path -> what its last examination found, kept while the file is unchanged. */
  #examined = new Map<string, Examined>();
  readonly #cache: ScanCache | undefined;
  #cacheLoaded = false;

  /** @param cachePath the scan cache file (none: every start examines every file) */
  constructor(folder: string, logger: Logger, cachePath?: string) {
    this.folder = folder;
    this.#logger = logger;
    this.#cache = cachePath ? new ScanCache(cachePath, logger) : undefined;
  }

  /** The video with id `id`, if this provider offers it. */
  get(id: string): StreamMedia | undefined {
    return this.#byId.get(id);
  }

  /** Every video offered, in file name order. */
  get files(): StreamMedia[] {
    return [...this.#byId.values()];
  }

  /**
   * Reads the folder again: files new or changed since the last scan are
   * examined (codec) and hashed; videos no longer there stop being offered.
   * Returns the videos offered now that were not before.
   *
   * @throws Error if the folder cannot be read (nothing changes then)
   */
  async scan(): Promise<StreamMedia[]> {
    const candidates: FileState[] = [];
    const skipped: string[] = [];
    const folder = await Deno.realPath(this.folder);
    // Before any file's stat: a file whose status changed less than a second before may change again unseen.
    const started = Date.now();
    const entries: Deno.DirEntry[] = [];
    for await (const entry of Deno.readDir(this.folder)) {
      // Hidden files are editors' and downloaders' leftovers, not videos.
      if (!entry.name.startsWith(".")) entries.push(entry);
    }
    // Several files at once: one after the other, 1,000 files took a good part of a second on a busy machine.
    await inParallel(entries, STATS_IN_FLIGHT, async ({ name, isSymlink }) => {
      const path = join(this.folder, name);
      // A link may point anywhere the service can read (users.json, the installation key): only inside is served.
      const outside = isSymlink ? await linkOutside(path, folder) : undefined;
      if (outside) {
        this.#logger.warn(`skipping ${name}: a symbolic link to ${outside}, outside the media folder`);
        return;
      }
      const info = await Deno.stat(path).catch(() => undefined); // Follows symbolic links; a broken one is skipped.
      if (!info?.isFile || !VIDEO_EXTENSIONS.has(extname(name).slice(1).toLowerCase())) {
        skipped.push(info?.isDirectory ? `${name}/` : name);
        return;
      }
      const [modified, changed] = [info.mtime?.getTime() ?? 0, info.ctime?.getTime() ?? 0];
      candidates.push({ path, size: info.size, modified, inode: info.ino ?? 0, changed });
    });
    candidates.sort((a, b) => a.path < b.path ? -1 : 1);
    if (skipped.length > 0) {
      this.#logger.info(
        `not videos, skipped: ${skipped.sort().join(", ")} (videos end in .${[...VIDEO_EXTENSIONS].join(", .")})`,
      );
    }

    if (this.#cache && !this.#cacheLoaded) {
      this.#examined = await this.#cache.load(this.folder);
      this.#cacheLoaded = true;
    }
    const unchanged = (file: FileState) => {
      const known = this.#examined.get(file.path);
      return known !== undefined && sameFile(known, file);
    };
    const toExamine = candidates.filter((file) => !unchanged(file));
    const progress = new ScanProgress(toExamine.reduce((total, file) => total + file.size, 0), this.#logger);
    const examined = new Map<string, Examined>();
    try {
      for (const file of candidates) {
        const known = unchanged(file) ? this.#examined.get(file.path) : undefined;
        if (known?.refused) this.#logger.warn(`skipping ${basename(file.path)}: ${known.refused}`);
        const result = known ?? await this.#examine(file, progress);
        if (!result) continue;
        examined.set(file.path, started - result.changed < 1000 ? { ...result, changed: UNTRUSTED } : result);
      }
    } finally {
      progress.end();
    }
    if (this.#cache && (toExamine.length > 0 || examined.size !== this.#examined.size)) {
      await this.#cache.save(this.folder, examined.values());
    }

    const byId = new Map<string, StreamMedia>();
    for (const { media } of examined.values()) {
      if (!media) continue;
      const same = byId.get(media.id);
      if (same) {
        this.#logger.info(`${basename(media.path)} has the same content as ${basename(same.path)}: offered once`);
        continue;
      }
      byId.set(media.id, media);
    }
    for (const [id, media] of this.#byId) {
      if (!byId.has(id)) this.#logger.info(`"${media.name}" (${basename(media.path)}) is no longer offered`);
    }
    const added = [...byId.values()].filter((media) => !this.#byId.has(media.id));
    this.#byId = byId;
    this.#examined = examined;
    return added;
  }

  /**
   * Looks at a new or changed file: its video format first (quick), then its
   * hash. A file that is not a playable video is remembered as such until it
   * changes; one that cannot be read (`undefined`) is tried again next scan.
   */
  async #examine(file: FileState, progress: ScanProgress): Promise<Examined | undefined> {
    const path = file.path;
    let format: VideoFormat;
    try {
      format = await probeVideo(path);
    } catch (error) {
      const refused = describeError(error);
      this.#logger.warn(`skipping ${basename(path)}: ${refused}`);
      progress.read(file.size);
      return { ...file, refused };
    }
    progress.start(basename(path));
    let id: string;
    try {
      id = await sha256File(path, (bytes) => progress.read(bytes));
    } catch (error) {
      this.#logger.warn(`skipping ${basename(path)}: cannot read it (${describeError(error)})`);
      return undefined;
    }
    const name = basename(path, extname(path));
    this.#logger.info(`${basename(path)}: ${format.video} in ${format.container}, id ${id}`);
    return { ...file, media: { id, name, path, format } };
  }
}

/**
 * Where the symbolic link `path` leads if that is outside `folder` (a real
 * path), or `undefined` if it stays inside (or leads nowhere: the scan skips
 * it as it skips any file it cannot read).
 */
async function linkOutside(path: string, folder: string): Promise<string | undefined> {
  const target = await Deno.realPath(path).catch(() => undefined);
  if (target === undefined) return undefined;
  const inside = relative(folder, target);
  return inside === "" || inside === ".." || inside.startsWith("../") || isAbsolute(inside) ? target : undefined;
}

/** Progress lines on stderr while a long scan hashes. */
class ScanProgress {
  readonly #total: number;
  readonly #logger: Logger;
  readonly #started = performance.now();
  #done = 0;
  #file = "";
  #timer: ReturnType<typeof setInterval>;

  constructor(totalBytes: number, logger: Logger) {
    this.#total = totalBytes;
    this.#logger = logger;
    this.#timer = setInterval(() => this.#report(), PROGRESS_INTERVAL);
  }

  start(file: string): void {
    this.#file = file;
  }

  /** Counts `bytes` more as done (hashed, or skipped). */
  read(bytes: number): void {
    this.#done += bytes;
  }

  end(): void {
    clearInterval(this.#timer);
    const seconds = (performance.now() - this.#started) / 1000;
    if (seconds * 1000 >= PROGRESS_INTERVAL) {
      this.#logger.info(`scan done: ${megabytes(this.#done)} MB hashed in ${seconds.toFixed(1)} s`);
    }
  }

  #report(): void {
    const percent = this.#total > 0 ? Math.floor(100 * this.#done / this.#total) : 100;
    this.#logger.info(
      `scanning: ${megabytes(this.#done)} of ${megabytes(this.#total)} MB hashed (${percent} %), now ${this.#file}`,
    );
  }
}

function megabytes(bytes: number): string {
  return (bytes / 1e6).toFixed(0);
}

/** How many streams a provider serves at once: in all, and to one user. */
export interface StreamLimits {
  /** `IceFlix.Streaming.MaxStreams`. */
  total: number;
  /** `IceFlix.Streaming.MaxStreamsPerUser`. */
  perUser: number;
}

/** The StreamProvider servant. */
class StreamProvider extends IceFlix.StreamProvider {
  readonly #library: MediaLibrary;
  readonly #context: StreamContext;
  readonly #limits: StreamLimits;
  readonly #announce: (media: StreamMedia[]) => Promise<void>;
  /** The open controllers. */
  readonly #streams = new Set<StreamController>();
  /** getStream calls between the limit check and their controller's opening. */
  #opening = 0;
  /**
   * Per user (TokenOwner key), the controllers that user holds: open, or being opened. A controller counts from
   * getStream until it closes (stop, the grace period, idleness, shutdown), sending or not: it holds a topic, a
   * subscription and a servant, and its client may start a sender with getSDP at any moment.
   */
  readonly #held = new Map<string, number>();

  constructor(
    library: MediaLibrary,
    context: StreamContext,
    limits: StreamLimits,
    announce: (media: StreamMedia[]) => Promise<void>,
  ) {
    super();
    this.#library = library;
    this.#context = context;
    this.#limits = limits;
    this.#announce = announce;
  }

  async getStream(id: string, authentication: string, current?: Ice.Current): Promise<IceFlix.StreamControllerPrx> {
    const { discovery, logger } = this.#context;
    const owner = await requireTokenOwner(discovery, logger, authentication, `getStream of ${id}`);
    const media = this.#library.get(id);
    if (!media) throw new IceFlix.WrongMediaId(id);
    const { total, perUser } = this.#limits;
    if (this.#streams.size + this.#opening >= total) {
      logger.warn(`stream of "${media.name}" refused: ${total} streams open already`);
      // The Slice leaves getStream only Unauthorized and WrongMediaId, and a full provider is neither (a client told
      // "Unauthorized" would log in again): a run-time error whose text says why, which every Ice client shows.
      throw new Ice.UnknownException(
        `this media server is serving its maximum of ${total} streams (IceFlix.Streaming.MaxStreams); ` +
          "try again later",
      );
    }
    const held = this.#held.get(owner.key) ?? 0;
    if (held >= perUser) {
      logger.warn(`stream of "${media.name}" refused: ${owner.description} holds ${held} streams already`);
      // An Unauthorized (the user may not open more), with the reason for the clients that know our Slice.
      throw new IceFlixStreams.StreamLimitReached(
        `${owner.description} already has ${held} streams open on this media server, the most one user may ` +
          `(IceFlix.Streaming.MaxStreamsPerUser); stop one to watch another`,
      );
    }
    // The slots are taken before the first await, so concurrent calls cannot overshoot the limits.
    this.#opening++;
    this.#held.set(owner.key, held + 1);
    const release = () => {
      const left = this.#held.get(owner.key)! - 1;
      if (left > 0) this.#held.set(owner.key, left);
      else this.#held.delete(owner.key);
    };
    try {
      const { controller, proxy } = await StreamController.open(
        media,
        authentication,
        current?.con ?? null,
        this.#context,
        () => {
          this.#streams.delete(controller);
          release();
        },
      );
      this.#streams.add(controller);
      return proxy;
    } catch (error) {
      release();
      throw error;
    } finally {
      this.#opening--;
    }
  }

  isAvailable(id: string): boolean {
    return this.#library.get(id) !== undefined;
  }

  async reannounceMedia(): Promise<void> {
    await this.#announce(this.#library.files);
  }

  /** Closes every stream (at shutdown) and waits until all is released. */
  async closeAll(reason: string): Promise<void> {
    await Promise.all([...this.#streams].map(async (controller) => {
      await controller.close(reason);
      await controller.released;
    }));
  }
}

/**
 * The stream limits of `properties`: `IceFlix.Streaming.MaxStreams`, by
 * default sized from the machine ({@linkcode machineStreamLimit}, logged with
 * its reasons), and `IceFlix.Streaming.MaxStreamsPerUser`, by default 4.
 *
 * @throws Error for a limit under 1
 */
export function streamLimits(properties: Ice.Properties, logger: Logger): StreamLimits {
  const atLeastOne = (name: string, value: number) => {
    if (!Number.isInteger(value) || value < 1) throw new Error(`property ${name} must be at least 1, not ${value}`);
    return value;
  };
  let total: number;
  if (properties.getProperty("IceFlix.Streaming.MaxStreams").trim() === "") {
    const sized = machineStreamLimit(machineResources());
    total = sized.streams;
    logger.info(
      `at most ${total} streams at once, sized from the machine (${sized.reasons}; ${sized.bound} is the limit); ` +
        "IceFlix.Streaming.MaxStreams sets another",
    );
  } else {
    total = atLeastOne("IceFlix.Streaming.MaxStreams", properties.getPropertyAsInt("IceFlix.Streaming.MaxStreams"));
    logger.info(`at most ${total} streams at once (IceFlix.Streaming.MaxStreams)`);
  }
  const perUser = atLeastOne(
    "IceFlix.Streaming.MaxStreamsPerUser",
    properties.getPropertyAsIntWithDefault("IceFlix.Streaming.MaxStreamsPerUser", DEFAULT_MAX_STREAMS_PER_USER),
  );
  return { total, perUser };
}

if (import.meta.main) {
  await runService({
    name: "streaming",
    adapterName: "StreamingAdapter",
    async setup(context) {
      const { adapter, properties, events, logger, onShutdown } = context;
      const folder = properties.getPropertyWithDefault("IceFlix.Streaming.MediaDir", "media");
      const gracePeriod = secondsProperty(properties, "IceFlix.Controller.GracePeriod", 10);
      const idleTimeout = secondsProperty(properties, "IceFlix.Controller.IdleTimeout", 120);
      const limits = streamLimits(properties, logger);

      const cache = properties.getPropertyWithDefault("IceFlix.Streaming.ScanCache", defaultScanCache(folder));
      const library = new MediaLibrary(folder, logger, cache);
      // The provider's proxy is made before its servant, because the servant needs discovery and discovery the proxy.
      const identity = Ice.stringToIdentity(crypto.randomUUID());
      const discovery = new Discovery(context, { kind: "media", proxy: adapter.createProxy(identity) });
      const announce = (media: StreamMedia[]) =>
        inParallel(media, ANNOUNCEMENTS_IN_FLIGHT, async ({ id, name }) => {
          await events.publish(
            TOPICS.mediaAnnouncements,
            (publisher) => IceFlix.StreamAnnouncesPrx.uncheckedCast(publisher).newMedia(id, name, discovery.id),
          );
        });
      const provider = new StreamProvider(
        library,
        { ...context, discovery, gracePeriod, idleTimeout },
        limits,
        announce,
      );
      const proxy = adapter.add(provider, identity);
      // Catalogs ask whether it holds many announced ids in one call (facet IceFlixMedia).
      serveHoldings(adapter, identity, (id) => provider.isAvailable(id));
      // Browsers: the same streams, the video over HTTP (http_streaming.ts, facet HttpStreaming).
      const media = (id: string) => library.get(id);
      const getStream = (id: string, token: string) => provider.getStream(id, token);
      onShutdown(await serveHttpStreaming({ adapter, identity, properties, logger, media, getStream }));

      // ./reload_media sends the reload signal: rescan, announce what is new. Listening comes first, as the
      // signal's default action would end the process; rescans wait for the start-up to finish.
      const started = Promise.withResolvers<void>();
      onShutdown(reloadOnSignal(async () => {
        logger.info(`${RELOAD_SIGNAL}: rescanning ${folder}`);
        try {
          const added = await library.scan();
          await announce(added);
          logger.info(`${added.length} new video(s) announced; ${library.files.length} offered`);
        } catch (error) {
          logger.error(`rescan failed, the offer is unchanged: ${describeError(error)}`);
        }
      }, { after: started.promise }));

      try {
        await library.scan();
      } catch (error) {
        throw new Error(`cannot read the media folder ${folder} (IceFlix.Streaming.MediaDir): ${describeError(error)}`);
      }
      logger.info(`${library.files.length} video(s) in ${folder}`);
      await discovery.start();
      onShutdown(() => discovery.stop());
      await announce(library.files);
      // Registered last, so it runs first: the streams close while IceStorm is still reachable through discovery.
      onShutdown(() => provider.closeAll("the service is shutting down"));
      started.resolve();
      return proxy;
    },
  });
}
