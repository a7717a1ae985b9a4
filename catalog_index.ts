/**
 * The catalog's search indexes: which titles' names equal or contain a
 * text, and which titles have a tag, found without reading every title.
 *
 * Titles are numbered by position (0, 1, ...), and answers list positions in
 * ascending order, the order a scan would find them. Names are indexed as
 * search keys (see `searchKey` in catalog_versions.ts): the caller passes keys.
 * An exact search is one map lookup. A substring search reads the posting list
 * of each of the text's trigrams (three consecutive UTF-16 code units) and
 * checks only the titles of the shortest list with `includes`: a name that
 * contains the text contains each of its trigrams, so no answer is missed,
 * and the check keeps hash collisions out. Texts shorter than a trigram are
 * scanned, and so are names not in the indexes yet: a catalog that loads many
 * titles answers at once and fills the indexes in the background. Until a
 * position is in them, its keys are asked of the caller's function whenever
 * needed (so a loading catalog computes no key before it is ready, and an
 * edit of a title not indexed yet has nothing to tell the index).
 *
 * @module
 */

/** log2 of the number of trigram buckets: 2^18 lists (1 MB of offsets) keep collisions rare for most alphabets. */
const BUCKET_BITS = 18;

/** The bucket of the trigram at `start` in `key` (which has at least `start + 3` code units). */
function bucketOf(key: string, start: number): number {
  const hash = Math.imul(key.charCodeAt(start), 0x9e3779b1) ^ Math.imul(key.charCodeAt(start + 1), 0x85ebca77) ^
    Math.imul(key.charCodeAt(start + 2), 0xc2b2ae3d);
  return Math.imul(hash ^ (hash >>> 15), 0x2c1b3c6d) >>> (32 - BUCKET_BITS);
}

/** The distinct buckets of the trigrams of `key`, in no particular order. */
function bucketsOf(key: string): Set<number> {
  const buckets = new Set<number>();
  for (let start = 0; start + 3 <= key.length; start++) buckets.add(bucketOf(key, start));
  return buckets;
}

/** The index of the first element of `list` (its first `length` elements, ascending) that is not less than `value`. */
function lowerBound(list: ArrayLike<number>, length: number, value: number): number {
  let [low, high] = [0, length];
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (list[middle] < value) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Name search keys by position, with an exact and a trigram index over them. */
export class NameIndex {
  /** The search key of each position's name, for the positions in the indexes (the first ones). */
  readonly #keys: string[] = [];
  /** The search key of a position's name now, for the positions not in the indexes yet. */
  readonly #keyOf: (position: number) => string;
  /** Search key -> the positions with that key, ascending (a lone position as a number: most names are unique). */
  readonly #exact = new Map<string, number | number[]>();
  /** Trigram bucket -> ascending positions whose key has a trigram in that bucket (the first `#lengths[b]`). */
  readonly #lists: (Int32Array | undefined)[] = new Array(1 << BUCKET_BITS);
  readonly #lengths = new Int32Array(1 << BUCKET_BITS);
  #size = 0;

  /** @param keyOf the search key of a position's name as it is now (asked until the position is indexed) */
  constructor(keyOf: (position: number) => string) {
    this.#keyOf = keyOf;
  }

  /** How many positions there are. */
  get size(): number {
    return this.#size;
  }

  /** How many positions are in the indexes (the first ones). */
  get indexed(): number {
    return this.#keys.length;
  }

  /**
   * Appends a position (its key comes from `keyOf`); returns it. It is
   * indexed now if `now` and every position before it is indexed;
   * otherwise by {@linkcode indexSome} (loading many names: ready sooner).
   */
  add(now = true): number {
    const position = this.#size++;
    if (now && position === this.#keys.length) this.indexSome(1);
    return position;
  }

  /** Puts up to `count` more positions into the indexes; returns whether every position is in them. */
  indexSome(count: number): boolean {
    const end = Math.min(this.#size, this.#keys.length + count);
    for (let position = this.#keys.length; position < end; position++) {
      const key = this.#keyOf(position);
      this.#keys.push(key);
      this.#addExact(key, position);
      for (let start = 0; start + 3 <= key.length; start++) {
        const bucket = bucketOf(key, start);
        const length = this.#lengths[bucket];
        // Positions arrive in ascending order: a repeated trigram of this key is the list's last element.
        if (length > 0 && this.#lists[bucket]![length - 1] === position) continue;
        this.#insert(bucket, length, position);
      }
    }
    return this.#keys.length === this.#size;
  }

  /** Gives position `position` the search key `key` (a rename; one not indexed yet has it from `keyOf` then). */
  set(position: number, key: string): void {
    if (position >= this.#keys.length) return;
    const old = this.#keys[position];
    if (old === key) return;
    this.#keys[position] = key;
    this.#removeExact(old, position);
    this.#addExact(key, position);
    const [before, after] = [bucketsOf(old), bucketsOf(key)];
    for (const bucket of before) {
      if (after.has(bucket)) continue;
      const [list, length] = [this.#lists[bucket]!, this.#lengths[bucket]];
      const at = lowerBound(list, length, position);
      list.copyWithin(at, at + 1, length);
      this.#lengths[bucket] = length - 1;
    }
    for (const bucket of after) {
      if (before.has(bucket)) continue;
      const list = this.#lists[bucket];
      this.#insert(bucket, list ? lowerBound(list, this.#lengths[bucket], position) : 0, position);
    }
  }

  /** The positions whose key is `key`, ascending. */
  findExact(key: string): number[] {
    const indexed = this.#exact.get(key);
    const found = indexed === undefined ? [] : typeof indexed === "number" ? [indexed] : [...indexed];
    // The positions not in the map yet come after all those in it.
    for (let position = this.#keys.length; position < this.#size; position++) {
      if (this.#keyOf(position) === key) found.push(position);
    }
    return found;
  }

  /** The positions whose key contains `key`, ascending. */
  findContaining(key: string): number[] {
    // Locals, not private fields, inside the loops: V8 runs them several times faster.
    const keys = this.#keys;
    const found: number[] = [];
    if (key.length < 3) {
      for (let position = 0; position < keys.length; position++) if (keys[position].includes(key)) found.push(position);
      return this.#scanNotIndexed(key, found);
    }
    let [shortest, shortestLength]: [Int32Array, number] = [new Int32Array(0), Infinity];
    for (let start = 0; start + 3 <= key.length && shortestLength > 0; start++) {
      const bucket = bucketOf(key, start);
      const length = this.#lengths[bucket];
      if (length < shortestLength) [shortest, shortestLength] = [this.#lists[bucket] ?? shortest, length];
    }
    for (let index = 0; index < shortestLength; index++) {
      const position = shortest[index];
      if (keys[position].includes(key)) found.push(position);
    }
    return this.#scanNotIndexed(key, found);
  }

  /** `found` with the positions not in the indexes yet whose key contains `key` (they come after all the others). */
  #scanNotIndexed(key: string, found: number[]): number[] {
    for (let position = this.#keys.length; position < this.#size; position++) {
      if (this.#keyOf(position).includes(key)) found.push(position);
    }
    return found;
  }

  /** Bytes the indexes hold beyond the keys themselves (posting lists with their spare room, and the offsets). */
  get indexBytes(): number {
    let bytes = this.#lengths.byteLength + this.#lists.length * 8;
    for (const list of this.#lists) bytes += list?.byteLength ?? 0;
    return bytes;
  }

  /** Inserts `position` at index `at` of bucket `bucket`'s list (of `length` elements), growing it if full. */
  #insert(bucket: number, at: number, position: number): void {
    const length = this.#lengths[bucket];
    let list = this.#lists[bucket];
    if (!list || list.length === length) {
      const grown = new Int32Array(Math.max(4, length * 2));
      if (list) grown.set(list);
      this.#lists[bucket] = list = grown;
    }
    list.copyWithin(at + 1, at, length);
    list[at] = position;
    this.#lengths[bucket] = length + 1;
  }

  #addExact(key: string, position: number): void {
    const known = this.#exact.get(key);
    if (known === undefined) this.#exact.set(key, position);
    else if (typeof known === "number") this.#exact.set(key, known < position ? [known, position] : [position, known]);
    else known.splice(lowerBound(known, known.length, position), 0, position);
  }

  #removeExact(key: string, position: number): void {
    const known = this.#exact.get(key)!;
    if (typeof known === "number") {
      this.#exact.delete(key);
      return;
    }
    known.splice(known.indexOf(position), 1);
    if (known.length === 1) this.#exact.set(key, known[0]);
  }
}

/**
 * Tag search key -> the positions of the titles that have the tag. Like the
 * name index, it may be filled after loading ({@linkcode indexSome}): the
 * positions not in it yet are scanned, their keys asked of `keysOf`. It
 * keeps no keys of its own per title (a million titles: a million arrays
 * less for the garbage collector to walk); an edit says what they were.
 */
export class TagIndex {
  readonly #byTag = new Map<string, Set<number>>();
  /** A position's present tags as search keys now. */
  readonly #source: (position: number) => readonly string[];
  #size = 0;
  /** The positions below this one are in the map. */
  #indexed = 0;

  /** @param keysOf the search keys of a position's present tags as they are now (asked until it is indexed) */
  constructor(keysOf: (position: number) => readonly string[]) {
    this.#source = keysOf;
  }

  /**
   * Appends a position (its keys come from `keysOf`); returns it. It is
   * indexed now if `now` and every position before it is indexed; otherwise
   * by {@linkcode indexSome}.
   */
  add(now = true): number {
    const position = this.#size++;
    if (now && position === this.#indexed) this.indexSome(1);
    return position;
  }

  /**
   * Title `position` had the tags with search keys `before` (what `keysOf`
   * said until now) and has those of `after` now (a position not indexed yet
   * has them from `keysOf` when it is).
   */
  set(position: number, before: readonly string[], after: readonly string[]): void {
    if (position >= this.#indexed) return;
    // Every tag of an edited title is put in again: it comes last in each of its tags' sets, as it always did.
    for (const key of before) this.#delete(position, key);
    for (const key of after) this.#add(position, key);
  }

  /** Puts up to `count` more positions into the map; returns whether every position is in it. */
  indexSome(count: number): boolean {
    const end = Math.min(this.#size, this.#indexed + count);
    for (let position = this.#indexed; position < end; position++) {
      for (const key of this.#source(position)) this.#add(position, key);
    }
    this.#indexed = Math.max(this.#indexed, end);
    return this.#indexed === this.#size;
  }

  /**
   * The positions of the titles that have every one (`all`) or at least one of
   * the tags with search keys `keys`; none for no keys.
   */
  find(keys: string[], all: boolean): number[] {
    const distinct = [...new Set(keys)];
    if (distinct.length === 0) return [];
    const sets = distinct.map((key) => this.#byTag.get(key) ?? new Set<number>());
    let found: number[];
    if (!all) {
      found = [...new Set(sets.flatMap((positions) => [...positions]))];
    } else {
      // Every title of the answer is in the smallest set: check only those against the others.
      sets.sort((a, b) => a.size - b.size);
      const [smallest, ...others] = sets;
      found = [...smallest].filter((position) => others.every((positions) => positions.has(position)));
    }
    // The positions not in the map yet come after all those in it.
    for (let position = this.#indexed; position < this.#size; position++) {
      const own = this.#source(position);
      if (all ? distinct.every((key) => own.includes(key)) : distinct.some((key) => own.includes(key))) {
        found.push(position);
      }
    }
    return found;
  }

  #add(position: number, key: string): void {
    let positions = this.#byTag.get(key);
    if (!positions) this.#byTag.set(key, positions = new Set());
    positions.add(position);
  }

  #delete(position: number, key: string): void {
    const positions = this.#byTag.get(key);
    positions?.delete(position);
    if (positions?.size === 0) this.#byTag.delete(key);
  }
}
