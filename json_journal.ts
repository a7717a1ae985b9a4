/**
 * A write-ahead journal beside a JSON file, so that a change is durable
 * without rewriting the whole file.
 *
 * Each change is one JSON line appended to `<file>.journal` and synced to
 * disk (the folder too, when the append created the journal) before it is
 * applied: {@linkcode JsonJournal.append} takes the change's line and a
 * function that applies it to its owner's memory, and calls that function
 * only once the line is durable, so that memory never holds a change the disk
 * may lack. Changes that arrive while the journal is being synced go together
 * in the next append (group commit), in the order they were made. Folding
 * rewrites the JSON file atomically from its owner's memory (json_file.ts:
 * durable, folder included, when it returns), then removes the journal; a
 * crash in between replays the journal over the new file, which yields the
 * same state.
 *
 * An append that fails (a full disk) is not applied and its callers get the
 * error; what it may have written is cut off before the next append, so the
 * journal holds exactly the applied changes and a full disk costs no rewrite.
 * A crash can leave the last line half-written: that change was never
 * acknowledged, so {@linkcode readJournal} drops it. Any other line that does
 * not parse is a corrupt journal, refused with a clear error and left as it is.
 *
 * @module
 */
import { dirname } from "node:path";
import { CorruptFileError, syncFolder } from "./json_file.ts";
import { describeError, type Logger } from "./service.ts";

/** What a journal holds: its changes, in order, how many lines it has (a torn one included) and their length. */
export interface JournalContents {
  values: unknown[];
  lines: number;
  /** The bytes of the whole lines: anything after them is a torn line, cut off before the next append. */
  bytes: number;
}

/** The newline, as a byte. */
const NEWLINE = 0x0a;

/**
 * Reads the journal at `path` (none: no changes); a torn last line is left
 * out, with a warning.
 *
 * @throws CorruptFileError if any other line is not JSON (the file is left untouched)
 */
export async function readJournal(path: string, logger: Logger): Promise<JournalContents> {
  let data: Uint8Array;
  try {
    data = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { values: [], lines: 0, bytes: 0 };
    throw error;
  }
  // The bytes after the last newline are a line whose append never completed, hence never acknowledged.
  const bytes = data.lastIndexOf(NEWLINE) + 1;
  const torn = bytes < data.length;
  if (torn) logger.warn(`${path}: ignoring its torn last line (an unacknowledged edit)`);
  const lines = new TextDecoder().decode(data.subarray(0, bytes)).split("\n");
  lines.pop();
  const values = lines.map((line, index) => {
    try {
      return JSON.parse(line);
    } catch (error) {
      throw new CorruptFileError(path, new Error(`line ${index + 1}: ${(error as Error).message}`));
    }
  });
  return { values, lines: lines.length + (torn ? 1 : 0), bytes };
}

/** What a journal needs from the owner of its JSON file. */
export interface JournalOptions {
  /** What the journal at `path` holds already (from {@linkcode readJournal}): its lines, and the bytes of the whole ones. */
  lines: number;
  bytes: number;
  /** Rewrites the JSON file atomically from memory, which holds every change appended so far. */
  rewrite: () => Promise<void>;
  /** The journal is folded once it has this many lines. */
  foldAt: () => number;
  logger: Logger;
}

/** A line waiting to be appended, with what applies it and its caller's acknowledgement. */
interface Waiting {
  line: string;
  apply: () => void;
  done: () => void;
  failed: (error: unknown) => void;
}

/** The journal of one JSON file: durable appends with group commit, folded into the file now and then. */
export class JsonJournal {
  readonly path: string;
  readonly #options: JournalOptions;
  #waiting: Waiting[] = [];
  /** The loop writing the waiting lines, while it runs. */
  #writing: Promise<void> | undefined;
  /** Open while appends succeed; closed after a failed one, so that the next one cuts off what it left. */
  #file: Deno.FsFile | undefined;
  #lines: number;
  /** The length of the journal's whole, applied lines: what a failed append wrote past it is cut off. */
  #bytes: number;
  /** After a failed fold, none is tried again before the journal has this many lines (0: no failed fold). */
  #retryFoldAt = 0;

  constructor(path: string, options: JournalOptions) {
    this.path = path;
    this.#options = options;
    this.#lines = options.lines;
    this.#bytes = options.bytes;
  }

  /** How many lines the journal has. */
  get lines(): number {
    return this.#lines;
  }

  /**
   * Appends `value` (as it is now) as one line; once it is on disk, calls
   * `apply` (before any later change is applied and before any fold), then
   * resolves. If it cannot be made durable, `apply` is never called and the
   * promise rejects.
   */
  append(value: unknown, apply: () => void): Promise<void> {
    const line = JSON.stringify(value) + "\n";
    return new Promise((done, failed) => {
      this.#waiting.push({ line, apply, done, failed });
      this.#writing ??= this.#writeWaiting();
    });
  }

  /** Rewrites the JSON file, then removes the journal (only once the new file is durable: the rewrite syncs it). */
  async fold(): Promise<void> {
    await this.#options.rewrite();
    this.#file?.close();
    this.#file = undefined;
    await Deno.remove(this.path).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
    this.#lines = 0;
    this.#bytes = 0;
    this.#retryFoldAt = 0;
  }

  /** Writes what is pending and folds the journal into the JSON file (at shutdown). */
  async close(): Promise<void> {
    await this.#writing;
    if (this.#lines > 0) await this.fold();
    this.#file?.close();
    this.#file = undefined;
  }

  /** Writes the waiting lines in batches, one batch at a time, until none is left. */
  async #writeWaiting(): Promise<void> {
    while (this.#waiting.length > 0) {
      const batch = this.#waiting;
      this.#waiting = [];
      try {
        await this.#append(batch.map((entry) => entry.line));
      } catch (error) {
        this.#file?.close();
        this.#file = undefined;
        for (const entry of batch) entry.failed(error);
        continue;
      }
      for (const entry of batch) {
        entry.apply();
        entry.done();
      }
      if (this.#lines >= Math.max(this.#options.foldAt(), this.#retryFoldAt)) {
        await this.fold().catch((error) => {
          // The journal stays whole and appends go on; a full disk is not asked for a rewrite at every edit.
          this.#retryFoldAt = this.#lines + this.#options.foldAt();
          this.#options.logger.error(`cannot fold ${this.path}: ${describeError(error)}`);
        });
      }
    }
    this.#writing = undefined;
  }

  /**
   * Appends `lines` (each ending in a newline) in one write, and syncs them
   * to disk. Opening the journal cuts off what a failed append left after the
   * whole lines, and syncs the folder, in which the journal may be new.
   */
  async #append(lines: string[]): Promise<void> {
    if (!this.#file) {
      const file = await Deno.open(this.path, { append: true, create: true });
      try {
        if ((await file.stat()).size > this.#bytes) await file.truncate(this.#bytes);
        await syncFolder(dirname(this.path));
      } catch (error) {
        file.close();
        throw error;
      }
      this.#file = file;
    }
    const data = new TextEncoder().encode(lines.join(""));
    for (let bytes = data; bytes.length > 0;) bytes = bytes.subarray(await this.#file.write(bytes));
    await this.#file.syncData();
    this.#lines += lines.length;
    this.#bytes += data.length;
  }
}
