/**
 * The catalog's titles as JSON, in its database file and journal, checked
 * field by field on the way in.
 *
 * The file is one object, media id -> `{"name": string, "tags": [string, ...]}`,
 * one title per line. An edited title also has `"versions": {"name": [7,
 * "<replica>"], "tags": {"Drama": [5, "<replica>"]}, "removed": {"old": [6,
 * "<replica>"]}}` (see catalog_versions.ts); a missing version is version
 * zero, so a file written before versions existed loads as a catalog nobody
 * has edited yet. A journal line is `["<id>", <title>]`.
 *
 * @module
 */
import { type TagState, type Version, VERSION_ZERO, type VersionedTitle } from "./catalog_versions.ts";

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

/**
 * Reads `value` as title `id` of the file or journal at `path`, checking it
 * is one.
 *
 * @throws Error naming the file, the title and what is wrong
 */
export function parseTitle(path: string, id: string, value: unknown): VersionedTitle {
  const valid = isObject(value) && hasTitleFields(value) && typeof value.name === "string" &&
    Array.isArray(value.tags) && value.tags.every((tag) => typeof tag === "string");
  if (!valid) {
    throw notACatalog(
      path,
      `title ${JSON.stringify(id)} must be {"name": string, "tags": [string, ...]} (and "versions" once edited) ` +
        "and nothing else",
    );
  }
  const { name, tags } = value as unknown as TitleJson;
  const versions = value.versions;
  if (versions === undefined) return { name, nameVersion: VERSION_ZERO, tags: unversionedTags(tags) };
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
      ...tags.map((tag) => ({ tag, present: true, version: version(tagsJson?.[tag]) })),
      ...Object.entries(removed ?? {}).map(([tag, json]) => ({ tag, present: false, version: version(json) })),
    ],
  };
}

/**
 * Reads a journal line (already parsed) as `[id, title]`.
 *
 * @param line the line's number, for the error
 * @throws Error naming the journal, the line and what is wrong
 */
export function parseJournalEntry(path: string, line: number, entry: unknown): [string, VersionedTitle] {
  if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== "string") {
    throw notACatalog(path, `line ${line} must be ["<media id>", {"name": ..., "tags": [...]}]`);
  }
  return [entry[0], parseTitle(path, entry[0], entry[1])];
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
    (versions[field] ??= {})[tag] = versionJson(version);
  }
  if (Object.keys(versions).length > 0) json.versions = versions;
  return json;
}
