/**
 * The users file (spec 1.2): a JSON object, user name -> SHA-256 of the
 * password as 64 hex digits. The Authenticator reads it; `./add_user`
 * (add_user.ts) writes it.
 *
 * @module
 */
import { dirname } from "node:path";
import { readJsonFile, writeJsonFileAtomic } from "./json_file.ts";

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
export async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
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

/**
 * Sets the password hash of `user` in the users file at `path` (created if
 * missing); returns whether the user was already there.
 *
 * The file holds password hashes, so it is readable by its owner only. Two
 * add_user runs may update it at once: each reads, changes and replaces it
 * while holding an exclusive lock on its folder (the file itself is replaced,
 * so it cannot carry the lock), and neither change is lost.
 */
export async function setPassword(path: string, user: string, hash: string): Promise<boolean> {
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
