/**
 * Versions and merge of catalog titles, and their JSON form: pure code, no
 * processes, no files.
 *
 * @module
 */
import assert from "node:assert/strict";
import { parseJournalEntry, parseTitle, titleJson } from "../catalog_file.ts";
import {
  applyChange,
  mergeTitles,
  presentTags,
  searchKey,
  type TagState,
  VERSION_ZERO,
  type VersionedTitle,
  winningTags,
} from "../catalog_versions.ts";

const v = (counter: number, replica: string) => ({ counter, replica });
const tag = (name: string, present: boolean, counter = 0, replica = ""): TagState => ({
  tag: name,
  present,
  version: counter ? v(counter, replica) : VERSION_ZERO,
});
/** A title's states in one order, to compare merges. */
const canonical = (title: VersionedTitle | undefined) =>
  title && { ...title, tags: [...title.tags].sort((a, b) => searchKey(a.tag) < searchKey(b.tag) ? -1 : 1) };

Deno.test("catalog versions: the search key folds case and normalizes, with ASCII taken the short way alike", () => {
  assert.equal(searchKey("PELÍCULA"), searchKey("película"));
  assert.equal(searchKey("STRASSE"), searchKey("straße"));
  assert.equal(searchKey("ri\u0301o"), searchKey("río"));
  for (let code = 0; code < 128; code++) {
    const text = `a${String.fromCharCode(code)}Z`;
    assert.equal(searchKey(text), text.toUpperCase().toLowerCase().normalize("NFC"));
  }
});

Deno.test("catalog versions: merging commutes, is idempotent, the later version wins, removals are kept", () => {
  const base: VersionedTitle = { name: "Uno", nameVersion: VERSION_ZERO, tags: [tag("viejo", true)] };
  const a: VersionedTitle = {
    name: "Nombre de A",
    nameVersion: v(1, "a"),
    tags: [tag("viejo", false, 3, "a"), tag("de-a", true, 2, "a")],
  };
  const b: VersionedTitle = {
    name: "Nombre de B",
    nameVersion: v(1, "b"),
    tags: [tag("VIEJO", true, 2, "b"), tag("de-b", true, 2, "b")],
  };
  const ab = mergeTitles(mergeTitles(base, a)!, b)!;
  const ba = mergeTitles(mergeTitles(base, b)!, a)!;
  assert.deepEqual(canonical(ab), canonical(ba));
  assert.equal(ab.name, "Nombre de B", "equal counters: the greater replica id wins");
  assert.deepEqual(presentTags(ab.tags), ["de-a", "de-b"], "the removal (counter 3) is later than the re-add (2)");
  assert.equal(mergeTitles(ab, a), undefined, "merging a state again changes nothing");
  assert.equal(mergeTitles(ab, base), undefined, "merging an older state changes nothing");
});

Deno.test("catalog versions: one state per tag as a search key, the winner kept; empty tags dropped", () => {
  const { keys, states } = winningTags([
    tag("Drama", true),
    tag("", true),
    tag("drama", false, 4, "x"),
    tag("b", true),
  ]);
  assert.deepEqual(keys, ["drama", "b"]);
  assert.deepEqual(states, [tag("drama", false, 4, "x"), tag("b", true)]);
  // At version zero (files from before versions), present wins, then the greater text.
  assert.deepEqual(winningTags([tag("x", false), tag("X", true)]).states, [tag("X", true)]);
});

Deno.test("catalog file: titles round-trip through their JSON form; malformed ones are refused by name", () => {
  const title: VersionedTitle = {
    name: "Uno",
    nameVersion: v(7, "r"),
    tags: [tag("Drama", true, 5, "r"), tag("plain", true), tag("old", false, 6, "r")],
  };
  const json = titleJson(title.name, title.nameVersion, presentTags(title.tags), title.tags);
  assert.deepEqual(JSON.parse(JSON.stringify(json)), {
    name: "Uno",
    tags: ["plain", "Drama"],
    versions: { name: [7, "r"], tags: { Drama: [5, "r"] }, removed: { old: [6, "r"] } },
  });
  assert.deepEqual(canonical(parseTitle("f", "id", JSON.parse(JSON.stringify(json)))), canonical(title));
  // Tags named like the properties of every object round-trip too, versions and all.
  const odd: VersionedTitle = {
    name: "Tres",
    nameVersion: VERSION_ZERO,
    tags: [tag("__proto__", true, 3, "r"), tag("constructor", true), tag("toString", false, 4, "r")],
  };
  const oddText = JSON.stringify(titleJson(odd.name, odd.nameVersion, presentTags(odd.tags), odd.tags));
  assert.match(oddText, /"__proto__":\[3,"r"\]/);
  assert.deepEqual(canonical(parseTitle("f", "id", JSON.parse(oddText))), canonical(odd));
  assert.deepEqual(parseTitle("f", "id", { name: "Dos", tags: [] }), {
    name: "Dos",
    nameVersion: VERSION_ZERO,
    tags: [],
  });
  for (
    const bad of [
      null,
      [],
      { name: "x" },
      { name: 1, tags: [] },
      { name: "x", tags: [1] },
      { name: "x", tags: [], extra: 1 },
      { name: "x", tags: [], versions: { name: [-1, "r"] } },
      { name: "x", tags: [], versions: { other: {} } },
    ]
  ) {
    assert.throws(() => parseTitle("db.json", "the-id", bad), /db\.json is not a catalog database .*"the-id"/);
  }
  assert.throws(() => parseJournalEntry("db.json.journal", 3, { id: 1 }), /db\.json\.journal .*line 3 must be/);
});

Deno.test("catalog versions: a change merges in as an edit; removed tags past the bound are forgotten, oldest first", () => {
  let title: VersionedTitle | undefined = applyChange(
    undefined,
    { name: "Uno", nameVersion: VERSION_ZERO, tags: [] },
    3,
  );
  assert.throws(() => applyChange(undefined, { tags: [tag("x", true, 1, "r")] }, 3), RangeError);
  title = applyChange(title, { tags: [tag("keep", true, 1, "r")] }, 3);
  for (let i = 0; i < 5; i++) {
    title = applyChange(title, { tags: [tag(`t${i}`, true, 10 + 2 * i, "r")] }, 3);
    title = applyChange(title, { tags: [tag(`t${i}`, false, 11 + 2 * i, "r")] }, 3);
  }
  assert.deepEqual(title!.tags.filter((state) => !state.present).map((state) => state.tag).sort(), ["t2", "t3", "t4"]);
  assert.deepEqual(presentTags(title!.tags), ["keep"]);
  assert.equal(applyChange(title, { tags: [tag("t4", false, 19, "r")] }, 3), undefined, "a change again: nothing");
  const renamed = applyChange(title, { name: "Dos", nameVersion: v(30, "r"), tags: [] }, 3);
  assert.deepEqual([renamed!.name, renamed!.tags], ["Dos", title!.tags]);
});
