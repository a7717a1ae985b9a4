/**
 * `./add_user`, the administrator's tool that adds a user to the users file
 * or changes a password (spec 3.5). The `add_user` script runs it, then
 * signals the running Authenticators to reload the file.
 *
 * @module
 */
import { isAbsolute, join } from "node:path";
import { parseArgs } from "node:util";
import { promptSecret } from "./prompt_secret.ts";
import { loadProperties } from "./service.ts";
import { checkUsersFile, isValidUserName, setPassword, sha256Hex, USER_NAME_RULE } from "./users.ts";

/** The checkout this file is in: default paths are relative to it, as for the services. */
const ROOT = new URL(".", import.meta.url).pathname;

/** For mistakes in the arguments; `./add_user --help` (the script's header) says the rest. */
const USAGE = "usage: ./add_user [--users-file=PATH] [--pid-file=PATH] <user> [<password>] (--help says more)";

/** The `./add_user` program; returns its exit code. */
async function addUser(args: string[]): Promise<number> {
  let options;
  try {
    options = parseArgs({
      args,
      allowPositionals: true,
      options: { "users-file": { type: "string" } },
    });
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = options;
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
  await checkUsersFile(usersFile);
  if (givenPassword !== undefined) {
    // The spec allows it; ps and the shell history show it too.
    console.error(
      "add_user: warning: a password on the command line is visible to other users (ps) and stays in the shell history; leave it out to be asked for it, or give it on standard input",
    );
  }
  const password = givenPassword ?? await askPassword(user);
  if (password === "") {
    console.error("the password must not be empty");
    return 1;
  }
  const existed = await setPassword(usersFile, user, await sha256Hex(password));
  console.log(existed ? `user ${user}: password changed in ${usersFile}` : `user ${user} added to ${usersFile}`);
  return 0;
}

/** `IceFlix.Auth.UsersFile` of config/auth.config (default `users.json`), relative to the checkout. */
function configuredUsersFile(): string {
  const properties = loadProperties([`--Ice.Config=${join(ROOT, "config/auth.config")}`]);
  const path = properties.getPropertyWithDefault("IceFlix.Auth.UsersFile", "users.json");
  return isAbsolute(path) ? path : join(ROOT, path);
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
