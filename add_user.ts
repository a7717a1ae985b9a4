/**
 * `./add_user`, the administrator's tool that adds a user to the users file
 * or changes a password (spec 3.5); the `add_user` script runs it. Without a
 * password on the command line it asks on the terminal, without echo.
 *
 * @module
 */
import { isAbsolute, join } from "node:path";
import { parseArgs } from "node:util";
import { promptSecret } from "./prompt_secret.ts";
import { loadProperties } from "./service.ts";
import { isValidUserName, readUsersFile, setPassword, sha256Hex, USER_NAME_RULE } from "./users.ts";

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
  const existed = await setPassword(usersFile, user, await sha256Hex(password));
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
