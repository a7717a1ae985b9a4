/**
 * The catalog's titles as JSON, in its database file and journal, checked
 * field by field on the way in.
 *
 * The file is one object, media id -> `{"name": string, "tags": [string, ...]}`,
 * one title per line. An edited title also has `"versions": {"name": [7,
 * "<replica>"], "tags": {"Drama": [5, "<replica>"]}, "removed": {"old": [6,
 * "<replica>"]}}` (see catalog_versions.ts); a missing version is version
 * zero, so a file written before versions existed loads as a catalog nobody
 * has edited yet.
 *
 * A journal line is one change (catalog_versions.ts): what it set, not the
 * whole title, `{"id": "<id>", "name": ["Title", 7, "<replica>"], "tags":
 * [["Drama", 8, "<replica>"], ...], "removed": [["old", 9, "<replica>"], ...]}`,
 * each field but `id` only when the change sets it. Journals written before
 * changes were recorded hold whole titles, `["<id>", <title>]`, one replacing
 * the title; both kinds are read.
 *
 * @module
 */
import {
  type TagState,
  type TitleChange,
  type Version,
  VERSION_ZERO,
  type VersionedTitle,
} from "./catalog_versions.ts";

/** A title as written in the file and the journal. */
export interface TitleJson {
  name: string;
  tags: string[];
  versions?: { name?: VersionJson; tags?: Record<string, VersionJson>; removed?: Record<string, VersionJson> };
}

/** A version as written in the file: `[counter, "replica"]`. */
type VersionJson = [number, string];

/** The error for a file (or journal) that is JSON but not a catalog. */
export function notACatalog(path: string, problem: string): Error {
  return new Error(`${path} is not a catalog database (${problem}); fix or remove it, it was left untouched`);
}

/** A plain JSON object (not an array, not null). */
export function isObject(value: unknown): value is Record<string, unknown> {
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

/** Whether `title` has only fields of a title, `name` and `tags` among them (a loop: no array made per title). */
function hasTitleFields(title: Record<string, unknown>): boolean {
  let fields = 0;
  for (const field in title) {
    if (field !== "name" && field !== "tags" && field !== "versions") return false;
    fields++;
  }
  return fields >= 2 && "name" in title && "tags" in title;
}

/** The tags of a title without versions: present, version zero. */
function unversionedTags(tags: string[]): TagState[] {
  const states = new Array<TagState>(tags.length);
  for (let i = 0; i < tags.length; i++) states[i] = { tag: tags[i], present: true, version: VERSION_ZERO };
  return states;
}

/** Whether every element of `list` is a string (a loop: no function made per title). */
function allStrings(list: unknown[]): boolean {
  for (let i = 0; i < list.length; i++) if (typeof list[i] !== "string") return false;
  return true;
}

/**
 * Checks `value` as title `id` of the file or journal at `path`, making
 * nothing for a title without versions (most of a file): `undefined` says
 * that `value` itself is one, `{"name": string, "tags": [string, ...]}` with
 * every tag present at version zero (see {@linkcode parseTitle}). A title
 * with versions is read whole.
 *
 * @throws Error naming the file, the title and what is wrong
 */
export function checkTitle(path: string, id: string, value: unknown): VersionedTitle | undefined {
  const valid = isObject(value) && hasTitleFields(value) && typeof value.name === "string" &&
    Array.isArray(value.tags) && allStrings(value.tags);
  if (!valid) {
    throw notACatalog(
      path,
      `title ${JSON.stringify(id)} must be {"name": string, "tags": [string, ...]} (and "versions" once edited) ` +
        "and nothing else",
    );
  }
  const versions = value.versions;
  if (versions === undefined) return undefined;
  const { name, tags } = value as unknown as TitleJson;
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
  const { name: nameJson, tags: tagsJson, removed } = versions as NonNullable<TitleJson["versions"]>;
  const version = (json: VersionJson | undefined) => json ? { counter: json[0], replica: json[1] } : VERSION_ZERO;
  return {
    name,
    nameVersion: version(nameJson),
    tags: [
      // Own entries only: a tag may be named like a property every object has ("constructor", "__proto__").
      ...tags.map((tag) => ({
        tag,
        present: true,
        version: version(tagsJson && Object.hasOwn(tagsJson, tag) ? tagsJson[tag] : undefined),
      })),
      ...Object.entries(removed ?? {}).map(([tag, json]) => ({ tag, present: false, version: version(json) })),
    ],
  };
}

/**
 * Reads `value` as title `id` of the file or journal at `path`, checking it
 * is one.
 *
 * @throws Error naming the file, the title and what is wrong
 */
export function parseTitle(path: string, id: string, value: unknown): VersionedTitle {
  return checkTitle(path, id, value) ?? plainTitle(value as TitleJson);
}

/** A title without versions as the file has it (checked by {@linkcode checkTitle}), with its versions: all zero. */
export function plainTitle({ name, tags }: TitleJson): VersionedTitle {
  return { name, nameVersion: VERSION_ZERO, tags: unversionedTags(tags) };
}

/** A journal line: a change to title `id`, or (journals of before changes were recorded) its whole new state. */
export type JournalEntry = { id: string; change: TitleChange } | { id: string; title: VersionedTitle };

/** A tag state of a change as written: `["tag", counter, "replica"]`. */
type TagChangeJson = [string, number, string];

/** A change as a journal line holds it. */
export interface ChangeJson {
  id: string;
  name?: [string, number, string];
  tags?: TagChangeJson[];
  removed?: TagChangeJson[];
}

function isTagChangeJson(value: unknown): value is TagChangeJson {
  return Array.isArray(value) && value.length === 3 && typeof value[0] === "string" &&
    isVersionJson(value.slice(1));
}

/** Whether `value` is a list of tag changes, or absent. */
function isTagChangesJson(value: unknown): value is TagChangeJson[] | undefined {
  return value === undefined || (Array.isArray(value) && value.every(isTagChangeJson));
}

/**
 * Reads a journal line (already parsed): a change, or a whole title as older
 * journals have (`["<id>", <title>]`).
 *
 * @param line the line's number, for the error
 * @throws Error naming the journal, the line and what is wrong
 */
export function parseJournalEntry(path: string, line: number, entry: unknown): JournalEntry {
  if (Array.isArray(entry) && entry.length === 2 && typeof entry[0] === "string") {
    return { id: entry[0], title: parseTitle(path, entry[0], entry[1]) };
  }
  const valid = isObject(entry) && typeof entry.id === "string" &&
    (entry.name === undefined || isTagChangeJson(entry.name)) && isTagChangesJson(entry.tags) &&
    isTagChangesJson(entry.removed) && Object.keys(entry).every((field) => CHANGE_FIELDS.has(field));
  if (!valid) {
    throw notACatalog(
      path,
      `line ${line} must be {"id": "<media id>", "name": ["Title", counter, "replica"], ` +
        `"tags": [["tag", counter, "replica"], ...], "removed": [...]} (or, from older journals, ` +
        `["<media id>", {"name": ..., "tags": [...]}])`,
    );
  }
  const { id, name, tags, removed } = entry as unknown as ChangeJson;
  const version = (counter: number, replica: string) => counter === 0 ? VERSION_ZERO : { counter, replica };
  const states = (list: TagChangeJson[] | undefined, present: boolean) =>
    (list ?? []).map(([tag, counter, replica]) => ({ tag, present, version: version(counter, replica) }));
  const change: TitleChange = { tags: [...states(tags, true), ...states(removed, false)] };
  if (name) [change.name, change.nameVersion] = [name[0], version(name[1], name[2])];
  return { id, change };
}

const CHANGE_FIELDS: ReadonlySet<string> = new Set(["id", "name", "tags", "removed"]);

/** Change `change` of title `id` as a journal line holds it. */
export function changeJson(id: string, change: TitleChange): ChangeJson {
  const json: ChangeJson = { id };
  const version = ({ counter, replica }: Version): [number, string] => [counter, replica];
  if (change.name !== undefined) json.name = [change.name, ...version(change.nameVersion ?? VERSION_ZERO)];
  for (const { tag, present, version: tagVersion } of change.tags) {
    (json[present ? "tags" : "removed"] ??= []).push([tag, ...version(tagVersion)]);
  }
  return json;
}

/** A title as written in the file and the journal: present tags in `tags`, versions only where they are not zero. */
export function titleJson(name: string, nameVersion: Version, tags: string[], states: Iterable<TagState>): TitleJson {
  const json: TitleJson = { name, tags };
  const versionJson = (version: Version): VersionJson => [version.counter, version.replica];
  const versions: NonNullable<TitleJson["versions"]> = {};
  if (nameVersion.counter > 0) versions.name = versionJson(nameVersion);
  for (const { tag, present, version } of states) {
    if (version.counter === 0) continue;
    const field = present ? "tags" : "removed";
    // Without a prototype, a tag named "__proto__" is an entry like any other, not the object's prototype.
    (versions[field] ??= Object.create(null) as Record<string, VersionJson>)[tag] = versionJson(version);
  }
  if (Object.keys(versions).length > 0) json.versions = versions;
  return json;
}
