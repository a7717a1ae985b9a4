/**
 * The users file (spec 1.2): a JSON object, user name -> a salted, slow hash
 * (PBKDF2) of the SHA-256 that clients send as the password. The spec's own
 * form, the SHA-256 as 64 hex digits, would log anyone in who holds a copy of
 * the file (the client sends exactly that); files in that form are converted
 * when the Authenticator loads them. The Authenticator reads the file;
 * `./add_user` (add_user.ts) writes it.
 *
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import { dirname } from "node:path";
import { readJsonFile, writeJsonFileAtomic } from "./json_file.ts";

/** What a user name may be, in words, for error messages and help. */
export const USER_NAME_RULE =
  "1 to 64 characters: letters, digits and . _ @ -, starting with a letter or a digit (no spaces)";

const USER_NAME = /^[\p{L}\p{N}][\p{L}\p{N}._@-]{0,63}$/u;
/** Whether `name` follows {@linkcode USER_NAME_RULE}. */
export function isValidUserName(name: string): boolean {
  return USER_NAME.test(name);
}

/** The SHA-256 of `text` (UTF-8) as 64 lowercase hexadecimal digits, as IceFlix clients send passwords. */
export async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * PBKDF2-HMAC-SHA256 rounds of a stored password. The input is already a
 * SHA-256, so the rounds are what a stolen file costs per guess; 100,000
 * take tens of milliseconds here, paid once per user per Authenticator (see
 * login_guard.ts) and by every wrong guess.
 */
export const PBKDF2_ROUNDS = 100_000;

/** The stored form: `pbkdf2-sha256$<rounds>$<salt, base64>$<derived key, base64>`. */
const STORED_PASSWORD = /^pbkdf2-sha256\$([1-9][0-9]{0,8})\$([A-Za-z0-9+/=]{16,})\$([A-Za-z0-9+/=]{43,})$/;

/** The SHA-256 hex of a password as the spec's users file held it (converted on load). */
const SHA256_HEX = /^[0-9a-f]{64}$/i;

/** The PBKDF2 key of `passwordHash` (hex, any case) under `salt`. */
async function derive(passwordHash: string, salt: Uint8Array, rounds: number): Promise<Uint8Array> {
  const input = new TextEncoder().encode(passwordHash.toLowerCase());
  const key = await crypto.subtle.importKey("raw", input, "PBKDF2", false, ["deriveBits"]);
  return new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "PBKDF2", hash: "SHA-256", salt: salt as BufferSource, iterations: rounds },
      key,
      256,
    ),
  );
}

/** The stored form of a password whose SHA-256 hex is `passwordHash`, with a fresh random salt. */
export async function hashPassword(passwordHash: string, rounds = PBKDF2_ROUNDS): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const derived = await derive(passwordHash, salt, rounds);
  return `pbkdf2-sha256$${rounds}$${btoa(String.fromCharCode(...salt))}$${btoa(String.fromCharCode(...derived))}`;
}

/** The bytes of base64 `text`. */
function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (character) => character.charCodeAt(0));
}

/**
 * Whether `passwordHash` is the password of `stored` (a {@linkcode hashPassword}
 * result). The keys are compared in constant time (`timingSafeEqual`):
 * timing tells nothing.
 */
export async function passwordMatches(stored: string, passwordHash: string): Promise<boolean> {
  const [, rounds, salt, expected] = STORED_PASSWORD.exec(stored)!;
  const derived = await derive(passwordHash, fromBase64(salt), Number(rounds));
  const wanted = fromBase64(expected);
  return derived.length === wanted.length && timingSafeEqual(derived, wanted);
}

/** A users file that is valid JSON but not a map of valid user names to stored passwords. */
export class InvalidUsersFileError extends Error {
  constructor(path: string, problem: string) {
    super(`${path} is not a valid users file (${problem}); fix or remove it, it was left untouched`);
    this.name = "InvalidUsersFileError";
  }
}

/** What {@linkcode readUsersFile} found: user -> stored password, and how many were still SHA-256 hex. */
interface UsersFileContent {
  users: Map<string, string>;
  /** Users whose entry is the spec's SHA-256 hex: {@linkcode readUsersFile} returns them hashed. */
  converted: number;
}

/**
 * Reads the users file at `path`: user name -> stored password. Entries in
 * the spec's form (SHA-256 hex) come back hashed, counted in `converted`.
 * `undefined` if there is no such file.
 *
 * @throws CorruptFileError if it is not JSON, {@linkcode InvalidUsersFileError} if it is not a users file
 */
async function readUsersFile(path: string): Promise<UsersFileContent | undefined> {
  const content = await readJsonFile(path);
  if (content === undefined) return undefined;
  if (typeof content !== "object" || content === null || Array.isArray(content)) {
    throw new InvalidUsersFileError(path, "expected an object: user name -> stored password");
  }
  const users = new Map<string, string>();
  let converted = 0;
  for (const [name, stored] of Object.entries(content)) {
    if (!isValidUserName(name)) throw new InvalidUsersFileError(path, `user name ${JSON.stringify(name)} is invalid`);
    if (typeof stored === "string" && SHA256_HEX.test(stored)) {
      users.set(name, await hashPassword(stored));
      converted++;
    } else if (typeof stored === "string" && STORED_PASSWORD.test(stored)) {
      users.set(name, stored);
    } else {
      throw new InvalidUsersFileError(
        path,
        `user ${name}: expected a stored password (pbkdf2-sha256$...) or a SHA-256 as 64 hex digits`,
      );
    }
  }
  return { users, converted };
}

/**
 * Runs `change` on the users file's content while holding an exclusive lock
 * on its folder (the file itself is replaced, so it cannot carry the lock):
 * two writers at once lose nothing.
 */
async function withLockedFolder<T>(path: string, change: () => Promise<T>): Promise<T> {
  const folder = await Deno.open(dirname(path), { read: true });
  try {
    await folder.lock(true);
    return await change();
  } finally {
    folder.close(); // closing releases the lock
  }
}

/** Replaces the users file at `path`: readable by its owner only, as it holds password hashes. */
function writeUsersFile(path: string, users: Map<string, string>): Promise<void> {
  return writeJsonFileAtomic(path, Object.fromEntries(users), { mode: 0o600 });
}

/** What {@linkcode loadUsersFile} did besides reading. */
export interface LoadedUsers {
  users: ReadonlyMap<string, string>;
  /** The file did not exist and was created empty. */
  created: boolean;
  /** Entries converted from SHA-256 hex to stored passwords, and written back. */
  converted: number;
}

/**
 * The Authenticator's read of the users file: a missing file is created
 * empty (mode 0600), entries in the spec's SHA-256 form are converted and the
 * file replaced atomically, so the file on disk never logs anyone in.
 *
 * @throws CorruptFileError if it is not JSON, {@linkcode InvalidUsersFileError} if it is not a users file
 */
export async function loadUsersFile(path: string): Promise<LoadedUsers> {
  const content = await readUsersFile(path);
  if (content !== undefined && content.converted === 0) return { users: content.users, created: false, converted: 0 };
  return await withLockedFolder(path, async () => {
    // Read again under the lock: add_user may have written meanwhile.
    const current = await readUsersFile(path);
    const users = current?.users ?? new Map<string, string>();
    if (current === undefined || current.converted > 0) await writeUsersFile(path, users);
    return { users, created: current === undefined, converted: current?.converted ?? 0 };
  });
}

/** Reads the users file and refuses a broken one (add_user does it before asking for a password). */
export async function checkUsersFile(path: string): Promise<void> {
  await readUsersFile(path);
}

/**
 * Sets the password of `user` (given as its SHA-256 hex) in the users file
 * at `path` (created if missing), stored hashed; returns whether the user was
 * already there.
 */
export async function setPassword(path: string, user: string, passwordHash: string): Promise<boolean> {
  const stored = await hashPassword(passwordHash);
  return await withLockedFolder(path, async () => {
    const users = (await readUsersFile(path))?.users ?? new Map<string, string>();
    const existed = users.has(user);
    users.set(user, stored);
    await writeUsersFile(path, users);
    return existed;
  });
}
