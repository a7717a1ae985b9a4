/**
 * The live tokens an Authenticator knows, each with its issuer and expiry,
 * and the one timer that expires them.
 *
 * Tokens come from this replica (`issue`) and from its peers (`add`), so they
 * do not expire in the order they arrive: a replica that just started learns
 * old tokens, and peers may be configured with other lifetimes. A binary heap
 * ordered by expiry keeps the next one to expire on top; one timer, armed for
 * it, is the whole scheduler: O(log n) per token however many are live.
 *
 * Expiries are kept on the monotonic clock (`performance.now()`), which never
 * jumps. Between replicas they travel as wall-clock times (`Date.now()`), the
 * only clock two processes share.
 *
 * @module
 */

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

/** An expired token, and the replica that issued it. */
export type ExpiredToken = Omit<Grant, "expiresAt" | "user">;

/** Random bytes in a token: 128 bits from the platform's CSPRNG. */
const TOKEN_BYTES = 16;

/** The live tokens, and the timer that expires them. */
export class TokenTable {
  readonly #onExpired: (expired: ExpiredToken[]) => void;
  /** token -> its user, its issuer and the moment it expires, on the monotonic clock (ms). */
  readonly #live = new Map<string, { user: string; issuer: string; expiry: number }>();
  /**
   * Min-heap of [expiry, token], the soonest on top. A token removed early stays here until its time comes, and is
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

  /** A new random token for `user`, issued by replica `issuer`, live for `lifetime` ms from now. */
  issue(issuer: string, lifetime: number, user: string): Grant {
    const token = Array.from(crypto.getRandomValues(new Uint8Array(TOKEN_BYTES)))
      .map((byte) => byte.toString(16).padStart(2, "0")).join("");
    this.#insert(token, user, issuer, performance.now() + lifetime);
    return { token, user, issuer, expiresAt: Date.now() + lifetime };
  }

  /** Adds a token a peer shared. Returns false, changing nothing, if it is known already or expired. */
  add({ token, user, issuer, expiresAt }: Grant): boolean {
    const now = performance.now();
    const expiry = now + (expiresAt - Date.now());
    if (this.#live.has(token) || expiry <= now) return false;
    this.#insert(token, user, issuer, expiry);
    return true;
  }

  /** Forgets `token` before its time (another replica is revoking it). */
  remove(token: string): boolean {
    return this.#live.delete(token);
  }

  /** Whether `token` is live (exact, even if the timer runs late). */
  isLive(token: string): boolean {
    return this.userOf(token) !== undefined;
  }

  /** The user `token` was issued to, if it is live. */
  userOf(token: string): string | undefined {
    const entry = this.#live.get(token);
    return entry !== undefined && performance.now() < entry.expiry ? entry.user : undefined;
  }

  /** Every live token, to share with another replica. */
  grants(): Grant[] {
    const [now, wallNow] = [performance.now(), Date.now()];
    return [...this.#live].filter(([, { expiry }]) => expiry > now)
      .map(([token, { user, issuer, expiry }]) => ({ token, user, issuer, expiresAt: wallNow + (expiry - now) }));
  }

  /** Cancels the timer for good (at shutdown). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #insert(token: string, user: string, issuer: string, expiry: number): void {
    this.#live.set(token, { user, issuer, expiry });
    const soonest = this.#due[0];
    this.#push([expiry, token]);
    // Only a new soonest expiry moves the timer.
    if (soonest === undefined || expiry < soonest[0]) this.#arm();
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#due.length === 0 || this.#stopped) return;
    this.#timer = setTimeout(() => this.#expireDue(), Math.max(0, this.#due[0][0] - performance.now()));
  }

  /** Expires every token whose time has come, then re-arms the timer for the soonest one left. */
  #expireDue(): void {
    const now = performance.now();
    const expired: ExpiredToken[] = [];
    while (this.#due.length > 0 && this.#due[0][0] <= now) {
      const [expiry, token] = this.#pop();
      const entry = this.#live.get(token);
      if (entry?.expiry !== expiry) continue; // Removed early: nothing to expire.
      this.#live.delete(token);
      expired.push({ token, issuer: entry.issuer });
    }
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
