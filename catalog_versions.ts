/**
 * Versioned titles and their merge: how catalog replicas that saw the same
 * edits, in any order, come to hold the same titles.
 *
 * A {@linkcode Version} is a Lamport counter and the id of the replica that
 * made the edit. A title's name and each of its tags carry the version of the
 * edit that last set them; a removed tag stays, marked removed, so that a
 * replica that missed the removal cannot bring it back. Version zero is older
 * than every edit: a title only announced by its provider, or loaded from a
 * file written before versions existed. {@linkcode mergeTitles} keeps, for the
 * name and for each tag, the state with the greater version.
 *
 * Names and tags are compared as search keys ({@linkcode searchKey}).
 *
 * @module
 */

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

/**
 * The form in which names and tags are compared: case-insensitive for every
 * script ("PELÍCULA" and "película", "STRASSE" and "straße"), locale-free, and
 * with composed and decomposed accents alike (NFC).
 */
export function searchKey(text: string): string {
  // ASCII text (most names) has one case mapping and is already in NFC: lower case alone is its key.
  // deno-lint-ignore no-control-regex
  if (/^[\x00-\x7f]*$/.test(text)) return text.toLowerCase();
  // Upper then lower case maps case variants to one form, as Unicode case folding does.
  return text.toUpperCase().toLowerCase().normalize("NFC");
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

/** Above this many tags, {@linkcode winningTags} finds a key's state through a map instead of a search. */
const LINEAR_TAGS = 8;

/**
 * The winning state of `states` for each search key, in the order the keys
 * first appear, with those keys; empty tags are left out. Equal states keep
 * the first.
 */
export function winningTags(states: readonly TagState[]): { keys: string[]; states: TagState[] } {
  const [keys, winners] = [[] as string[], [] as TagState[]];
  const indexOf = states.length > LINEAR_TAGS ? new Map<string, number>() : undefined;
  for (const state of states) {
    if (state.tag === "") continue;
    const key = searchKey(state.tag);
    const known = indexOf ? indexOf.get(key) ?? -1 : keys.indexOf(key);
    if (known < 0) {
      indexOf?.set(key, keys.length);
      keys.push(key);
      winners.push(state);
    } else if (tagWins(state, winners[known])) winners[known] = state;
  }
  return { keys, states: winners };
}

/** The present tags of `states`, in one order on every replica: the order of the edits that added them. */
export function presentTags(states: Iterable<TagState>): string[] {
  const present = [...states].filter((state) => state.present);
  present.sort((a, b) => compareVersions(a.version, b.version) || compareText(a.tag, b.tag));
  return present.map(({ tag }) => tag);
}

/**
 * `local` merged with `remote` (the same title as another replica has it):
 * the name and each tag take whichever state has the greater version; or
 * `undefined` if `remote` changes nothing. Merges commute and merging the same
 * state again changes nothing, so replicas that merged the same states in any
 * order hold the same title.
 */
export function mergeTitles(local: VersionedTitle, remote: VersionedTitle): VersionedTitle | undefined {
  const renamed = nameWins(remote, local);
  // Local states come first, so that where a remote one does not win, the local one is kept (the same object).
  const { states } = winningTags([...local.tags, ...remote.tags]);
  const known = new Set(local.tags);
  if (!renamed && states.every((state) => known.has(state))) return undefined;
  const name = renamed ? remote : local;
  return { name: name.name, nameVersion: name.nameVersion, tags: states };
}

/** The greatest version counter in `title`: a replica's Lamport clock moves past it. */
export function latestCounter(title: VersionedTitle): number {
  let counter = title.nameVersion.counter;
  for (const { version } of title.tags) counter = Math.max(counter, version.counter);
  return counter;
}

/**
 * What one change did to a title, as the journal records it: the name it
 * set, if it set one, and the tag states it set (one per search key).
 */
export interface TitleChange {
  name?: string;
  /** With `name`. */
  nameVersion?: Version;
  tags: TagState[];
}

/** Whether `change` sets nothing. */
export function isEmptyChange(change: TitleChange): boolean {
  return change.name === undefined && change.tags.length === 0;
}

/**
 * `title` with `change` merged in (a title that is not there yet, for a
 * change that names it), as {@linkcode mergeTitles} merges; `undefined` if it
 * changes nothing. Merging a change again changes nothing, so a journal
 * replayed over a file that already has some of its changes yields the same.
 * At most `maxRemoved` removed tags are remembered (see {@linkcode forgetOldRemovals}).
 *
 * @throws RangeError for a change of no title that sets no name
 */
export function applyChange(
  title: VersionedTitle | undefined,
  change: TitleChange,
  maxRemoved: number,
): VersionedTitle | undefined {
  const nameVersion = change.nameVersion ?? VERSION_ZERO;
  if (!title) {
    if (change.name === undefined) throw new RangeError("it changes the tags of a title that does not exist");
    return { name: change.name, nameVersion, tags: forgetOldRemovals(winningTags(change.tags).states, maxRemoved) };
  }
  const named = change.name === undefined ? title : { name: change.name, nameVersion };
  const merged = mergeTitles(title, { name: named.name, nameVersion: named.nameVersion, tags: change.tags });
  return merged && { ...merged, tags: forgetOldRemovals(merged.tags, maxRemoved) };
}

/**
 * `states` with at most `max` removed tags: the oldest removals beyond them
 * are forgotten, so that adding and removing tags cannot grow a title without
 * end. The rule depends only on the states, so replicas that hold the same
 * states keep the same ones; a replica that missed a removal that old could
 * bring that tag back.
 */
export function forgetOldRemovals(states: TagState[], max: number): TagState[] {
  const removed = states.filter((state) => !state.present);
  if (removed.length <= max) return states;
  removed.sort((a, b) => compareVersions(b.version, a.version) || compareText(a.tag, b.tag));
  const kept = new Set(removed.slice(0, max));
  return states.filter((state) => state.present || kept.has(state));
}

/** What `merged` (from {@linkcode mergeTitles}) changed in `local` (none: a new title), as a change. */
export function changeOf(local: VersionedTitle | undefined, merged: VersionedTitle): TitleChange {
  const known = new Set(local?.tags);
  const tags = merged.tags.filter((state) => !known.has(state));
  const renamed = !local || merged.name !== local.name || compareVersions(merged.nameVersion, local.nameVersion) !== 0;
  return renamed ? { name: merged.name, nameVersion: merged.nameVersion, tags } : { tags };
}
