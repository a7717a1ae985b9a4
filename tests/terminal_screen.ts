/**
 * A small terminal emulator for the pty tests: it applies what a program
 * writes (text, CR, LF, and the cursor and erase sequences node:readline
 * uses) to a grid, so a test asserts what a user would see on the screen,
 * not the byte stream. Lines that scroll off the top are kept.
 *
 * @module
 */

/** What a terminal of `columns` x `rows` shows after the output written to it. */
export class TerminalScreen {
  readonly #columns: number;
  readonly #rows: number;
  /** Every line, the scrolled-off ones first; the screen is the last `rows` of them. */
  readonly #lines: string[][] = [[]];
  #row = 0;
  #column = 0;
  #pending = "";

  constructor(columns: number, rows: number) {
    this.#columns = columns;
    this.#rows = rows;
  }

  /** The first line on the screen (the ones before it have scrolled off). */
  get #top(): number {
    return Math.max(0, this.#lines.length - this.#rows);
  }

  /** Applies output; an escape sequence cut between two writes is applied once whole. */
  write(text: string): void {
    text = this.#pending + text;
    this.#pending = "";
    for (let i = 0; i < text.length; i++) {
      const char = text[i];
      if (char === "\x1b") {
        // deno-lint-ignore no-control-regex -- ESC is what a control sequence starts with
        const sequence = /^\x1b\[([0-9;?]*)([@-~])/.exec(text.slice(i));
        if (!sequence) {
          if (text.length - i < 16 && text[i + 1] !== undefined && text[i + 1] !== "[") continue;
          if (text.length - i < 16) {
            this.#pending = text.slice(i);
            return;
          }
          continue;
        }
        this.#control(sequence[2], sequence[1]);
        i += sequence[0].length - 1;
      } else if (char === "\r") {
        this.#column = 0;
      } else if (char === "\n") {
        this.#down();
      } else if (char === "\b") {
        this.#column = Math.max(0, this.#column - 1);
      } else if (char >= " ") {
        if (this.#column >= this.#columns) {
          this.#down();
          this.#column = 0;
        }
        const line = this.#lines[this.#row];
        while (line.length < this.#column) line.push(" ");
        line[this.#column++] = char;
      }
    }
  }

  /** Every line (trailing spaces removed), scrolled-off ones included, up to the last non-empty one. */
  lines(): string[] {
    const lines = this.#lines.map((line) => line.join("").trimEnd());
    while (lines.length > 0 && lines.at(-1) === "") lines.pop();
    return lines;
  }

  /** The lines as one text. */
  text(): string {
    return this.lines().join("\n");
  }

  #down(): void {
    this.#row++;
    if (this.#row >= this.#lines.length) this.#lines.push([]);
  }

  #control(final: string, parameters: string): void {
    const n = Number(parameters.split(";")[0]) || 0;
    const line = this.#lines[this.#row];
    switch (final) {
      case "A":
        this.#row = Math.max(this.#top, this.#row - Math.max(1, n));
        break;
      case "B":
        for (let k = 0; k < Math.max(1, n); k++) this.#down();
        break;
      case "C":
        this.#column = Math.min(this.#columns - 1, this.#column + Math.max(1, n));
        break;
      case "D":
        this.#column = Math.max(0, this.#column - Math.max(1, n));
        break;
      case "G":
        this.#column = Math.max(0, n - 1);
        break;
      case "J": // erase below (the only form readline uses)
        line.length = Math.min(line.length, this.#column);
        this.#lines.length = this.#row + 1;
        break;
      case "K":
        if (n === 2) line.length = 0;
        else if (n === 0) line.length = Math.min(line.length, this.#column);
        break;
    }
  }
}
