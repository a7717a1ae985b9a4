/**
 * The tokens of an Authenticator: how they are made and recognised
 * ({@linkcode TokenMint}), and the live ones it knows, each with its issuer
 * and expiry, with the one timer that expires them ({@linkcode TokenTable}).
 *
 * A token proves itself: any replica of the installation checks one it has
 * never heard of, with no table and no call (README, "Authenticator
 * replicas"). The table is what publishes expiries: the issuer's own tokens,
 * and its peers' in case their issuer dies.
 *
 * Tokens come from this replica and from its peers, so they do not expire in
 * the order they arrive: a replica that just started learns old tokens, and
 * peers may be configured with other lifetimes. A binary heap ordered by
 * expiry keeps the next one to expire on top; one timer, armed for it, is the
 * whole scheduler: O(log n) per token however many are live.
 *
 * The timer runs on the monotonic clock (`performance.now()`); a token's
 * expiry is a wall-clock time (`Date.now()`), the only clock two processes
 * share, and it is what every replica checks. So a token leaves the table
 * (and its revoke is published) only once the wall clock has passed it too:
 * by then every replica refuses it.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { type Cipher, createCipheriv, timingSafeEqual } from "node:crypto";
import { hmacSha256 } from "./login_guard.ts";

/** A live token as replicas share it. */
export interface Grant {
  token: string;
  /** The user it was issued to (the streaming service counts streams per user). */
  user: string;
  /** The discovery id of the replica that issued it. */
  issuer: string;
  /** When it expires, in ms since the epoch (wall clock). */
  expiresAt: number;
}

/** The random bytes that open every token: 128 bits from the platform's CSPRNG (also the cipher's counter block). */
const NONCE_BYTES = 16;
/** The expiry's bytes (ms since the epoch, big-endian: enough until the year 10889). */
const EXPIRY_BYTES = 6;
/** The user's name is padded with zero bytes to a multiple of this, so a token shows little of its length. */
const USER_BLOCK = 32;
/** AES's block, in bytes. */
const AES_BLOCK = 16;
/** The HMAC-SHA-256 that closes every token, cut to 128 bits. */
const MAC_BYTES = 16;
/** The longest token: a user name of 64 characters of 4 bytes each (users.ts), in base64url. */
export const TOKEN_MAX_LENGTH = Math.ceil((NONCE_BYTES + EXPIRY_BYTES + 256 + MAC_BYTES) / 3) * 4;

/**
 * Makes the tokens of one installation, and recognises them. A token is, in
 * base64url: 128 random bits, its expiry (in clear: a revoke tells it to
 * anyone on IceStorm anyway), its user's name encrypted (AES-256-CTR, the
 * random bits as counter block: revokes go to anyone on IceStorm, users' names
 * should not), and an HMAC-SHA-256 of all that. The keys come from the
 * installation secret, so every replica checks every other's tokens; without
 * the secret nobody can make one, or alter one (extend it, give it to another
 * user). A token must be exactly as issued: the encoding is checked to be
 * the one this class writes, so one token has one spelling (revokes and the
 * per-user stream count compare strings).
 */
export class TokenMint {
  readonly #mac: (bytes: Uint8Array) => Uint8Array;
  /** AES-256 on single blocks, for CTR's key stream: one cipher object for good (a new one per token costs 27 us). */
  readonly #blocks: Cipher;

  /** @param macKey, cipherKey 32 bytes each, derived from the installation secret for these two purposes */
  constructor(macKey: Uint8Array, cipherKey: Uint8Array) {
    this.#mac = hmacSha256(macKey);
    this.#blocks = createCipheriv("aes-256-ecb", cipherKey, null).setAutoPadding(false);
  }

  /** A new token for `user` that expires at `expiresAt` (ms since the epoch). */
  mint(user: string, expiresAt: number): string {
    const name = Buffer.from(user, "utf8");
    const padded = Buffer.alloc(Math.max(1, Math.ceil(name.length / USER_BLOCK)) * USER_BLOCK);
    name.copy(padded);
    const token = Buffer.alloc(NONCE_BYTES + EXPIRY_BYTES + padded.length + MAC_BYTES);
    crypto.getRandomValues(token.subarray(0, NONCE_BYTES));
    token.writeUIntBE(expiresAt, NONCE_BYTES, EXPIRY_BYTES);
    this.#cipher(token.subarray(0, NONCE_BYTES), padded).copy(token, NONCE_BYTES + EXPIRY_BYTES);
    const body = token.subarray(0, token.length - MAC_BYTES);
    token.set(this.#mac(body).subarray(0, MAC_BYTES), body.length);
    return token.toString("base64url");
  }

  /** When `token` expires (ms since the epoch), if it is a token of this installation, exactly as issued. */
  expiryOf(token: string): number | undefined {
    const bytes = this.#open(token);
    return bytes?.readUIntBE(NONCE_BYTES, EXPIRY_BYTES);
  }

  /** Whether `token` is one of this installation's and has not expired (wall clock). */
  isLive(token: string): boolean {
    return (this.expiryOf(token) ?? 0) > Date.now();
  }

  /** The user of `token`, if it is one of this installation's and has not expired. */
  userOf(token: string): string | undefined {
    const bytes = this.#open(token);
    if (bytes === undefined || bytes.readUIntBE(NONCE_BYTES, EXPIRY_BYTES) <= Date.now()) return undefined;
    const padded = this.#cipher(
      bytes.subarray(0, NONCE_BYTES),
      bytes.subarray(NONCE_BYTES + EXPIRY_BYTES, bytes.length - MAC_BYTES),
    );
    const end = padded.indexOf(0);
    return padded.subarray(0, end < 0 ? padded.length : end).toString("utf8");
  }

  /** The bytes of `token` if its MAC is right and its spelling is the one mint() writes. */
  #open(token: string): Buffer | undefined {
    if (typeof token !== "string" || token.length > TOKEN_MAX_LENGTH) return undefined;
    const bytes = Buffer.from(token, "base64url");
    const sealedUser = bytes.length - NONCE_BYTES - EXPIRY_BYTES - MAC_BYTES;
    if (sealedUser <= 0 || sealedUser % USER_BLOCK !== 0 || bytes.toString("base64url") !== token) return undefined;
    const body = bytes.subarray(0, bytes.length - MAC_BYTES);
    const mac = this.#mac(body).subarray(0, MAC_BYTES);
    return timingSafeEqual(mac, bytes.subarray(body.length)) ? bytes : undefined;
  }

  /**
   * AES-256-CTR of `bytes` (a whole number of blocks) with initial counter block `nonce` (big-endian, as
   * node:crypto's aes-256-ctr counts; the unit test compares): it both encrypts and decrypts.
   */
  #cipher(nonce: Uint8Array, bytes: Uint8Array): Buffer {
    const counters = Buffer.alloc(bytes.length);
    for (let offset = 0, counter = Buffer.from(nonce); offset < bytes.length; offset += AES_BLOCK) {
      counters.set(counter, offset);
      for (let i = AES_BLOCK - 1; i >= 0 && ++counter[i] === 256; i--) counter[i] = 0;
    }
    const stream = this.#blocks.update(counters);
    for (let i = 0; i < stream.length; i++) stream[i] ^= bytes[i];
    return stream;
  }
}

/** An expired token, and the replica that issued it. */
export type ExpiredToken = Omit<Grant, "expiresAt" | "user">;

/** The live tokens an Authenticator publishes the expiries of (its own, and its peers' should they die). */
export class TokenTable {
  readonly #onExpired: (expired: ExpiredToken[]) => void;
  /** token -> its user, its issuer, its expiry (wall clock) and when the timer looks at it (monotonic clock, ms). */
  readonly #live = new Map<string, { user: string; issuer: string; expiresAt: number; due: number }>();
  /**
   * Min-heap of [due, token], the soonest on top. A token removed early stays here until its time comes, and is
   * then skipped: only an entry that matches `#live` expires anything.
   */
  readonly #due: [number, string][] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  /** `onExpired` gets the tokens whose time has come, in batches, soonest first. */
  constructor(onExpired: (expired: ExpiredToken[]) => void) {
    this.#onExpired = onExpired;
  }

  /** How many tokens are live. */
  get size(): number {
    return this.#live.size;
  }

  /** Adds a token issued here or shared by a peer. Returns false, changing nothing, if it is known already or expired. */
  add({ token, user, issuer, expiresAt }: Grant): boolean {
    const left = expiresAt - Date.now();
    if (this.#live.has(token) || !(left > 0)) return false;
    const due = performance.now() + left;
    this.#live.set(token, { user, issuer, expiresAt, due });
    this.#schedule(due, token);
    return true;
  }

  /** Forgets `token` before its time (another replica is revoking it). */
  remove(token: string): boolean {
    return this.#live.delete(token);
  }

  /** The user of `token` if it is here and live: the same answer as the token's own, without checking its MAC. */
  userOf(token: string): string | undefined {
    const entry = this.#live.get(token);
    return entry !== undefined && entry.expiresAt > Date.now() ? entry.user : undefined;
  }

  /** Every live token, to share with another replica. */
  grants(): Grant[] {
    return [...this.grantParts(Infinity)].flat();
  }

  /**
   * Every live token in parts of at most `size`, each read when it is asked for (so that a large table costs its
   * caller no long turn): the tokens added meanwhile come too, those gone meanwhile do not.
   */
  *grantParts(size: number): Generator<Grant[]> {
    let [part, now]: [Grant[], number] = [[], Date.now()];
    for (const [token, { user, issuer, expiresAt }] of this.#live) {
      if (expiresAt > now) part.push({ token, user, issuer, expiresAt });
      if (part.length < size) continue;
      yield part;
      [part, now] = [[], Date.now()];
    }
    if (part.length > 0) yield part;
  }

  /** Cancels the timer for good (at shutdown). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** Puts `token` in the heap for `due`; only a new soonest entry moves the timer. */
  #schedule(due: number, token: string): void {
    const soonest = this.#due[0];
    this.#push([due, token]);
    if (soonest === undefined || due < soonest[0]) this.#arm();
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#due.length === 0 || this.#stopped) return;
    this.#timer = setTimeout(() => this.#expireDue(), Math.max(0, this.#due[0][0] - performance.now()));
  }

  /**
   * Expires every token whose time has come on both clocks (one the wall clock has not reached yet, the two having
   * drifted apart, goes back in the heap for the difference), then re-arms the timer for the soonest one left.
   */
  #expireDue(): void {
    const now = performance.now();
    const wallNow = Date.now();
    const expired: ExpiredToken[] = [];
    const early: [number, string][] = [];
    while (this.#due.length > 0 && this.#due[0][0] <= now) {
      const [due, token] = this.#pop();
      const entry = this.#live.get(token);
      if (entry?.due !== due) continue; // Removed early: nothing to expire.
      if (entry.expiresAt > wallNow) {
        entry.due = now + (entry.expiresAt - wallNow);
        early.push([entry.due, token]);
        continue;
      }
      this.#live.delete(token);
      expired.push({ token, issuer: entry.issuer });
    }
    for (const entry of early) this.#push(entry);
    if (expired.length > 0) this.#onExpired(expired);
    this.#arm();
  }

  #push(entry: [number, string]): void {
    const heap = this.#due;
    let child = heap.push(entry) - 1;
    while (child > 0) {
      const parent = (child - 1) >> 1;
      if (heap[parent][0] <= heap[child][0]) break;
      [heap[parent], heap[child]] = [heap[child], heap[parent]];
      child = parent;
    }
  }

  #pop(): [number, string] {
    const heap = this.#due;
    const top = heap[0];
    const last = heap.pop()!;
    if (heap.length === 0) return top;
    heap[0] = last;
    for (let parent = 0;;) {
      const [left, right] = [2 * parent + 1, 2 * parent + 2];
      let smallest = parent;
      if (left < heap.length && heap[left][0] < heap[smallest][0]) smallest = left;
      if (right < heap.length && heap[right][0] < heap[smallest][0]) smallest = right;
      if (smallest === parent) return top;
      [heap[parent], heap[smallest]] = [heap[smallest], heap[parent]];
      parent = smallest;
    }
  }
}
