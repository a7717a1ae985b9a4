/**
 * Where the client's commands come from and its messages go.
 *
 * On a terminal, {@linkcode LineEditor}: node:readline edits the line
 * (cursor keys, history, Tab completion, Ctrl-W, Ctrl-U), the state line is
 * part of the prompt and redrawn when the state changes, messages (and logs)
 * are printed above the prompt without disturbing what is being typed, and
 * passwords are read by `prompt_secret.ts` with nothing shown. Otherwise,
 * {@linkcode ScriptInput}: plain lines from stdin or a file, plain output.
 *
 * @module
 */
import process from "node:process";
import readline from "node:readline";
import { PassThrough } from "node:stream";
import { promptSecret, type SecretInput } from "./prompt_secret.ts";

/** What the client needs from its input and output, on a terminal or not. */
export interface Terminal {
  /** Whether a person types (a terminal), rather than a script. */
  readonly interactive: boolean;
  /** Shows `text` (one or more lines) above the prompt. */
  print(text: string): void;
  /** Draws the state line again (it changed). */
  refresh(): void;
  /** The next command line; `undefined` when the input has ended (Ctrl-D, end of the script). */
  nextLine(): Promise<string | undefined>;
  /** Asks `question` and reads the answer; `undefined` if cancelled (Ctrl-C) or the input ended. */
  ask(question: string): Promise<string | undefined>;
  /** Asks for a secret, which is never shown; `undefined` if cancelled or the input ended. */
  askSecret(question: string): Promise<string | undefined>;
  /** Gives the terminal back as it was. */
  close(): void;
}

/** The prompt of the command line. */
export const PROMPT = "iceflix> ";

/**
 * The interactive terminal: node:readline on stdin in raw mode. Keys are
 * routed either to readline or, while a secret is asked, to promptSecret.
 */
export class LineEditor implements Terminal {
  readonly interactive = true;
  readonly #stateLine: () => string;
  readonly #readline: readline.Interface;
  readonly #keys = new PassThrough();
  /** Keys for promptSecret while it reads, instead of readline. */
  #secretKeys: Uint8Array[] | undefined;
  #wakeSecret: (() => void) | undefined;
  /** Lines typed while nobody was reading (a command is being prepared). */
  readonly #lines: string[] = [];
  #reader: ((line: string | undefined) => void) | undefined;
  #question: string | undefined;
  #ended = false;
  #closed = false;
  /** Whether the state line and the prompt are on the screen (not between an Enter and the next prompt). */
  #shown = false;

  /**
   * @param stateLine the current state, drawn above the prompt
   * @param complete the completions of a line (see node:readline's completer)
   * @param onInterrupt Ctrl-C at the command prompt, after the line was cleared; `hadText` says whether it held text
   */
  constructor(
    stateLine: () => string,
    complete: (line: string) => [string[], string],
    readonly onInterrupt: (hadText: boolean) => void,
  ) {
    this.#stateLine = stateLine;
    process.stdin.setRawMode(true);
    process.stdin.on("data", (chunk: Uint8Array) => this.#route(chunk));
    process.stdin.on("end", () => this.#keys.end());
    this.#readline = readline.createInterface({
      input: this.#keys,
      output: process.stdout,
      terminal: true,
      completer: complete,
      historySize: 500,
      removeHistoryDuplicates: true,
    });
    this.#readline.on("line", (line) => {
      this.#shown = false;
      this.#deliver(line);
    });
    this.#readline.on("close", () => {
      this.#ended = true;
      this.#deliver(undefined);
    });
    this.#readline.on("SIGINT", () => this.#interrupt());
    this.#showPrompt();
  }

  print(text: string): void {
    if (this.#closed || !this.#shown) return void process.stdout.write(`${text}\n`);
    if (this.#secretKeys) {
      // promptSecret shows nothing of what is typed: clear its line, print, ask again.
      process.stdout.write(`\r\x1b[K${text}\n${this.#question ?? ""}`);
      return;
    }
    // Up to the first row of the state line, clear, print; then as many new rows as readline will go up to
    // redraw the prompt and the line being typed under the text.
    const rows = this.#readline.getCursorPos().rows;
    readline.moveCursor(process.stdout, 0, -rows);
    readline.cursorTo(process.stdout, 0);
    readline.clearScreenDown(process.stdout);
    process.stdout.write(`${text}\n${"\n".repeat(rows)}`);
    this.#showPrompt();
  }

  refresh(): void {
    if (this.#closed || this.#secretKeys || !this.#shown) return;
    this.#showPrompt();
  }

  nextLine(): Promise<string | undefined> {
    this.#question = undefined;
    return this.#read();
  }

  ask(question: string): Promise<string | undefined> {
    this.#question = question;
    return this.#read().finally(() => this.#question = undefined);
  }

  async askSecret(question: string): Promise<string | undefined> {
    if (this.#ended) return undefined;
    this.#question = question;
    this.#secretKeys = [];
    this.#shown = false;
    this.#readline.pause();
    try {
      const secret = await promptSecret(question, { input: this.#secretInput(), output: Deno.stdout });
      return secret ?? undefined;
    } finally {
      const early = this.#secretKeys;
      this.#secretKeys = undefined;
      this.#question = undefined;
      this.#readline.resume();
      // Keys typed after the Enter that ended the secret go to readline.
      for (const chunk of early ?? []) this.#keys.write(chunk);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    readline.cursorTo(process.stdout, 0);
    readline.clearScreenDown(process.stdout);
    this.#readline.close();
    process.stdin.setRawMode(false);
    process.stdin.pause();
  }

  /** The state line and the prompt (or the question asked), keeping what is typed and the cursor. */
  #showPrompt(): void {
    this.#readline.setPrompt(`${this.#stateLine()}\n${this.#question ?? PROMPT}`);
    this.#readline.prompt(true);
    this.#shown = true;
  }

  #read(): Promise<string | undefined> {
    this.#showPrompt();
    if (this.#lines.length > 0) return Promise.resolve(this.#lines.shift());
    if (this.#ended) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#reader = resolve);
  }

  #deliver(line: string | undefined): void {
    const reader = this.#reader;
    this.#reader = undefined;
    if (reader) reader(line);
    else if (line !== undefined) this.#lines.push(line);
  }

  /** Ctrl-C: a question is cancelled; at the command prompt the line is cleared and the client told. */
  #interrupt(): void {
    const hadText = this.#readline.line !== "";
    // Ctrl-E then Ctrl-U: the whole line is deleted, wherever the cursor was.
    this.#readline.write(null, { ctrl: true, name: "e" });
    this.#readline.write(null, { ctrl: true, name: "u" });
    if (this.#question !== undefined) this.#deliver(undefined);
    else this.onInterrupt(hadText);
  }

  #route(chunk: Uint8Array): void {
    if (this.#secretKeys) {
      this.#secretKeys.push(chunk);
      this.#wakeSecret?.();
    } else {
      this.#keys.write(chunk);
    }
  }

  /** The keys routed to promptSecret, as the terminal it reads (already raw: readline set it so). */
  #secretInput(): SecretInput {
    return {
      isTerminal: () => true,
      setRaw: () => {},
      read: async (buffer) => {
        while (this.#secretKeys && this.#secretKeys.length === 0 && !this.#ended) {
          await new Promise<void>((wake) => this.#wakeSecret = wake);
        }
        const chunk = this.#secretKeys?.shift();
        if (!chunk) return null;
        const count = Math.min(chunk.length, buffer.length);
        buffer.set(chunk.subarray(0, count));
        if (count < chunk.length) this.#secretKeys!.unshift(chunk.subarray(count));
        return count;
      },
    };
  }
}

/**
 * Script mode: commands from stdin (or a file), one a line; a question's
 * answer, the password included, is the next line.
 */
export class ScriptInput implements Terminal {
  readonly interactive = false;
  readonly #lines: AsyncIterator<string>;
  readonly #encoder = new TextEncoder();

  /** @param input where the lines come from (stdin, or the file of `--script`) */
  constructor(input: ReadableStream<Uint8Array>) {
    this.#lines = readLines(input);
  }

  print(text: string): void {
    const bytes = this.#encoder.encode(`${text}\n`);
    for (let written = 0; written < bytes.length;) written += Deno.stdout.writeSync(bytes.subarray(written));
  }

  refresh(): void {}

  async nextLine(): Promise<string | undefined> {
    const next = await this.#lines.next();
    return next.done ? undefined : next.value;
  }

  ask(): Promise<string | undefined> {
    return this.nextLine();
  }

  askSecret(): Promise<string | undefined> {
    return this.nextLine();
  }

  close(): void {}
}

/** The lines of `input`, without their `\n` or `\r\n`; a last line without one counts too. */
async function* readLines(input: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let partial = "";
  try {
    for await (const text of input.pipeThrough(new TextDecoderStream())) {
      const lines = (partial + text).split("\n");
      partial = lines.pop()!;
      for (const line of lines) yield line.replace(/\r$/, "");
    }
  } catch {
    // stdin closed under us: the same as its end.
  }
  if (partial !== "") yield partial;
}
