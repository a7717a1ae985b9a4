/**
 * How big a title may grow: the length of its name and of each tag, and how
 * many tags it has. One set of limits, read from the catalog's properties,
 * bounds what clients edit (catalog_database.ts refuses an edit past them)
 * and what other replicas send (catalog_replication.ts skips a title past
 * them), so a title one replica holds is one every replica takes.
 *
 * Why these defaults: a title's first name is its file name, and a Linux file
 * name has at most 255 bytes, so every video of a media folder fits in 255
 * characters; tags are labels ("ciencia ficción", "1999"), 64 characters hold
 * any real one; 50 tags per title is more than a catalog page shows. With
 * them a tile is at most about 10 KB on the wire (3 bytes of UTF-8 per
 * character at most), far below Ice's message limit, whatever the edits.
 *
 * Lengths are counted as JavaScript does, in UTF-16 code units: one per
 * character for every alphabet but emoji and rare scripts (two).
 *
 * @module
 */
import type { Ice } from "ice";

/** The limits on one title. */
export interface TitleLimits {
  /** Characters in a name (`IceFlix.Catalog.MaxNameLength`). */
  nameLength: number;
  /** Characters in a tag (`IceFlix.Catalog.MaxTagLength`). */
  tagLength: number;
  /**
   * Tags a title has at most (`IceFlix.Catalog.MaxTagsPerTitle`); it also
   * remembers at most as many removed ones (the oldest removals are forgotten
   * first), so it holds at most twice as many tag states.
   */
  tagsPerTitle: number;
}

/** The limits unless the properties say otherwise (the module's comment says why). */
export const DEFAULT_TITLE_LIMITS: Readonly<TitleLimits> = Object.freeze({
  nameLength: 255,
  tagLength: 64,
  tagsPerTitle: 50,
});

/** The property of each limit. */
const PROPERTIES: Readonly<Record<keyof TitleLimits, string>> = {
  nameLength: "IceFlix.Catalog.MaxNameLength",
  tagLength: "IceFlix.Catalog.MaxTagLength",
  tagsPerTitle: "IceFlix.Catalog.MaxTagsPerTitle",
};

/**
 * The limits `properties` set (defaults for those they do not).
 *
 * @throws Error naming the property if one is not a whole number of at least 1
 */
export function titleLimits(properties: Ice.Properties): TitleLimits {
  const limits = { ...DEFAULT_TITLE_LIMITS };
  for (const [field, name] of Object.entries(PROPERTIES) as [keyof TitleLimits, string][]) {
    const text = properties.getProperty(name).trim();
    if (text === "") continue;
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new Error(`property ${name} must be a whole number of at least 1, not "${text}"`);
    }
    limits[field] = value;
  }
  return limits;
}

/** An edit refused for a limit: its message says which, and the property that sets it. */
export class LimitError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "LimitError";
  }
}

/** Shows the start of an overlong text, so that a message stays one short line. */
function start(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}

/** Why `name` cannot be a title's name under `limits`, or `undefined` if it can. */
export function nameRefusal(name: string, limits: TitleLimits): string | undefined {
  if (name.length <= limits.nameLength) return undefined;
  return `the name ${start(name)} has ${name.length} characters; ` +
    `at most ${limits.nameLength} (${PROPERTIES.nameLength})`;
}

/** Why `tag` cannot be a tag under `limits`, or `undefined` if it can. */
export function tagRefusal(tag: string, limits: TitleLimits): string | undefined {
  if (tag.length <= limits.tagLength) return undefined;
  return `the tag ${start(tag)} has ${tag.length} characters; at most ${limits.tagLength} (${PROPERTIES.tagLength})`;
}

/** Why a title cannot have `count` tags under `limits`, or `undefined` if it can. */
export function tagCountRefusal(count: number, limits: TitleLimits): string | undefined {
  if (count <= limits.tagsPerTitle) return undefined;
  return `the title would have ${count} tags; at most ${limits.tagsPerTitle} (${PROPERTIES.tagsPerTitle})`;
}
