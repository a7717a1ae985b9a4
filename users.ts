/**
 * The users file of the Authenticator, and `./add_user`, the administrator's
 * tool that writes it (spec 1.2, 3.5).
 *
 * The file is a JSON object, user name -> SHA-256 of the password as 64
 * hexadecimal digits: `{ "demo": "2a97516c..." }`. The Authenticator only
 * reads it (at start and on SIGUSR2); `./add_user` adds or updates one user,
 * replaces the file atomically, and sends SIGUSR2 to the running
 * Authenticators so they reload it without stopping.
 *
 *   ./add_user [--users-file=PATH] [--pid-file=PATH] <user> [<password>]
 *
 * Without `<password>` it is asked for on the terminal, without echo (or read
 * as one line from standard input when that is not a terminal).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { dirname, isAbsolute, join } from "node:path";
import { parseArgs } from "node:util";
import { readJsonFile, writeJsonFileAtomic } from "./json_file.ts";
import { promptSecret } from "./prompt_secret.ts";
import { loadProperties } from "./service.ts";

/** What a user name may be, in words, for error messages and help. */
export const USER_NAME_RULE =
  "1 to 64 characters: letters, digits and . _ @ -, starting with a letter or a digit (no spaces)";

const USER_NAME = /^[\p{L}\p{N}][\p{L}\p{N}._@-]{0,63}$/u;
const SHA256_HEX = /^[0-9a-f]{64}$/i;

/** Whether `name` follows {@linkcode USER_NAME_RULE}. */
export function isValidUserName(name: string): boolean {
  return USER_NAME.test(name);
}

/** The SHA-256 of `text` (UTF-8) as 64 lowercase hexadecimal digits, as IceFlix clients send passwords. */
export function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** A users file that is valid JSON but not a map of valid user names to SHA-256 hex digests. */
export class InvalidUsersFileError extends Error {
  constructor(path: string, problem: string) {
    super(`${path} is not a valid users file (${problem}); fix or remove it, it was left untouched`);
    this.name = "InvalidUsersFileError";
  }
}

/**
 * Reads the users file at `path`: user name -> password SHA-256 (lowercase
 * hex). `undefined` if there is no such file.
 *
 * @throws CorruptFileError if it is not JSON, {@linkcode InvalidUsersFileError} if it is not a users file
 */
export async function readUsersFile(path: string): Promise<Map<string, string> | undefined> {
  const content = await readJsonFile(path);
  if (content === undefined) return undefined;
  if (typeof content !== "object" || content === null || Array.isArray(content)) {
    throw new InvalidUsersFileError(path, "expected an object: user name -> SHA-256 hex of the password");
  }
  const users = new Map<string, string>();
  for (const [name, hash] of Object.entries(content)) {
    if (!isValidUserName(name)) throw new InvalidUsersFileError(path, `user name ${JSON.stringify(name)} is invalid`);
    if (typeof hash !== "string" || !SHA256_HEX.test(hash)) {
      throw new InvalidUsersFileError(path, `user ${name}: the password must be a SHA-256 as 64 hex digits`);
    }
    users.set(name, hash.toLowerCase());
  }
  return users;
}

/** The checkout this file is in: default paths are relative to it, as for the services. */
const ROOT = new URL(".", import.meta.url).pathname;

/** The pid file where `run_iceflix` lists the Authenticators it started, one pid a line. */
const DEFAULT_PID_FILE = join(ROOT, "data/pids/auth.pid");

const USAGE = `usage: ./add_user [--users-file=PATH] [--pid-file=PATH] <user> [<password>]
Adds <user> to the Authenticator's users file, or changes the password of a user already there,
then makes the running Authenticators reload the file (SIGUSR2).
  <user>             ${USER_NAME_RULE}
  <password>         asked for without echo when left out (or read as one line from a non-terminal stdin)
  --users-file=PATH  default: IceFlix.Auth.UsersFile of config/auth.config
  --pid-file=PATH    pids of the Authenticators to reload, one a line; default: data/pids/auth.pid`;

/** The `./add_user` program; returns its exit code. */
async function addUser(args: string[]): Promise<number> {
  let options;
  try {
    options = parseArgs({
      args,
      allowPositionals: true,
      options: { "users-file": { type: "string" }, "pid-file": { type: "string" }, help: { type: "boolean" } },
    });
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = options;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length < 1 || positionals.length > 2) {
    console.error(USAGE);
    return 2;
  }
  const [user, givenPassword] = positionals;
  if (!isValidUserName(user)) {
    console.error(`invalid user name ${JSON.stringify(user)}: ${USER_NAME_RULE}`);
    return 1;
  }
  const usersFile = values["users-file"] ?? configuredUsersFile();
  // Read (and refuse a broken file) before asking for the password, so a mistake costs no typing.
  await readUsersFile(usersFile);
  const password = givenPassword ?? await askPassword(user);
  if (password === "") {
    console.error("the password must not be empty");
    return 1;
  }
  const existed = await setPassword(usersFile, user, sha256Hex(password));
  console.log(existed ? `user ${user}: password changed in ${usersFile}` : `user ${user} added to ${usersFile}`);

  const pidFile = values["pid-file"] ?? DEFAULT_PID_FILE;
  const signalled = await reloadAuthenticators(pidFile);
  console.log(
    signalled === 0
      ? `no running Authenticator listed in ${pidFile}: each reads the file when it starts`
      : `${signalled} running Authenticator(s) told to reload the users file (SIGUSR2)`,
  );
  return 0;
}

/**
 * Sets the password hash of `user` in the users file at `path` (created if
 * missing); returns whether the user was already there.
 *
 * The file holds password hashes, so it is readable by its owner only. Two
 * add_user runs may update it at once: each reads, changes and replaces it
 * while holding an exclusive lock on its folder (the file itself is replaced,
 * so it cannot carry the lock), and neither change is lost.
 */
async function setPassword(path: string, user: string, hash: string): Promise<boolean> {
  const folder = await Deno.open(dirname(path), { read: true });
  try {
    await folder.lock(true);
    const users = await readUsersFile(path) ?? new Map<string, string>();
    const existed = users.has(user);
    users.set(user, hash);
    await writeJsonFileAtomic(path, Object.fromEntries(users), { mode: 0o600 });
    return existed;
  } finally {
    folder.close(); // closing releases the lock
  }
}

/** `IceFlix.Auth.UsersFile` of config/auth.config (default `users.json`), relative to the checkout. */
function configuredUsersFile(): string {
  const properties = loadProperties([`--Ice.Config=${join(ROOT, "config/auth.config")}`]);
  const path = properties.getPropertyWithDefault("IceFlix.Auth.UsersFile", "users.json");
  return isAbsolute(path) ? path : join(ROOT, path);
}

/**
 * Sends SIGUSR2 to every live Authenticator listed in `pidFile`; returns how
 * many. A pid is only signalled if that process runs auth.ts: a stale pid file
 * may name a process that has nothing to do with IceFlix, and SIGUSR2 would
 * kill most programs.
 */
async function reloadAuthenticators(pidFile: string): Promise<number> {
  let text: string;
  try {
    text = await Deno.readTextFile(pidFile);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return 0;
    throw error;
  }
  let signalled = 0;
  for (const line of text.split("\n").map((line) => line.trim()).filter((line) => line !== "")) {
    if (!/^\d+$/.test(line)) {
      console.error(`${pidFile}: ignoring ${JSON.stringify(line)}, not a pid`);
      continue;
    }
    if (!(await runsAuthenticator(line))) continue;
    const kill = await new Deno.Command("kill", { args: ["-USR2", line], stderr: "inherit" }).output();
    if (kill.success) signalled++;
  }
  return signalled;
}

/** Whether process `pid` is alive and is an Authenticator (`deno run ... auth.ts`), asking `ps`. */
async function runsAuthenticator(pid: string): Promise<boolean> {
  // The whole command line (-ww: never cut); ps fails if there is no such process.
  const ps = await new Deno.Command("ps", { args: ["-ww", "-o", "args=", "-p", pid], stderr: "null" }).output();
  return ps.success && /(^|[\s/])auth\.ts(\s|$)/.test(new TextDecoder().decode(ps.stdout));
}

/** Reads the password: from the terminal without echo (asked twice), or one line from standard input. */
async function askPassword(user: string): Promise<string> {
  if (!Deno.stdin.isTerminal()) {
    const text = await new Response(Deno.stdin.readable).text();
    return text.split("\n")[0].replace(/\r$/, "");
  }
  const password = await promptSecret(`Password for ${user}: `);
  if (password === null) throw new Error("no password given; nothing changed");
  if ((await promptSecret("Again: ")) !== password) throw new Error("the two passwords differ; nothing changed");
  return password;
}

if (import.meta.main) {
  try {
    Deno.exit(await addUser(Deno.args));
  } catch (error) {
    console.error(`add_user: ${(error as Error).message}`);
    Deno.exit(1);
  }
}
