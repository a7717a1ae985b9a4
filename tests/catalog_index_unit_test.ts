/**
 * The search indexes answer as a plain scan of every title does (the code
 * they replaced), on random Unicode names and tags under random edits. Pure
 * code: no processes, no files.
 *
 * @module
 */
import assert from "node:assert/strict";
import { NameIndex, TagIndex } from "../catalog_index.ts";
import { searchKey } from "../catalog_versions.ts";

/** A small deterministic generator (mulberry32), so that a failure repeats. */
function randomGenerator(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Pieces whose case folding or normalization is tricky, and a few plain ones that make repeats likely. */
const PIECES = [
  "a",
  "b",
  "ab",
  "aba",
  "río",
  "RÍO",
  "ri\u0301o",
  "straße",
  "STRASSE",
  "ß",
  "ẞ",
  "İ",
  "ı",
  "i",
  "I",
  "Σ",
  "σ",
  "ς",
  "ﬁ",
  "FI",
  "ǅ",
  "😀",
  "\u{1f600}x",
  " ",
  "-",
  "7",
  "77",
  "noche",
  "NOCHE",
  "ñ",
  "n\u0303",
  "Ω",
  "Ω",
];

Deno.test("catalog index: name and tag searches answer as a scan does, through random names, renames, tag edits and late indexing", () => {
  const random = randomGenerator(14);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const text = (pieces: number) => Array.from({ length: pieces }, () => pick(PIECES)).join("");

  // The scan keeps each name's search key, as the code the index replaced did. The indexes ask for the keys of the
  // positions they do not hold yet, as the database's titles have them now.
  const titles: { name: string; key: string; tags: Set<string> }[] = [];
  const names = new NameIndex((position) => titles[position].key);
  const tagIndex = new TagIndex((position) => [...titles[position].tags]);
  const scanByName = (query: string, exact: boolean) => {
    const key = searchKey(query);
    return titles.flatMap((title, position) => (exact ? title.key === key : title.key.includes(key)) ? [position] : []);
  };
  const scanByTags = (query: string[], all: boolean) => {
    const keys = query.map(searchKey);
    if (keys.length === 0) return [];
    return titles.flatMap(({ tags }, position) =>
      (all ? keys.every((key) => tags.has(key)) : keys.some((key) => tags.has(key))) ? [position] : []
    );
  };

  for (let step = 0; step < 3000; step++) {
    const action = random();
    if (action < 0.4 || titles.length === 0) {
      const name = text(1 + Math.floor(random() * 6));
      // Some names wait for indexSome (as when loading), which comes now and then below.
      titles.push({ name, key: searchKey(name), tags: new Set() });
      assert.equal(names.add(random() < 0.7), titles.length - 1);
      assert.equal(tagIndex.add(random() < 0.7), titles.length - 1);
    } else if (action < 0.6) {
      const position = Math.floor(random() * titles.length);
      const title = titles[position];
      title.name = random() < 0.2 ? pick(titles).name : text(1 + step % 5);
      title.key = searchKey(title.name);
      names.set(position, title.key);
    } else if (action < 0.65) {
      names.indexSome(Math.floor(random() * 20));
      tagIndex.indexSome(Math.floor(random() * 20));
    } else if (action < 0.8) {
      const position = Math.floor(random() * titles.length);
      const key = searchKey(text(1));
      const { tags } = titles[position];
      const before = [...tags];
      if (random() < 0.6) tags.add(key);
      else tags.delete(key);
      tagIndex.set(position, before, [...tags]);
    } else {
      // A query: a piece of a name in another case, or random text, or a name whole.
      const name = pick(titles).name;
      const start = Math.floor(random() * name.length);
      const query = random() < 0.5
        ? name.slice(start, start + Math.floor(random() * 6)).toUpperCase()
        : text(1 + step % 3);
      assert.deepEqual(names.findContaining(searchKey(query)), scanByName(query, false), `contains ${query}`);
      assert.deepEqual(names.findExact(searchKey(query)), scanByName(query, true), `exact ${query}`);
      assert.deepEqual(names.findExact(searchKey(name)), scanByName(name, true), `exact ${name}`);
      const tagQuery = Array.from({ length: step % 4 }, () => text(1));
      for (const all of [false, true]) {
        assert.deepEqual(
          tagIndex.find(tagQuery.map(searchKey), all).sort((a, b) => a - b),
          scanByTags(tagQuery, all),
          `tags ${tagQuery}`,
        );
      }
    }
  }
  assert.ok(names.indexed < names.size, "the last queries had names waiting for the trigram lists");
  assert.equal(tagIndex.indexSome(0), false, "and titles whose tags were waiting for the tag index");
  assert.equal(names.indexSome(Infinity), true);
  assert.equal(tagIndex.indexSome(Infinity), true);
  for (let query = 0; query < 200; query++) {
    const tagQuery = Array.from({ length: 1 + query % 3 }, () => text(1));
    for (const all of [false, true]) {
      assert.deepEqual(
        tagIndex.find(tagQuery.map(searchKey), all).sort((a, b) => a - b),
        scanByTags(tagQuery, all),
        `tags ${tagQuery}, all indexed`,
      );
    }
  }
  for (const { name } of titles.slice(0, 200)) {
    const query = name.slice(1, 5);
    assert.deepEqual(
      names.findContaining(searchKey(query)),
      scanByName(query, false),
      `contains ${query}, all indexed`,
    );
  }
  assert.deepEqual(names.findContaining(""), titles.map((_, position) => position), "every name contains nothing");
});
