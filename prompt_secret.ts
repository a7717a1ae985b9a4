/**
 * Reads a secret (a password) from the terminal without showing it, for
 * `./add_user` and the client. Like Deno std's `cli/prompt_secret.ts`, but
 * asynchronous and without a mask: nothing at all is shown, not even the
 * length of the password.
 *
 * @module
 */

/** The terminal side of {@linkcode promptSecret}: `Deno.stdin` has it. */
export interface SecretInput {
  /** Whether a person types here; only then is a secret asked for. */
  isTerminal(): boolean;
  /** Raw mode: the terminal neither echoes nor edits the line, so every key arrives here. */
  setRaw(raw: boolean): void;
  /** Reads some bytes into `buffer`; `null` at the end of the input. */
  read(buffer: Uint8Array): Promise<number | null>;
}

/** Options for {@linkcode promptSecret}. */
export interface PromptSecretOptions {
  /** Where the keys come from; default `Deno.stdin`. */
  input?: SecretInput;
  /** Where the message is shown; default `Deno.stderr`, so that standard output stays the program's own. */
  output?: { write(bytes: Uint8Array): Promise<number> };
}

/**
 * Shows `message`, then reads one line from the terminal without echo.
 * Backspace removes the last character, Ctrl-U the whole line, and escape
 * sequences (arrow keys) are ignored; Enter ends the line.
 *
 * @param message The prompt, e.g. `"Password: "`.
 * @param options Where to read and write; the defaults are the terminal.
 * @returns The line typed, or `null` if the input is not a terminal, ends, or the user presses Ctrl-C or Ctrl-D.
 *
 * @example
 * ```ts
 * import { promptSecret } from "./prompt_secret.ts";
 *
 * const password = await promptSecret("Password: ");
 * if (password === null) console.error("no password given");
 * ```
 */
export async function promptSecret(message: string, options: PromptSecretOptions = {}): Promise<string | null> {
  const input = options.input ?? Deno.stdin;
  const output = options.output ?? Deno.stderr;
  if (!input.isTerminal()) return null;
  const encoder = new TextEncoder();
  await writeAll(output, encoder.encode(message));
  input.setRaw(true);
  try {
    return await readSecretLine(input);
  } finally {
    input.setRaw(false);
    // The user's Enter was not echoed either: end the prompt's line.
    await writeAll(output, encoder.encode("\n"));
  }
}

/** Reads keys until Enter (the line), or Ctrl-C, Ctrl-D or the end of the input (`null`). */
async function readSecretLine(input: SecretInput): Promise<string | null> {
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(256);
  let line: string[] = [];
  let escape: "" | "esc" | "sequence" = "";
  for (let count; (count = await input.read(buffer)) !== null;) {
    // stream: a character split between two reads is decoded once whole.
    for (const char of decoder.decode(buffer.subarray(0, count), { stream: true })) {
      if (escape === "esc") escape = char === "[" || char === "O" ? "sequence" : "";
      else if (escape === "sequence") escape = char >= "@" && char <= "~" ? "" : "sequence";
      else if (char === "\r" || char === "\n") return line.join("");
      else if (char === "\x03" || char === "\x04") return null;
      else if (char === "\x7f" || char === "\b") line = line.slice(0, -1);
      else if (char === "\x15") line = [];
      else if (char === "\x1b") escape = "esc";
      else if (char >= " ") line.push(char);
    }
  }
  return null;
}

async function writeAll(output: NonNullable<PromptSecretOptions["output"]>, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) written += await output.write(bytes.subarray(written));
}
