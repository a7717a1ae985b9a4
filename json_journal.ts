/**
 * A write-ahead journal beside a JSON file, so that a change is durable
 * without rewriting the whole file.
 *
 * Each change is one JSON line appended to `<file>.journal` and synced to
 * disk before {@linkcode JsonJournal.append} resolves. Changes that arrive
 * while the journal is being synced go together in the next append (group
 * commit), in the order they were made. Folding rewrites the JSON file
 * atomically from its owner's memory (json_file.ts), then removes the journal;
 * a crash in between replays the journal over the new file, which yields the
 * same state.
 *
 * A crash can leave the last line half-written: that change was never
 * acknowledged, so {@linkcode readJournal} drops it. Any other line that does
 * not parse is a corrupt journal, refused with a clear error and left as it is.
 *
 * @module
 */
import { CorruptFileError } from "./json_file.ts";
import { describeError, type Logger } from "./service.ts";

/** What a journal holds: its changes, in order, and how many lines it has (a torn one included). */
export interface JournalContents {
  values: unknown[];
  lines: number;
}

/**
 * Reads the journal at `path` (none: no changes); a torn last line is left
 * out, with a warning.
 *
 * @throws CorruptFileError if any other line is not JSON (the file is left untouched)
 */
export async function readJournal(path: string, logger: Logger): Promise<JournalContents> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { values: [], lines: 0 };
    throw error;
  }
  const lines = text.split("\n");
  // The text after the last newline is empty, or a line whose append never completed, hence never acknowledged.
  const torn = lines.pop()!;
  if (torn !== "") logger.warn(`${path}: ignoring its torn last line (an unacknowledged edit)`);
  const values = lines.map((line, index) => {
    try {
      return JSON.parse(line);
    } catch (error) {
      throw new CorruptFileError(path, new Error(`line ${index + 1}: ${(error as Error).message}`));
    }
  });
  return { values, lines: lines.length + (torn === "" ? 0 : 1) };
}

/** What a journal needs from the owner of its JSON file. */
export interface JournalOptions {
  /** How many lines the journal at `path` has already (from {@linkcode readJournal}). */
  lines: number;
  /** Rewrites the JSON file atomically from memory, which holds every change appended so far. */
  rewrite: () => Promise<void>;
  /** The journal is folded once it has this many lines. */
  foldAt: () => number;
  logger: Logger;
}

/** The journal of one JSON file: durable appends with group commit, folded into the file now and then. */
export class JsonJournal {
  readonly path: string;
  readonly #options: JournalOptions;
  /** Lines waiting to be appended, each with its caller's acknowledgement. */
  #waiting: { line: string; done: () => void; failed: (error: unknown) => void }[] = [];
  /** The loop writing the waiting lines, while it runs. */
  #writing: Promise<void> | undefined;
  #file: Deno.FsFile | undefined;
  #lines: number;
  /** A failed append may have left a torn line: the next write folds instead. */
  #mustFold = false;

  constructor(path: string, options: JournalOptions) {
    this.path = path;
    this.#options = options;
    this.#lines = options.lines;
  }

  /** How many lines the journal has. */
  get lines(): number {
    return this.#lines;
  }

  /** Appends `value` (as it is now) as one line; resolves once it is on disk. */
  append(value: unknown): Promise<void> {
    const line = JSON.stringify(value) + "\n";
    return new Promise((done, failed) => {
      this.#waiting.push({ line, done, failed });
      this.#writing ??= this.#writeWaiting();
    });
  }

  /** Rewrites the JSON file, then removes the journal. */
  async fold(): Promise<void> {
    await this.#options.rewrite();
    this.#file?.close();
    this.#file = undefined;
    await Deno.remove(this.path).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
    this.#lines = 0;
    this.#mustFold = false;
  }

  /** Writes what is pending and folds the journal into the JSON file (at shutdown). */
  async close(): Promise<void> {
    await this.#writing;
    if (this.#lines > 0 || this.#mustFold) await this.fold();
  }

  /** Writes the waiting lines in batches, one batch at a time, until none is left. */
  async #writeWaiting(): Promise<void> {
    while (this.#waiting.length > 0) {
      const batch = this.#waiting;
      this.#waiting = [];
      try {
        // The JSON file is rewritten from memory, which holds the batch's changes too.
        if (this.#mustFold) await this.fold();
        else await this.#append(batch.map((entry) => entry.line));
        for (const entry of batch) entry.done();
      } catch (error) {
        this.#mustFold = true;
        for (const entry of batch) entry.failed(error);
      }
      if (this.#lines >= this.#options.foldAt()) {
        await this.fold().catch((error) =>
          this.#options.logger.error(`cannot fold ${this.path}: ${describeError(error)}`)
        );
      }
    }
    this.#writing = undefined;
  }

  /** Appends `lines` (each ending in a newline) in one write, and syncs them to disk. */
  async #append(lines: string[]): Promise<void> {
    this.#file ??= await Deno.open(this.path, { append: true, create: true });
    let bytes = new TextEncoder().encode(lines.join(""));
    while (bytes.length > 0) bytes = bytes.subarray(await this.#file.write(bytes));
    await this.#file.syncData();
    this.#lines += lines.length;
  }
}
