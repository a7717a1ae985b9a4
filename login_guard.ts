/**
 * The Authenticator's check of credentials: the stored password's slow hash
 * (users.ts), a memory of verified logins so that the slow hash is paid once
 * per user per process, and a throttle that slows down wrong guesses per user
 * and per remote host.
 *
 * Why the memory is safe: it holds, per user, an HMAC under a random key of
 * this process only (never stored, never sent) of the stored password and the
 * SHA-256 that verified against it. Only a login that passed the slow hash is
 * remembered; any other SHA-256 gives another HMAC and pays the slow hash and
 * the throttle. A changed password changes the stored text, so an old entry
 * no longer matches. Whoever can read this process's memory sees every
 * password hash arriving anyway.
 *
 * @module
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Logger } from "./service.ts";
import { hashPassword, passwordMatches } from "./users.ts";

/** Failures in a row (per user or per host) answered at once; from then on each attempt waits. */
export const FREE_FAILURES = 3;

/** The first wait, doubled at each further failure, up to {@linkcode LONGEST_WAIT} (ms). */
const FIRST_WAIT = 250;

/** The longest wait between two attempts of one user or one host (ms): about 450 guesses an hour. */
export const LONGEST_WAIT = 8000;

/** A burst ends when a user or host has had no failure for this long (ms): its count starts again. */
export const BURST_QUIET = 60_000;

/** Users and hosts remembered at most; the least recently failed are forgotten first (a bound on memory). */
const REMEMBERED_KEYS = 10_000;

/** The failures of one user or one host in its current burst. */
interface Burst {
  failures: number;
  /** When the last failure happened. */
  last: number;
  /** The earliest moment the next attempt may be checked. */
  next: number;
}

/**
 * Wrong guesses per key ("user x", "host h"), with a clock of the caller's
 * (a unit test drives it). Each attempt reserves its turn at once, so
 * attempts in parallel queue behind each other instead of all waiting the
 * same short time.
 */
export class FailureThrottle {
  readonly #bursts = new Map<string, Burst>();

  /** How long an attempt concerning `keys` made at `now` waits before it is checked (ms); reserves that turn. */
  reserve(keys: string[], now: number): number {
    const bursts = keys.map((key) => this.#current(key, now));
    const turn = Math.max(now, ...bursts.map((burst) => burst?.next ?? now));
    for (const burst of bursts) if (burst) burst.next = turn + waitAfter(burst.failures);
    return turn - now;
  }

  /** Records a failure at `now`; returns the keys that have just begun to be slowed down (to log once). */
  failed(keys: string[], now: number): string[] {
    const slowed: string[] = [];
    for (const key of keys) {
      const burst = this.#current(key, now) ?? { failures: 0, last: now, next: now };
      burst.failures++;
      burst.last = now;
      burst.next = Math.max(burst.next, now + waitAfter(burst.failures));
      this.#bursts.delete(key); // Re-inserted last: the map's order is the order of the last failures.
      this.#bursts.set(key, burst);
      if (burst.failures === FREE_FAILURES) slowed.push(key);
    }
    while (this.#bursts.size > REMEMBERED_KEYS) this.#bursts.delete(this.#bursts.keys().next().value!);
    return slowed;
  }

  /** Forgets the failures of `key` (a user who has just logged in). */
  succeeded(key: string): void {
    this.#bursts.delete(key);
  }

  /** The failures of `key` in its current burst. */
  failures(key: string, now: number): number {
    return this.#current(key, now)?.failures ?? 0;
  }

  /** The burst of `key` at `now`, if one is going on (ended ones are forgotten here). */
  #current(key: string, now: number): Burst | undefined {
    const burst = this.#bursts.get(key);
    if (burst && now - burst.last > BURST_QUIET && burst.next <= now) {
      this.#bursts.delete(key);
      return undefined;
    }
    return burst;
  }
}

/** The wait before the attempt that follows `failures` failures in a row (ms). */
function waitAfter(failures: number): number {
  return failures < FREE_FAILURES ? 0 : Math.min(FIRST_WAIT * 2 ** (failures - FREE_FAILURES), LONGEST_WAIT);
}

/** Checked when the user is unknown, so that an unknown user costs as much as a wrong password. */
const NO_SUCH_USER = await hashPassword(crypto.randomUUID());

/** SHA-256's block, in bytes: an HMAC key is padded to it. */
const SHA256_BLOCK = 64;

/**
 * HMAC-SHA-256 (RFC 2104) under `key` (at most one block), as two SHA-256
 * that start from the key's inner and outer pads, hashed once and copied at
 * each call. The same digests as node:crypto's createHmac, which in Deno sets
 * its key up again at every call: 58 us a call there, 7 us here (measured on
 * 2 shared cores); it is paid at every login and every token checked.
 * node:crypto rather than Web Crypto: it answers at once, where a Web Crypto
 * promise would cost each call a trip through a thread pool.
 */
export function hmacSha256(key: Uint8Array): (text: string | Uint8Array) => Uint8Array {
  if (key.length > SHA256_BLOCK) throw new RangeError(`an HMAC key of at most ${SHA256_BLOCK} bytes`);
  const pad = (byte: number) => Uint8Array.from({ length: SHA256_BLOCK }, (_, i) => (key[i] ?? 0) ^ byte);
  const [inner, outer] = [createHash("sha256").update(pad(0x36)), createHash("sha256").update(pad(0x5c))];
  return (text) => outer.copy().update(inner.copy().update(text).digest()).digest();
}

/** The HMAC, under a random key of this process, of a stored password and the SHA-256 that verified against it. */
const memoryDigest = hmacSha256(randomBytes(32));

function verifiedDigest(stored: string, passwordHash: string): Uint8Array {
  return memoryDigest(`${stored}\n${passwordHash.toLowerCase()}`);
}

/** Whether two digests are equal, looking at every byte whatever the first difference. */
function sameDigest(a: Uint8Array, b: Uint8Array | undefined): boolean {
  return b !== undefined && timingSafeEqual(a, b);
}

/** The Authenticator's credentials check: {@linkcode check}. */
export class LoginGuard {
  #users: ReadonlyMap<string, string>;
  readonly #verified = new Map<string, Uint8Array>();
  readonly #throttle = new FailureThrottle();
  readonly #logger: Logger;

  constructor(users: ReadonlyMap<string, string>, logger: Logger) {
    this.#users = users;
    this.#logger = logger;
  }

  /** user -> stored password, replaced as a whole on reload. */
  get users(): ReadonlyMap<string, string> {
    return this.#users;
  }

  set users(users: ReadonlyMap<string, string>) {
    this.#users = users;
    for (const user of this.#verified.keys()) if (!users.has(user)) this.#verified.delete(user);
  }

  /**
   * Whether `passwordHash` (SHA-256 hex) is the password of `user`, asked
   * from `host`. After {@linkcode FREE_FAILURES} failures in a row of that
   * user or that host, each attempt waits its turn, longer at each failure;
   * the log says so once per burst. A correct password is still accepted
   * after its wait (the owner is slowed down, never locked out).
   */
  async check(user: string, passwordHash: string, host: string): Promise<boolean> {
    const keys = [`user ${JSON.stringify(user)}`, `host ${host}`];
    const wait = this.#throttle.reserve(keys, Date.now());
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const stored = this.#users.get(user);
    const digest = verifiedDigest(stored ?? NO_SUCH_USER, passwordHash);
    let valid = sameDigest(digest, this.#verified.get(user));
    if (!valid) {
      // Also for an unknown user, so that the answer takes as long.
      valid = await passwordMatches(stored ?? NO_SUCH_USER, passwordHash) && stored !== undefined;
      if (valid) this.#verified.set(user, digest);
    }
    if (valid) {
      this.#throttle.succeeded(keys[0]);
      return true;
    }
    const now = Date.now();
    if (this.#throttle.failures(keys[0], now) === 0) {
      this.#logger.info(`refused the credentials of user ${JSON.stringify(user)} from ${host}`);
    }
    for (const key of this.#throttle.failed(keys, now)) {
      this.#logger.warn(
        `${key}: ${FREE_FAILURES} failed logins in a row; each further attempt waits its turn (up to ` +
          `${LONGEST_WAIT / 1000} s) until ${BURST_QUIET / 1000} s pass without a failure (not logged again)`,
      );
    }
    return false;
  }
}
