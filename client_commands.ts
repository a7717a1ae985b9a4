/**
 * The client's commands (spec 3): their table, the word splitter, the parser
 * that turns a typed line into a command and its arguments, Tab completion,
 * and the help text and README table, all rendered from the one table.
 *
 * Pure code: no Ice, no terminal. `tests/client_commands_test.ts` runs in
 * milliseconds and checks that `client_help.txt` and the README's command
 * table are what this module renders.
 *
 * @module
 */

/** What a command takes after its name. */
export type ArgumentKind =
  /** nothing: extra words are an error */
  | "none"
  /** free text, possibly empty (quotes are removed, words joined by one space) */
  | "optional text"
  /** free text, asked for when missing */
  | "text"
  /** one word or nothing */
  | "optional word"
  /** one whole number, asked for when missing */
  | "number"
  /** one positive number of seconds */
  | "seconds"
  /** one or more words (quotes keep spaces), asked for when missing */
  | "words"
  /** `any` or `all`, then one or more words, asked for when missing */
  | "mode and words";

/** One command of the menu. */
export interface CommandSpec {
  readonly name: string;
  /** Other names for it. */
  readonly aliases?: readonly string[];
  /** How it is typed, for the help: `search [TEXT]`. */
  readonly usage: string;
  /** What it does, in one line. */
  readonly summary: string;
  readonly argument: ArgumentKind;
  /** The question asked on a terminal when a needed argument is missing. */
  readonly question?: string;
  /** Whether it calls the platform: on a terminal it runs while the prompt stays usable, and Ctrl-C cancels it. */
  readonly remote: boolean;
  /** What the state line says while it runs (remote commands). */
  readonly doing?: string;
}

/** Every command, in the order the help lists them. */
export const COMMANDS: readonly CommandSpec[] = [
  {
    name: "connect",
    usage: "connect [PROXY]",
    summary: "connect to Main (default: the proxy given at start); retried while unreachable",
    argument: "optional text",
    remote: true,
    doing: "connecting",
  },
  {
    name: "login",
    usage: "login [USER]",
    summary: "log in; the password is asked without echo (only its SHA-256 is sent)",
    argument: "optional word",
    question: "User: ",
    remote: true,
    doing: "logging in",
  },
  { name: "logout", usage: "logout", summary: "end the session", argument: "none", remote: true, doing: "logging out" },
  {
    name: "search",
    usage: "search [TEXT]",
    summary: "titles whose name contains TEXT, ignoring case (every title if none)",
    argument: "optional text",
    remote: true,
    doing: "searching",
  },
  {
    name: "exact",
    usage: "exact NAME",
    summary: "titles named exactly NAME (case does not matter)",
    argument: "text",
    question: "Exact name: ",
    remote: true,
    doing: "searching",
  },
  {
    name: "tags",
    usage: "tags [any|all] TAG...",
    summary: "titles with any (the default) or all of the tags",
    argument: "mode and words",
    question: "Tags: ",
    remote: true,
    doing: "searching",
  },
  { name: "results", usage: "results", summary: "the last results again", argument: "none", remote: false },
  {
    name: "select",
    usage: "NUMBER, select NUMBER",
    summary: "select that title of the last results",
    argument: "number",
    question: "Number: ",
    remote: false,
  },
  {
    name: "rename",
    usage: "rename NEW NAME",
    summary: "rename the selected title (needs login)",
    argument: "text",
    question: "New name: ",
    remote: true,
    doing: "renaming",
  },
  {
    name: "addtags",
    usage: "addtags TAG...",
    summary: "add tags to the selected title (needs login)",
    argument: "words",
    question: "Tags to add: ",
    remote: true,
    doing: "adding tags",
  },
  {
    name: "removetags",
    usage: "removetags TAG...",
    summary: "remove tags from the selected title (needs login)",
    argument: "words",
    question: "Tags to remove: ",
    remote: true,
    doing: "removing tags",
  },
  {
    name: "play",
    usage: "play",
    summary: "play the selected title (needs login); the menu stays usable",
    argument: "none",
    remote: true,
    doing: "starting to play",
  },
  { name: "stop", usage: "stop", summary: "stop playing, at any time", argument: "none", remote: false },
  {
    name: "status",
    usage: "status",
    summary: "where Main and IceStorm are and whether they answer",
    argument: "none",
    remote: false,
  },
  {
    name: "wait",
    usage: "wait SECONDS",
    summary: "wait, showing the state each second while playing (for scripts)",
    argument: "seconds",
    remote: false,
  },
  { name: "help", aliases: ["?"], usage: "help", summary: "this list", argument: "none", remote: false },
  {
    name: "quit",
    aliases: ["exit"],
    usage: "quit",
    summary: "leave: stops what plays and logs out (also Ctrl-D)",
    argument: "none",
    remote: false,
  },
];

/** What the help says under the commands, about words, quotes and keys. */
const HELP_NOTES = [
  'Words in [brackets] are optional; a missing needed one is asked for. "Double quotes" keep spaces',
  'inside one word: addtags "test card", search "two  spaces". Up/Down recall earlier lines, Tab',
  "completes a command, Ctrl-C cancels the line or the command under way.",
];

/** A line that is not a valid command; the message says why, for the user. */
export class CommandError extends Error {}

/**
 * Splits `text` into words at spaces; "double quotes" keep spaces inside a
 * word and are removed (`""` is an empty word).
 *
 * @throws CommandError when a quote is not closed
 * @example splitWords('addtags "test card" short') // ["addtags", "test card", "short"]
 */
export function splitWords(text: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quoted = false;
  for (const char of text) {
    if (char === '"') {
      quoted = !quoted;
      word ??= "";
    } else if (!quoted && /\s/.test(char)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else {
      word = (word ?? "") + char;
    }
  }
  if (quoted) throw new CommandError('a "quote" is not closed');
  if (word !== undefined) words.push(word);
  return words;
}

/** The argument of a command, as its kind makes it. */
export interface CommandArgument {
  /** "optional text", "text", "optional word": the text ("" when none was given). */
  text?: string;
  /** "words", "mode and words": the words. */
  words?: string[];
  /** "mode and words": whether `all` was given. */
  all?: boolean;
  /** "number", "seconds". */
  number?: number;
}

/** A parsed command line. `missing` says that its argument must still be asked for. */
export interface ParsedCommand extends CommandArgument {
  spec: CommandSpec;
  missing: boolean;
}

/** The command called `name` (or one of its aliases), case-insensitive. */
export function findCommand(name: string): CommandSpec | undefined {
  const lower = name.toLowerCase();
  return COMMANDS.find((spec) => spec.name === lower || spec.aliases?.includes(lower));
}

/**
 * Parses one command line. Returns `undefined` for a blank line or a `#`
 * comment. A bare number selects that result.
 *
 * @throws CommandError for an unknown command, a bad argument or extra words
 * @example parseCommand('rename "Test Card"') // { spec: rename, text: "Test Card", missing: false }
 */
export function parseCommand(line: string): ParsedCommand | undefined {
  if (line.trim() === "" || line.trim().startsWith("#")) return undefined;
  const words = splitWords(line);
  if (words.length === 0) return undefined;
  const [first, ...rest] = words;
  if (/^\d+$/.test(first)) return { spec: findCommand("select")!, ...parseArgument(findCommand("select")!, words) };
  const spec = findCommand(first);
  if (!spec) throw new CommandError(`unknown command "${abbreviate(first)}" (help lists them)`);
  return { spec, ...parseArgument(spec, rest) };
}

/**
 * Reads the argument of `spec` from `words` (those after the command name,
 * or the words of the answer to its question).
 *
 * @throws CommandError for a bad argument or extra words
 */
export function parseArgument(spec: CommandSpec, words: string[]): CommandArgument & { missing: boolean } {
  const extra = (allowed: number) => {
    if (words.length > allowed) {
      const what = allowed === 0 ? "no words" : "one word";
      throw new CommandError(`${spec.name} takes ${what}; remove "${abbreviate(words.slice(allowed).join(" "))}"`);
    }
  };
  switch (spec.argument) {
    case "none":
      extra(0);
      return { missing: false };
    case "optional text":
      return { text: words.join(" "), missing: false };
    case "text": {
      const text = words.join(" ");
      return { text, missing: text.trim() === "" };
    }
    case "optional word":
      extra(1);
      return { text: words[0] ?? "", missing: words.length === 0 };
    case "number": {
      extra(1);
      if (words.length === 0) return { missing: true };
      if (!/^\d+$/.test(words[0])) throw new CommandError(`"${abbreviate(words[0])}" is not a result number`);
      return { number: Number(words[0]), missing: false };
    }
    case "seconds": {
      extra(1);
      const seconds = Number(words[0]);
      if (words.length === 0 || !(seconds > 0)) throw new CommandError(`${spec.name} needs a number of seconds`);
      return { number: seconds, missing: false };
    }
    case "words":
      return { words, missing: words.length === 0 };
    case "mode and words": {
      const mode = words[0]?.toLowerCase();
      const all = mode === "all";
      const tags = mode === "any" || mode === "all" ? words.slice(1) : words;
      return { words: tags, all, missing: tags.length === 0 };
    }
  }
}

/**
 * The completions of `line` for node:readline's completer: command names for
 * the first word, `any`/`all` after `tags`.
 *
 * @returns the candidates and the part of the line they complete
 */
export function completeCommand(line: string): [string[], string] {
  const match = /^(\s*)(\S*)$/.exec(line);
  if (match) {
    const names = COMMANDS.flatMap((spec) => [spec.name, ...(spec.aliases ?? [])]).filter((name) =>
      /^[a-z]/.test(name)
    );
    const hits = names.filter((name) => name.startsWith(match[2].toLowerCase()));
    return [hits.map((name) => `${name} `), match[2]];
  }
  const tags = /^\s*tags\s+(\S*)$/i.exec(line);
  if (tags) return [["any ", "all "].filter((mode) => mode.startsWith(tags[1].toLowerCase())), tags[1]];
  return [[], line];
}

/** Longest text quoted back in a message; the rest is counted, not shown. */
const QUOTE_LIMIT = 60;

/**
 * `text` for a message: as it is when short, else its start and how long it was.
 *
 * @example abbreviate("x".repeat(20000)) // "xxx…xxx… (20000 characters)"
 */
export function abbreviate(text: string): string {
  const chars = [...text];
  if (chars.length <= QUOTE_LIMIT) return text;
  return `${chars.slice(0, QUOTE_LIMIT).join("")}… (${chars.length} characters)`;
}

/** The command list that `help` prints and `client_help.txt` ends with. */
export function helpText(): string {
  const width = Math.max(...COMMANDS.map((spec) => spec.usage.length)) + 2;
  const lines = COMMANDS.map((spec) => `  ${spec.usage.padEnd(width)}${spec.summary}`);
  return ["Commands:", ...lines, ...HELP_NOTES].join("\n");
}

/** The README's command table (Markdown, padded as `deno fmt` pads it). */
export function commandTableMarkdown(): string {
  const rows = [
    ["command", "what it does"],
    ...COMMANDS.map((spec) => [`\`${spec.usage.replaceAll("|", "\\|")}\``, spec.summary]),
  ];
  const widths = [0, 1].map((column) => Math.max(...rows.map((row) => row[column].length)));
  const line = (cells: string[]) => `| ${cells.map((cell, column) => cell.padEnd(widths[column])).join(" | ")} |`;
  return [line(rows[0]), `| ${widths.map((width) => "-".repeat(width)).join(" | ")} |`, ...rows.slice(1).map(line)]
    .join("\n");
}
