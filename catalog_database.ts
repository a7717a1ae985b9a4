/**
 * The MediaCatalog's database: every title's name and tags, held in memory
 * with the search indexes (catalog_index.ts), versioned so that replicas can
 * merge (catalog_versions.ts), and kept on disk so that no accepted edit is
 * lost: a JSON file (`IceFlix.Catalog.DatabaseFile`, format in
 * catalog_file.ts), and a journal beside it (json_journal.ts) where each
 * change (what it set, not the whole title) is synced before it is applied in
 * memory and acknowledged: an edit that cannot be made durable (a full disk)
 * is refused and changes nothing, so memory always equals the disk.
 *
 * The journal is folded into the JSON file at start-up, at a clean shutdown,
 * and whenever it has as many lines as there are titles (at least 1,000), so
 * after a clean stop the JSON file alone is the whole catalog. A file or
 * journal that does not parse stops the catalog with a clear error, and
 * neither is touched.
 *
 * Loading keeps each title of the file as `JSON.parse` made it, once checked:
 * its versioned form (search keys, tag states) is made when an edit or a
 * merge changes it, and its keys when the background fill of the indexes
 * reaches it. So a catalog of many titles is ready about when its file is
 * parsed, and holds little more than the parsed file.
 *
 * @module
 */
import { NameIndex, TagIndex } from "./catalog_index.ts";
import {
  changeJson,
  checkTitle,
  isObject,
  type JournalEntry,
  notACatalog,
  parseJournalEntry,
  plainTitle,
  type TitleJson,
  titleJson,
} from "./catalog_file.ts";
import {
  applyChange,
  changeOf,
  isEmptyChange,
  latestCounter,
  mergeTitles,
  presentTags,
  searchKey,
  type TagState,
  type TitleChange,
  type TitleInfo,
  type Version,
  VERSION_ZERO,
  type VersionedTitle,
  winningTags,
} from "./catalog_versions.ts";
import { readJsonFile, writeTextFileAtomic } from "./json_file.ts";
import { JsonJournal, readJournal } from "./json_journal.ts";
import {
  DEFAULT_TITLE_LIMITS,
  LimitError,
  nameRefusal,
  tagCountRefusal,
  tagRefusal,
  type TitleLimits,
} from "./catalog_limits.ts";
import { describeError, type Logger } from "./service.ts";

export { searchKey, type TitleInfo, type Version, type VersionedTitle } from "./catalog_versions.ts";

/** The journal is folded into the JSON file once it has this many lines, or as many as there are titles. */
const MIN_LINES_BEFORE_FOLDING = 1000;

/** Titles put into the name and tag indexes per turn of the event loop after loading (a few ms each). */
const TITLES_INDEXED_PER_TURN = 10_000;

/** A title in memory, once edited or merged (or read from the file with versions). */
interface StoredTitle {
  name: string;
  nameVersion: Version;
  /** Every tag's state, removed tags included, one per search key. */
  states: TagState[];
  /** The search keys of `states`, in the same order. */
  keys: string[];
  /** The present tags, in the order they were added (those added together in code-point order). */
  tags: string[];
  /** The search keys of `tags`. */
  presentKeys: readonly string[];
}

/** A title in memory: stored, or as the file had it (no versions; see `checkTitle`), until it changes. */
type TitleRecord = StoredTitle | TitleJson;

function isStored(record: TitleRecord): record is StoredTitle {
  return (record as StoredTitle).states !== undefined;
}

/** `title` as it is kept in memory. */
function storedTitle(title: VersionedTitle): StoredTitle {
  const { keys, states } = winningTags(title.tags);
  // Most titles have no removed tag: their keys are the present ones, shared rather than copied.
  const presentKeys = states.every((state) => state.present) ? keys : keys.filter((_, index) => states[index].present);
  return { name: title.name, nameVersion: title.nameVersion, states, keys, tags: presentTags(states), presentKeys };
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
  /** This replica's id, in the versions of its edits. */
  readonly replica: string;
  /** How big a title may grow: edits past these are refused (catalog_limits.ts). */
  readonly limits: TitleLimits;
  /** Title id -> its position. */
  readonly #positions = new Map<string, number>();
  /** Title ids by position. */
  readonly #ids: string[] = [];
  /** Titles by position. */
  readonly #records: TitleRecord[] = [];
  readonly #names = new NameIndex((position) => searchKey(this.#records[position].name));
  /** Tag search key -> the positions of the titles that have it. */
  readonly #tags = new TagIndex((position) => this.#presentKeys(position));
  /** The titles of the file, the first positions: title `p` has change number `p + 1` unless in `#changes`. */
  #loaded = 0;
  /** The Lamport clock: the greatest version counter seen, in an edit here or from another replica. */
  #clock = 0;
  /**
   * Title id -> the number of its latest change, ordered by that number (a changed title moves to the end), for
   * the titles changed since loading.
   */
  readonly #changes = new Map<string, number>();
  #lastChange = 0;
  readonly #journal: JsonJournal;
  /** Title id -> how many tags edits under way (not on disk yet) are adding to it. */
  readonly #addingTags = new Map<string, number>();
  /** The next turn of the background fill of the name indexes, while there is one. */
  #indexing: ReturnType<typeof setTimeout> | undefined;
  /** The fill of the indexes waits for this (see {@linkcode indexAfter}). */
  #indexAfter: Promise<unknown> = Promise.resolve();
  #closed = false;
  readonly #indexed = Promise.withResolvers<void>();

  private constructor(
    path: string,
    logger: Logger,
    replica: string,
    journal: { lines: number; bytes: number },
    limits: TitleLimits,
  ) {
    this.path = path;
    this.replica = replica;
    this.limits = limits;
    this.#journal = new JsonJournal(`${path}.journal`, {
      ...journal,
      rewrite: () => this.#rewrite(),
      foldAt: () => Math.max(MIN_LINES_BEFORE_FOLDING, this.size),
      logger,
    });
  }

  /**
   * Loads the database at `path` (missing: an empty catalog, created on the
   * first change), replays its journal and folds the journal into it.
   *
   * @param replica the id that versions this replica's edits (unique among replicas; a new one at every start is fine)
   * @param limits how big a title may grow through edits (titles already stored are loaded as they are)
   * @throws Error naming the file and the problem if either file is corrupt (both are left untouched)
   */
  static async open(
    path: string,
    logger: Logger,
    replica: string = crypto.randomUUID(),
    limits: TitleLimits = DEFAULT_TITLE_LIMITS,
  ): Promise<CatalogDatabase> {
    const stored = await readJsonFile(path);
    if (stored !== undefined && !isObject(stored)) {
      throw notACatalog(path, "it must be a JSON object of media id -> title");
    }
    const journal = await readJournal(`${path}.journal`, logger);
    const database = new CatalogDatabase(path, logger, replica, journal, limits);
    // Nothing is written before every title and edit has been read: a bad one throws with both files untouched.
    // The names and tags are indexed once the catalog answers (searches scan the rest until then).
    if (stored !== undefined) database.#load(path, stored);
    journal.values.forEach((entry, index) =>
      database.#replay(parseJournalEntry(database.#journal.path, index + 1, entry), index + 1)
    );
    if (journal.lines > 0) {
      // A full disk must not keep the catalog from serving: the journal stays, and new changes go after its lines.
      await database.#journal.fold().catch((error) =>
        logger.error(`cannot fold ${database.#journal.path} into ${path} now (${describeError(error)}); it is kept`)
      );
    }
    const loaded = performance.now();
    database.#indexLater(() => {
      // Only worth a line when it took several turns.
      if (database.size > TITLES_INDEXED_PER_TURN) {
        logger.info(
          `${database.size} names indexed for search ${
            Math.round(performance.now() - loaded)
          } ms after loading, with their tags`,
        );
      }
    });
    return database;
  }

  /** How many titles there are. */
  get size(): number {
    return this.#ids.length;
  }

  /** Whether title `id` exists. */
  has(id: string): boolean {
    return this.#positions.has(id);
  }

  /** A copy of title `id`'s name and tags, or `undefined` if there is no such title. */
  info(id: string): TitleInfo | undefined {
    const position = this.#positions.get(id);
    if (position === undefined) return undefined;
    const title = this.#stored(position);
    return { name: title.name, tags: [...title.tags] };
  }

  /** Title `id` with its versions, removed tags included, or `undefined` if there is no such title. */
  versioned(id: string): VersionedTitle | undefined {
    const position = this.#positions.get(id);
    if (position === undefined) return undefined;
    const title = this.#stored(position);
    return { name: title.name, nameVersion: title.nameVersion, tags: [...title.states] };
  }

  /**
   * Adds title `id` named `name` with no tags, unless it exists already (its
   * name is kept). The name has version zero: any rename, on any replica,
   * replaces it. Resolves to whether it was new, once that is on disk.
   *
   * @throws LimitError if the name is over the limit
   */
  async addTitle(id: string, name: string): Promise<boolean> {
    if (this.has(id)) return false;
    this.#refuse(nameRefusal(name, this.limits));
    await this.#commit(id, { name, nameVersion: VERSION_ZERO, tags: [] });
    return true;
  }

  /**
   * Renames title `id` (which must exist); resolves once that is on disk.
   *
   * @throws LimitError if the name is over the limit
   */
  async rename(id: string, name: string): Promise<void> {
    this.#title(id);
    this.#refuse(nameRefusal(name, this.limits));
    return await this.#commit(id, { name, nameVersion: this.#stamp(), tags: [] });
  }

  /**
   * Adds `tags` to title `id` (which must exist), except those it has already
   * (compared as search keys) and empty ones; resolves once that is on disk.
   *
   * @throws LimitError if a tag is over the limit, or the title would have too many (then none is added)
   */
  async addTags(id: string, tags: string[]): Promise<void> {
    const title = this.#title(id);
    for (const tag of tags) this.#refuse(tagRefusal(tag, this.limits));
    const added = new Map<string, TagState>();
    let version: Version | undefined;
    for (const tag of tags) {
      const key = searchKey(tag);
      if (tag === "" || added.has(key) || title.states[title.keys.indexOf(key)]?.present) continue;
      added.set(key, { tag, present: true, version: version ??= this.#stamp() });
    }
    if (added.size === 0) return;
    // Tags being added by edits not on disk yet count too: concurrent edits cannot pass the limit together.
    const pending = this.#addingTags.get(id) ?? 0;
    this.#refuse(tagCountRefusal(title.tags.length + pending + added.size, this.limits));
    this.#addingTags.set(id, pending + added.size);
    try {
      await this.#commit(id, { tags: [...added.values()] });
    } finally {
      const left = this.#addingTags.get(id)! - added.size;
      if (left > 0) this.#addingTags.set(id, left);
      else this.#addingTags.delete(id);
    }
  }

  /** Removes `tags` (compared as search keys) from title `id` (which must exist); resolves once that is on disk. */
  removeTags(id: string, tags: string[]): Promise<void> {
    const title = this.#title(id);
    const removed: TagState[] = [];
    let version: Version | undefined;
    for (const key of new Set(tags.map(searchKey))) {
      const state = title.states[title.keys.indexOf(key)];
      if (state?.present) removed.push({ tag: state.tag, present: false, version: version ??= this.#stamp() });
    }
    return this.#commit(id, { tags: removed });
  }

  /**
   * Merges `remote`, title `id` as another replica has it (see
   * `mergeTitles`; a title not known here is added). Resolves to whether
   * anything changed, once that is on disk.
   */
  async merge(id: string, remote: VersionedTitle): Promise<boolean> {
    this.#clock = Math.max(this.#clock, latestCounter(remote));
    const local = this.versioned(id);
    const merged = local ? mergeTitles(local, remote) : remote;
    if (!merged) return false;
    await this.#commit(id, changeOf(local, merged));
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
    /** Adds title `id` of change `change`, unless the answer is full. */
    const added = (id: string, change: number) => {
      if (titles.length > 0 && bytes >= maxBytes) return false;
      const title = this.versioned(id)!;
      titles.push([id, title]);
      bytes += id.length + title.name.length + 64 + title.tags.reduce((sum, { tag }) => sum + tag.length + 64, 0);
      last = change;
      return true;
    };
    // In change order: the titles of the file not changed since (position p is change p + 1), then the map's.
    for (let position = Math.max(after, 0); position < this.#loaded; position++) {
      const id = this.#ids[position];
      if (!this.#changes.has(id) && !added(id, position + 1)) return { last, titles, complete: false };
    }
    for (const [id, change] of this.#changes) {
      // Skip the changes the caller has.
      if (change > after && !added(id, change)) return { last, titles, complete: false };
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
    return this.#tags.find(tags.map(searchKey), all).map((position) => this.#ids[position]);
  }

  /** Writes what is pending, folds the journal into the JSON file and closes it (at shutdown). */
  close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#indexing);
    return this.#journal.close();
  }

  /**
   * Holds the background fill of the indexes until `until` resolves: a
   * service's start comes first (its turns of the fill, between the start's
   * calls, delayed it by the whole fill). Searches are right meanwhile.
   */
  indexAfter(until: Promise<unknown>): void {
    this.#indexAfter = until;
  }

  /** Resolves once every title is in the name and tag indexes (soon after loading; searches are right before too). */
  whenIndexed(): Promise<void> {
    return this.#indexed.promise;
  }

  /** The next part of the fill, at a later turn of the event loop and once {@linkcode indexAfter} allows it. */
  #indexLater(onDone: () => void): void {
    this.#indexing = setTimeout(() => this.#indexAfter.then(() => this.#closed || this.#indexSome(onDone)), 0);
  }

  /** Fills the name and tag indexes a part at a time, one part per turn of the event loop, until all titles are in. */
  #indexSome(onDone: () => void): void {
    const done = [this.#names.indexSome(TITLES_INDEXED_PER_TURN), this.#tags.indexSome(TITLES_INDEXED_PER_TURN)]
      .every(Boolean);
    if (!done) return this.#indexLater(onDone);
    this.#indexing = undefined;
    this.#indexed.resolve();
    onDone();
  }

  /** Throws `refusal` as a {@linkcode LimitError}, if there is one. */
  #refuse(refusal: string | undefined): void {
    if (refusal !== undefined) throw new LimitError(refusal);
  }

  #title(id: string): StoredTitle {
    const position = this.#positions.get(id);
    if (position === undefined) throw new RangeError(`no title ${id}`);
    return this.#stored(position);
  }

  /** Title `position` as stored (made for the moment from the file's form if it has not changed since loading). */
  #stored(position: number): StoredTitle {
    const record = this.#records[position];
    return isStored(record) ? record : storedTitle(plainTitle(record));
  }

  /**
   * The search keys of title `position`'s present tags; for a title as the
   * file had it (all present), those of its non-empty tags (a key twice
   * changes no search: the tag index holds sets).
   */
  #presentKeys(position: number): readonly string[] {
    const record = this.#records[position];
    if (isStored(record)) return record.presentKeys;
    const keys: string[] = [];
    for (const tag of record.tags) if (tag !== "") keys.push(searchKey(tag));
    return keys;
  }

  /**
   * Takes the titles of the file's object `stored`, checked one by one: those
   * without versions are kept as they are, the others stored whole.
   *
   * @throws Error naming the file and the title if one is not a title
   */
  #load(path: string, stored: Record<string, unknown>): void {
    // The order of for...in, which the catalog always had: each title's position and change number.
    const ids = Object.keys(stored);
    for (let position = 0; position < ids.length; position++) {
      const id = ids[position];
      const json = stored[id];
      const versioned = checkTitle(path, id, json);
      if (versioned) this.#clock = Math.max(this.#clock, latestCounter(versioned));
      this.#ids.push(id);
      this.#positions.set(id, position);
      this.#records.push(versioned ? storedTitle(versioned) : json as TitleJson);
      this.#names.add(false);
      this.#tags.add(false);
    }
    this.#loaded = this.#lastChange = ids.length;
  }

  /** The version of an edit made now, here: newer than every version seen so far. */
  #stamp(): Version {
    return { counter: ++this.#clock, replica: this.replica };
  }

  /**
   * Sets title `id` to `title` in memory, indexes included (loading, adding,
   * merging): its next change. While `loading`, a new name and its tags wait
   * to be indexed by {@linkcode #indexSome}.
   */
  #put(id: string, title: VersionedTitle, loading = false): void {
    this.#clock = Math.max(this.#clock, latestCounter(title));
    const stored = storedTitle(title);
    const position = this.#positions.get(id);
    if (position === undefined) {
      this.#positions.set(id, this.#ids.push(id) - 1);
      this.#records.push(stored);
      this.#names.add(!loading);
      this.#tags.add(!loading);
    } else {
      // A later journal line, or a merge, replaces the title.
      const before = this.#presentKeys(position);
      this.#records[position] = stored;
      this.#names.set(position, searchKey(stored.name));
      this.#tags.set(position, before, stored.presentKeys);
    }
    this.#changes.delete(id);
    this.#changes.set(id, ++this.#lastChange);
  }

  /**
   * Makes `change` to title `id`: appends it to the journal, and applies it
   * in memory once it is on disk (then it gets the next change number);
   * resolves then. If it cannot be made durable, memory stays as it was and
   * the promise rejects.
   */
  #commit(id: string, change: TitleChange): Promise<void> {
    if (isEmptyChange(change)) return Promise.resolve();
    return this.#journal.append(changeJson(id, change), () => {
      const merged = applyChange(this.versioned(id), change, this.limits.tagsPerTitle);
      if (merged) this.#put(id, merged);
    });
  }

  /** Replays journal line `line` while loading: a change is merged in, a whole title (older journals) replaces it. */
  #replay(entry: JournalEntry, line: number): void {
    if ("title" in entry) return this.#put(entry.id, entry.title, true);
    let merged: VersionedTitle | undefined;
    try {
      merged = applyChange(this.versioned(entry.id), entry.change, this.limits.tagsPerTitle);
    } catch (error) {
      throw notACatalog(this.#journal.path, `line ${line}, title ${JSON.stringify(entry.id)}: ${describeError(error)}`);
    }
    if (merged) this.#put(entry.id, merged, true);
  }

  #json(position: number): TitleJson {
    const title = this.#stored(position);
    return titleJson(title.name, title.nameVersion, title.tags, title.states);
  }

  /** Writes the JSON file, one title a line, from memory. */
  async #rewrite(): Promise<void> {
    const lines = this.#ids.map((id, position) => `  ${JSON.stringify(id)}: ${JSON.stringify(this.#json(position))}`);
    await writeTextFileAtomic(this.path, lines.length === 0 ? "{}\n" : `{\n${lines.join(",\n")}\n}\n`);
  }
}
