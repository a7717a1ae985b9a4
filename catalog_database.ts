/**
 * The MediaCatalog's database: every title's name and tags, held in memory
 * with the indexes that keep searches fast, and kept on disk so that no
 * accepted edit is lost.
 *
 * On disk it is a JSON file (`IceFlix.Catalog.DatabaseFile`): one object, media
 * id -> `{"name": string, "tags": [string, ...]}`, written one title per line.
 *
 * Replicas (catalog_replication.ts) merge their titles, so every edit is
 * versioned: a {@linkcode Version} is a Lamport counter and the id of the
 * replica that made the edit. An edited title also has, on disk,
 * `"versions": {"name": [7, "<replica>"], "tags": {"Drama": [5, "<replica>"]},
 * "removed": {"old": [6, "<replica>"]}}`: when its name and each tag were last
 * set, and which tags were removed (kept, so that a replica that missed the
 * removal cannot bring the tag back). Missing versions are version zero, older
 * than every edit: a file written before versions existed loads as a catalog
 * nobody has edited yet, and a title only announced by its provider has none.
 * {@linkcode CatalogDatabase.merge} keeps, for the name and for each tag, the
 * state with the greater version, so replicas that saw the same edits in any
 * order hold the same titles.
 *
 * Rewriting that file for every edit would cost tens of milliseconds with
 * 100,000 titles, so an edit is instead appended to a journal beside it,
 * `<file>.journal`: one JSON line `["<id>", {"name": ..., "tags": [...], ...}]`
 * with the title's new state, synced to disk before the edit is acknowledged.
 * Edits that arrive while the journal is being synced go together in the next
 * append (group commit), one after the other in the order they were made. The
 * journal is folded into the JSON file (rewritten atomically, journal removed)
 * at start-up, at a clean shutdown, and whenever it has as many lines as there
 * are titles; so after a clean stop the JSON file alone is the whole catalog.
 *
 * A crash can leave the journal's last line half-written: that edit was never
 * acknowledged, so the line is ignored. Anything else that does not parse
 * stops the catalog with a clear error, and neither file is touched.
 *
 * @module
 */
import { CorruptFileError, readJsonFile, writeTextFileAtomic } from "./json_file.ts";
import { NameIndex, TagIndex } from "./catalog_index.ts";
import { describeError, type Logger } from "./service.ts";

/** A title's name and tags, as clients see them. */
export interface TitleInfo {
  name: string;
  tags: string[];
}

/** When a value was last set: a Lamport counter, and the id of the replica that set it. */
export interface Version {
  counter: number;
  replica: string;
}

/** The version of what nobody edited: a title's name as first announced, the tags of a file without versions. */
export const VERSION_ZERO: Version = Object.freeze({ counter: 0, replica: "" });

/** One tag of a title, present or removed, and when that was decided. */
export interface TagState {
  /** As written when it was added. */
  tag: string;
  present: boolean;
  version: Version;
}

/** Everything a replica knows about a title: what replicas exchange and merge. */
export interface VersionedTitle {
  name: string;
  nameVersion: Version;
  /** At most one per tag (as a search key), removed tags included. */
  tags: TagState[];
}

/** Negative, zero or positive as version `a` is older than, the same as, or newer than `b`. */
export function compareVersions(a: Version, b: Version): number {
  return a.counter - b.counter || compareText(a.replica, b.replica);
}

/** Code-point order: the same on every machine, whatever its locale. */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Whether tag state `a` replaces `b`: the newer version wins. Equal versions
 * with different states happen only at version zero (two replicas' files from
 * before versions existed): present wins, then the greater text.
 */
function tagWins(a: TagState, b: TagState): boolean {
  return (compareVersions(a.version, b.version) || Number(a.present) - Number(b.present) || compareText(a.tag, b.tag)) >
    0;
}

/** Whether name `a` replaces `b`: the newer version wins; at version zero (both as announced), the greater text. */
function nameWins(a: { name: string; nameVersion: Version }, b: { name: string; nameVersion: Version }): boolean {
  return (compareVersions(a.nameVersion, b.nameVersion) || compareText(a.name, b.name)) > 0;
}

/** The journal is folded into the JSON file once it has this many lines, or as many as there are titles. */
const MIN_LINES_BEFORE_COMPACTION = 1000;

/**
 * The form in which names and tags are compared: case-insensitive for every
 * script ("PELÍCULA" and "película", "STRASSE" and "straße"), locale-free, and
 * with composed and decomposed accents alike (NFC).
 */
export function searchKey(text: string): string {
  // Upper then lower case maps case variants to one form, as Unicode case folding does.
  return text.toUpperCase().toLowerCase().normalize("NFC");
}

/** The file does not hold a catalog. */
function notACatalog(path: string, problem: string): Error {
  return new Error(`${path} is not a catalog database (${problem}); fix or remove it, it was left untouched`);
}

/** A title as written in the file and the journal. */
interface StoredJson {
  name: string;
  tags: string[];
  versions?: { name?: VersionJson; tags?: Record<string, VersionJson>; removed?: Record<string, VersionJson> };
}

/** A version as written in the file: `[counter, "replica"]`. */
type VersionJson = [number, string];

/** A plain JSON object (not an array, not null). */
function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isVersionJson(value: unknown): value is VersionJson {
  return Array.isArray(value) && value.length === 2 && Number.isSafeInteger(value[0]) && value[0] >= 0 &&
    typeof value[1] === "string";
}

/** Whether `value` is an object of tag -> version, as in `"versions"`. */
function isTagVersionsJson(value: unknown): value is Record<string, VersionJson> | undefined {
  return value === undefined || (isObject(value) && Object.values(value).every(isVersionJson));
}

/** Reads `value` as title `id` (checking it is one), naming what is wrong if not. */
function parseTitle(path: string, id: string, value: unknown): VersionedTitle {
  const title = value as Partial<Record<string, unknown>>;
  const valid = isObject(value) && typeof title.name === "string" && Array.isArray(title.tags) &&
    title.tags.every((tag) => typeof tag === "string") &&
    Object.keys(title).every((field) => field === "name" || field === "tags" || field === "versions");
  if (!valid) {
    throw notACatalog(
      path,
      `title ${JSON.stringify(id)} must be {"name": string, "tags": [string, ...]} (and "versions" once edited) ` +
        "and nothing else",
    );
  }
  const versions = title.versions ?? {};
  const validVersions = isObject(versions) && (versions.name === undefined || isVersionJson(versions.name)) &&
    isTagVersionsJson(versions.tags) && isTagVersionsJson(versions.removed) &&
    Object.keys(versions).every((field) => ["name", "tags", "removed"].includes(field));
  if (!validVersions) {
    throw notACatalog(
      path,
      `title ${JSON.stringify(id)} has bad "versions": it must be {"name": [counter, "replica"], ` +
        `"tags": {"<tag>": [counter, "replica"], ...}, "removed": {"<tag>": [counter, "replica"], ...}}`,
    );
  }
  const { name, tags, removed } = versions as NonNullable<StoredJson["versions"]>;
  const version = (json: VersionJson | undefined) => json ? { counter: json[0], replica: json[1] } : VERSION_ZERO;
  return {
    name: title.name as string,
    nameVersion: version(name),
    tags: [
      ...(title.tags as string[]).map((tag) => ({ tag, present: true, version: version(tags?.[tag]) })),
      ...Object.entries(removed ?? {}).map(([tag, json]) => ({ tag, present: false, version: version(json) })),
    ],
  };
}

/** Title `title` as written in the file and the journal: versions only where they are not zero. */
function toJson(title: StoredTitle): StoredJson {
  const json: StoredJson = { name: title.name, tags: title.tags };
  const versionJson = (version: Version): VersionJson => [version.counter, version.replica];
  const versions: NonNullable<StoredJson["versions"]> = {};
  if (title.nameVersion.counter > 0) versions.name = versionJson(title.nameVersion);
  for (const { tag, present, version } of title.tagStates.values()) {
    if (version.counter === 0) continue;
    const field = present ? "tags" : "removed";
    (versions[field] ??= {})[tag] = versionJson(version);
  }
  if (Object.keys(versions).length > 0) json.versions = versions;
  return json;
}

/** A title in memory. */
interface StoredTitle {
  name: string;
  nameVersion: Version;
  /** Tag search key -> the tag's state, removed tags included. */
  tagStates: Map<string, TagState>;
  /** The present tags, in the order they were added (those added together in code-point order). */
  tags: string[];
  /** Where the title is in the arrays of the name search. */
  position: number;
}

/**
 * The catalog's titles, searchable by name and by tags, persisted on every
 * change. Titles are added, edited and merged from other replicas, never
 * removed. Every change is numbered, so that a replica can ask for the
 * changes after the last one it has ({@linkcode changesSince}).
 */
export class CatalogDatabase {
  /** The JSON file. */
  readonly path: string;
  readonly #journalPath: string;
  /** This replica's id, in the versions of its edits. */
  readonly replica: string;
  readonly #logger: Logger;
  readonly #titles = new Map<string, StoredTitle>();
  /** Title ids by position, the position of their names in the name index. */
  readonly #ids: string[] = [];
  readonly #names = new NameIndex();
  readonly #tags = new TagIndex();
  /** The Lamport clock: the greatest version counter seen, in an edit here or from another replica. */
  #clock = 0;
  /** Title id -> the number of its latest change, ordered by that number (a changed title moves to the end). */
  readonly #changes = new Map<string, number>();
  #lastChange = 0;
  /** Lines waiting to be appended to the journal, each with its caller's acknowledgement. */
  #waiting: { line: string; done: () => void; failed: (error: unknown) => void }[] = [];
  /** The loop writing the waiting lines, while it runs. */
  #writing: Promise<void> | undefined;
  #journal: Deno.FsFile | undefined;
  #journalLines = 0;
  /** A failed append may have left a torn line: the next write rewrites the JSON file instead. */
  #mustCompact = false;

  private constructor(path: string, logger: Logger, replica: string) {
    this.path = path;
    this.#journalPath = `${path}.journal`;
    this.#logger = logger;
    this.replica = replica;
  }

  /**
   * Loads the database at `path` (missing: an empty catalog, created on the
   * first change), replays its journal and folds the journal into it.
   *
   * @param replica the id that versions this replica's edits (unique among replicas; a new one at every start is fine)
   * @throws Error naming the file and the problem if either file is corrupt (both are left untouched)
   */
  static async open(path: string, logger: Logger, replica: string = crypto.randomUUID()): Promise<CatalogDatabase> {
    const database = new CatalogDatabase(path, logger, replica);
    const stored = await readJsonFile(path) ?? {};
    if (!isObject(stored)) throw notACatalog(path, "it must be a JSON object of media id -> title");
    const titles = Object.entries(stored).map(([id, title]) => [id, parseTitle(path, id, title)] as const);
    const edits = await database.#readJournal();
    for (const [id, title] of titles) database.#put(id, title);
    for (const [id, title] of edits) database.#put(id, title);
    if (edits.length > 0 || database.#journalLines > 0) await database.#compact();
    return database;
  }

  /** How many titles there are. */
  get size(): number {
    return this.#titles.size;
  }

  /** Whether title `id` exists. */
  has(id: string): boolean {
    return this.#titles.has(id);
  }

  /** A copy of title `id`'s name and tags, or `undefined` if there is no such title. */
  info(id: string): TitleInfo | undefined {
    const title = this.#titles.get(id);
    return title && { name: title.name, tags: [...title.tags] };
  }

  /** Title `id` with its versions, removed tags included, or `undefined` if there is no such title. */
  versioned(id: string): VersionedTitle | undefined {
    const title = this.#titles.get(id);
    return title && { name: title.name, nameVersion: title.nameVersion, tags: [...title.tagStates.values()] };
  }

  /**
   * Adds title `id` named `name` with no tags, unless it exists already (its
   * name is kept). The name has version zero: any rename, on any replica,
   * replaces it. Resolves to whether it was new, once that is on disk.
   */
  async addTitle(id: string, name: string): Promise<boolean> {
    if (this.#titles.has(id)) return false;
    this.#put(id, { name, nameVersion: VERSION_ZERO, tags: [] });
    await this.#save(id);
    return true;
  }

  /** Renames title `id` (which must exist); resolves once that is on disk. */
  rename(id: string, name: string): Promise<void> {
    const title = this.#title(id);
    this.#setName(title, name, this.#stamp());
    return this.#changed(id);
  }

  /**
   * Adds `tags` to title `id` (which must exist), except those it has already
   * (compared as search keys) and empty ones; resolves once that is on disk.
   */
  addTags(id: string, tags: string[]): Promise<void> {
    const title = this.#title(id);
    const states = new Map(title.tagStates);
    let version: Version | undefined;
    for (const tag of tags) {
      const key = searchKey(tag);
      if (tag === "" || states.get(key)?.present) continue;
      states.set(key, { tag, present: true, version: version ??= this.#stamp() });
    }
    this.#setTags(id, title, states);
    return this.#changed(id);
  }

  /** Removes `tags` (compared as search keys) from title `id` (which must exist); resolves once that is on disk. */
  removeTags(id: string, tags: string[]): Promise<void> {
    const title = this.#title(id);
    const states = new Map(title.tagStates);
    let version: Version | undefined;
    for (const key of new Set(tags.map(searchKey))) {
      const state = states.get(key);
      if (state?.present) states.set(key, { tag: state.tag, present: false, version: version ??= this.#stamp() });
    }
    this.#setTags(id, title, states);
    return this.#changed(id);
  }

  /**
   * Merges `remote`, title `id` as another replica has it: the name and each
   * tag take whichever state has the greater version (a title not known here
   * is added). Merging the same state again, or older ones, changes nothing;
   * merges commute, so replicas that merged the same states in any order hold
   * the same title. Resolves to whether anything changed, once that is on disk.
   */
  async merge(id: string, remote: VersionedTitle): Promise<boolean> {
    this.#observe(remote);
    const title = this.#titles.get(id);
    if (!title) {
      this.#put(id, remote);
      await this.#save(id);
      return true;
    }
    let changed = false;
    if (nameWins(remote, title)) {
      this.#setName(title, remote.name, remote.nameVersion);
      changed = true;
    }
    const states = new Map(title.tagStates);
    for (const state of remote.tags) {
      const key = searchKey(state.tag);
      const known = states.get(key);
      if (state.tag === "" || (known && !tagWins(state, known))) continue;
      states.set(key, state);
      changed = true;
    }
    if (!changed) return false;
    this.#setTags(id, title, states);
    await this.#changed(id);
    return true;
  }

  /** The number of the latest change (0 before any). */
  get lastChange(): number {
    return this.#lastChange;
  }

  /**
   * The titles changed after change number `after` (all of them for 0),
   * oldest change first, until about `maxBytes` of them (at least one);
   * `last` is the number of the last change returned, and `complete` whether
   * that is the latest change.
   */
  changesSince(after: number, maxBytes: number): {
    last: number;
    titles: [string, VersionedTitle][];
    complete: boolean;
  } {
    const titles: [string, VersionedTitle][] = [];
    let [bytes, last] = [0, after];
    for (const [id, change] of this.#changes) {
      // The map is in change order: skip the changes the caller has.
      if (change <= after) continue;
      if (titles.length > 0 && bytes >= maxBytes) return { last, titles, complete: false };
      const title = this.versioned(id)!;
      titles.push([id, title]);
      bytes += id.length + title.name.length + 64 + title.tags.reduce((sum, { tag }) => sum + tag.length + 64, 0);
      last = change;
    }
    return { last: Math.max(last, this.#lastChange), titles, complete: true };
  }

  /** Ids of the titles whose name equals (`exact`) or contains `name`, compared as search keys. */
  findByName(name: string, exact: boolean): string[] {
    const key = searchKey(name);
    const positions = exact ? this.#names.findExact(key) : this.#names.findContaining(key);
    return positions.map((position) => this.#ids[position]);
  }

  /** Ids of the titles that have every one (`all`) or at least one of `tags`; none for no tags. */
  findByTags(tags: string[], all: boolean): string[] {
    return this.#tags.find(tags.map(searchKey), all);
  }

  /** Writes what is pending, folds the journal into the JSON file and closes it (at shutdown). */
  async close(): Promise<void> {
    await this.#writing;
    if (this.#journalLines > 0 || this.#mustCompact) await this.#compact();
  }

  #title(id: string): StoredTitle {
    const title = this.#titles.get(id);
    if (!title) throw new RangeError(`no title ${id}`);
    return title;
  }

  /** The version of an edit made now, here: newer than every version seen so far. */
  #stamp(): Version {
    return { counter: ++this.#clock, replica: this.replica };
  }

  /** Moves the Lamport clock past the versions of `title` (loaded, or from another replica). */
  #observe(title: VersionedTitle): void {
    this.#clock = Math.max(this.#clock, title.nameVersion.counter);
    for (const { version } of title.tags) this.#clock = Math.max(this.#clock, version.counter);
  }

  /** Sets title `id` to `title` in memory, indexes included (loading and adding). */
  #put(id: string, title: VersionedTitle): void {
    this.#observe(title);
    let known = this.#titles.get(id);
    if (known) {
      // A later journal line replaces the title.
      this.#setName(known, title.name, title.nameVersion);
    } else {
      known = { name: title.name, nameVersion: title.nameVersion, tagStates: new Map(), tags: [], position: -1 };
      known.position = this.#names.add(searchKey(title.name));
      this.#ids.push(id);
      this.#titles.set(id, known);
    }
    const states = new Map<string, TagState>();
    for (const state of title.tags) {
      const key = searchKey(state.tag);
      const other = states.get(key);
      if (state.tag !== "" && (!other || tagWins(state, other))) states.set(key, state);
    }
    this.#setTags(id, known, states);
    this.#changes.delete(id);
    this.#changes.set(id, ++this.#lastChange);
  }

  #setName(title: StoredTitle, name: string, version: Version): void {
    title.name = name;
    title.nameVersion = version;
    this.#names.set(title.position, searchKey(name));
  }

  /** Gives title `id` the tags `states`, and brings the tag index up to date. */
  #setTags(id: string, title: StoredTitle, states: Map<string, TagState>): void {
    for (const [key, { present }] of title.tagStates) if (present) this.#tags.delete(id, key);
    title.tagStates = states;
    const present = [...states].filter(([, state]) => state.present);
    // One order on every replica: the order of the edits that added them.
    present.sort(([, a], [, b]) => compareVersions(a.version, b.version) || compareText(a.tag, b.tag));
    title.tags = present.map(([, { tag }]) => tag);
    for (const [key] of present) this.#tags.add(id, key);
  }

  /** Title `id` changed in memory: it gets the next change number; resolves once it is on disk. */
  #changed(id: string): Promise<void> {
    this.#changes.delete(id);
    this.#changes.set(id, ++this.#lastChange);
    return this.#save(id);
  }

  /** Queues title `id`'s current state for the journal; resolves once it is on disk. */
  #save(id: string): Promise<void> {
    const line = JSON.stringify([id, toJson(this.#title(id))]) + "\n";
    return new Promise((done, failed) => {
      this.#waiting.push({ line, done, failed });
      this.#writing ??= this.#writeWaiting();
    });
  }

  /** Writes the waiting lines in batches, one batch at a time, until none is left. */
  async #writeWaiting(): Promise<void> {
    while (this.#waiting.length > 0) {
      const batch = this.#waiting;
      this.#waiting = [];
      try {
        // The JSON file is rewritten from memory, which holds the batch's edits too.
        if (this.#mustCompact) await this.#compact();
        else await this.#append(batch.map((entry) => entry.line));
        for (const entry of batch) entry.done();
      } catch (error) {
        this.#mustCompact = true;
        for (const entry of batch) entry.failed(error);
      }
      if (this.#journalLines >= Math.max(MIN_LINES_BEFORE_COMPACTION, this.#titles.size)) {
        await this.#compact().catch((error) =>
          this.#logger.error(`cannot rewrite ${this.path}: ${describeError(error)}`)
        );
      }
    }
    this.#writing = undefined;
  }

  /** Appends `lines` (each ending in a newline) to the journal in one write, and syncs it to disk. */
  async #append(lines: string[]): Promise<void> {
    this.#journal ??= await Deno.open(this.#journalPath, { append: true, create: true });
    let bytes = new TextEncoder().encode(lines.join(""));
    while (bytes.length > 0) bytes = bytes.subarray(await this.#journal.write(bytes));
    await this.#journal.syncData();
    this.#journalLines += lines.length;
  }

  /**
   * Rewrites the JSON file atomically from memory, then removes the journal.
   * A crash in between replays the journal over the new file at the next
   * start, which yields the same titles.
   */
  async #compact(): Promise<void> {
    const lines = this.#ids.map((id) => `  ${JSON.stringify(id)}: ${JSON.stringify(toJson(this.#titles.get(id)!))}`);
    await writeTextFileAtomic(this.path, lines.length === 0 ? "{}\n" : `{\n${lines.join(",\n")}\n}\n`);
    this.#journal?.close();
    this.#journal = undefined;
    await Deno.remove(this.#journalPath).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
    this.#journalLines = 0;
    this.#mustCompact = false;
  }

  /** The edits in the journal, in order; a torn last line (a crash while appending) is left out. */
  async #readJournal(): Promise<[string, VersionedTitle][]> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.#journalPath);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return [];
      throw error;
    }
    const lines = text.split("\n");
    // The text after the last newline is empty, or a line whose append never completed, hence never acknowledged.
    const torn = lines.pop()!;
    if (torn !== "") this.#logger.warn(`${this.#journalPath}: ignoring its torn last line (an unacknowledged edit)`);
    this.#journalLines = lines.length + (torn === "" ? 0 : 1);
    return lines.map((line, index) => {
      let edit: unknown;
      try {
        edit = JSON.parse(line);
      } catch (error) {
        throw new CorruptFileError(this.#journalPath, new Error(`line ${index + 1}: ${(error as Error).message}`));
      }
      if (!Array.isArray(edit) || edit.length !== 2 || typeof edit[0] !== "string") {
        throw notACatalog(this.#journalPath, `line ${index + 1} must be ["<media id>", {"name": ..., "tags": [...]}]`);
      }
      return [edit[0], parseTitle(this.#journalPath, edit[0], edit[1])];
    });
  }
}
