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
 * titles answers at once and fills the indexes in the background.
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
  /** The search key of each position's name. */
  readonly #keys: string[] = [];
  /** Search key -> the positions with that key, ascending (a lone position as a number: most names are unique). */
  readonly #exact = new Map<string, number | number[]>();
  /** Trigram bucket -> ascending positions whose key has a trigram in that bucket (the first `#lengths[b]`). */
  readonly #lists: (Int32Array | undefined)[] = new Array(1 << BUCKET_BITS);
  readonly #lengths = new Int32Array(1 << BUCKET_BITS);
  /** The positions below this one are in the map and the lists; the others are scanned until {@linkcode indexSome}. */
  #indexed = 0;

  /** How many positions there are. */
  get size(): number {
    return this.#keys.length;
  }

  /** How many positions are in the trigram lists (the first ones). */
  get indexed(): number {
    return this.#indexed;
  }

  /**
   * Appends a name with search key `key`; returns its position. It is
   * indexed now if `now` and every position before it is indexed;
   * otherwise by {@linkcode indexSome} (loading many names: ready sooner).
   */
  add(key: string, now = true): number {
    const position = this.#keys.push(key) - 1;
    if (now && position === this.#indexed) this.indexSome(1);
    return position;
  }

  /** Puts up to `count` more positions into the indexes; returns whether every position is in them. */
  indexSome(count: number): boolean {
    const end = Math.min(this.#keys.length, this.#indexed + count);
    for (let position = this.#indexed; position < end; position++) {
      const key = this.#keys[position];
      this.#addExact(key, position);
      for (let start = 0; start + 3 <= key.length; start++) {
        const bucket = bucketOf(key, start);
        const length = this.#lengths[bucket];
        // Positions arrive in ascending order: a repeated trigram of this key is the list's last element.
        if (length > 0 && this.#lists[bucket]![length - 1] === position) continue;
        this.#insert(bucket, length, position);
      }
    }
    this.#indexed = Math.max(this.#indexed, end);
    return this.#indexed === this.#keys.length;
  }

  /** Gives position `position` the search key `key` (a rename). */
  set(position: number, key: string): void {
    const old = this.#keys[position];
    if (old === key) return;
    this.#keys[position] = key;
    if (position >= this.#indexed) return;
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
    const keys = this.#keys;
    for (let position = this.#indexed; position < keys.length; position++) {
      if (keys[position] === key) found.push(position);
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
      return found;
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
    // The positions not in the lists yet come after all those in them.
    for (let position = this.#indexed; position < keys.length; position++) {
      if (keys[position].includes(key)) found.push(position);
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
 * positions not in it yet are scanned.
 */
export class TagIndex {
  readonly #byTag = new Map<string, Set<number>>();
  /** Each position's present tags, as search keys. */
  readonly #keysOf: (readonly string[])[] = [];
  /** The positions below this one are in the map; the others are scanned until {@linkcode indexSome}. */
  #indexed = 0;

  /**
   * Title `position` has (only) the tags with search keys `keys` now; a new
   * title is the next position. A new one is indexed now if `now` and every
   * position before it is indexed; otherwise by {@linkcode indexSome}.
   */
  set(position: number, keys: readonly string[], now = true): void {
    const old = this.#keysOf[position];
    this.#keysOf[position] = keys;
    if (position < this.#indexed) {
      // Every tag of an edited title is put in again: it comes last in each of its tags' sets, as it always did.
      for (const key of old) this.#delete(position, key);
      for (const key of keys) this.#add(position, key);
    } else if (now && position === this.#indexed && old === undefined) {
      this.indexSome(1);
    }
  }

  /** Puts up to `count` more positions into the map; returns whether every position is in it. */
  indexSome(count: number): boolean {
    const end = Math.min(this.#keysOf.length, this.#indexed + count);
    for (let position = this.#indexed; position < end; position++) {
      for (const key of this.#keysOf[position]) this.#add(position, key);
    }
    this.#indexed = Math.max(this.#indexed, end);
    return this.#indexed === this.#keysOf.length;
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
    const keysOf = this.#keysOf;
    for (let position = this.#indexed; position < keysOf.length; position++) {
      const own = keysOf[position];
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
