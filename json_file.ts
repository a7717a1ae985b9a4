/**
 * JSON files that are never torn and never silently replaced.
 *
 * Reading refuses a file that is not valid JSON (with the file name in the
 * error) instead of treating it as empty, so a corrupt file is never
 * overwritten by a service that started over it. Writing goes to a temporary
 * file in the same folder, flushed to disk, then renamed over the target, and
 * the folder is flushed too (the rename is an entry of the folder): after a
 * crash at any moment the file is either the old one or the new one, and once
 * the write has returned it is the new one, even after a power cut.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";

/** A JSON file that exists but cannot be parsed. */
export class CorruptFileError extends Error {
  constructor(path: string, cause: unknown) {
    super(`${path} is not valid JSON (${(cause as Error).message}); fix or remove it, it was left untouched`);
    this.name = "CorruptFileError";
  }
}

/**
 * Reads and parses the JSON file at `path`; `undefined` if there is no such
 * file. Throws {@linkcode CorruptFileError} if it is not valid JSON.
 */
export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CorruptFileError(path, error);
  }
}

/** How an atomic write creates the new file. */
export interface WriteOptions {
  /** Permission bits of the new file (before the umask); 0o644 unless given. */
  mode?: number;
}

/**
 * Flushes folder `path` to disk: the files created, renamed or removed in it
 * are there after a power cut (a file's own sync does not cover its name).
 */
export async function syncFolder(path: string): Promise<void> {
  using folder = await Deno.open(path, { read: true });
  await folder.sync();
}

/**
 * Replaces the file at `path` with `value` as JSON, atomically: written to a
 * temporary file beside it, synced to disk, then renamed over `path`, and the
 * folder synced.
 */
export async function writeJsonFileAtomic(path: string, value: unknown, options?: WriteOptions): Promise<void> {
  await writeTextFileAtomic(path, JSON.stringify(value, null, 2) + "\n", options);
}

/**
 * Replaces the file at `path` with `text`, atomically: written to a
 * temporary file beside it, synced to disk, then renamed over `path`, and the
 * folder synced; resolves once the new file is durable.
 */
export async function writeTextFileAtomic(path: string, text: string, options?: WriteOptions): Promise<void> {
  const temporary = join(dirname(path), `.${basename(path)}.${crypto.randomUUID()}.tmp`);
  try {
    await Deno.writeTextFile(temporary, text, { createNew: true, mode: options?.mode ?? 0o644 });
    // The data must be on disk before the rename makes it the file.
    const file = await Deno.open(temporary, { read: true });
    try {
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
  await syncFolder(dirname(path));
}
