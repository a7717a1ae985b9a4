/**
 * Who is believed: only services that prove they hold the installation
 * secret (`IceFlix.Trust.SecretFile`, made by ./setup), and the spec-only
 * services the operator admits by name (`IceFlix.Trust.AdmittedEndpoints`) or
 * all of them in open mode (`IceFlix.Trust.Open`). Design and threat model:
 * README, section "Trust".
 *
 * A proof is an HMAC-SHA-256 under the secret of what the service is (kind,
 * id), where it is (its own proxy: identity and endpoints) and the verifier's
 * fresh nonce: it cannot be replayed, and relaying a challenge to a real
 * service yields a proof of that service's proxy and id, not of the relay's.
 * Messages between replicas carry the same kind of MAC over their sender,
 * their recipient, a time and a nonce, checked by {@linkcode Trust.verify}.
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/trust.d.ts"
import { IceFlixTrust } from "./slice/trust.js";
import { describeError, type Logger } from "./log.ts";

/** The facet of every announced service's object where it proves itself. */
const PROVER_FACET = "IceFlixTrust";

/** Random bytes in a challenge or a message nonce. */
const NONCE_BYTES = 16;

/** How far a message's time may be from the receiver's clock (ms): replicas on several machines need NTP. */
export const FRESHNESS = 60_000;

/** Default path of the installation secret, relative to the checkout. */
const DEFAULT_SECRET_FILE = "data/installation.key";

/** What a service proves about itself. */
export interface Claim {
  kind: string;
  id: string;
}

/** The part of a proxy a proof is bound to: its identity and its endpoints, as text. */
export function bindingOf(proxy: Ice.ObjectPrx): string {
  return JSON.stringify([
    Ice.identityToString(proxy.ice_getIdentity()),
    proxy.ice_getEndpoints().map((endpoint) => endpoint.toString()),
  ]);
}

/** Connection ids handed out by {@linkcode ownConnection} so far. */
let ownConnections = 0;

/**
 * `proxy` on a connection of its own (a connection id nobody else uses), made now within `timeout`, and the way to
 * close it: for a service not believed yet. A tarpit (a socket that accepts and never answers) then holds the
 * connection no longer than its caller wants, and closing it closes nothing else, though a forged proxy may point at a
 * real service's endpoint, whose shared connection carries real calls. It is made first because once a call has timed
 * out Ice no longer says which connection it was on; one not made within `timeout` ends by itself within the connect
 * timeout (service.ts).
 *
 * @throws Ice.LocalException when it cannot be made in time
 */
export async function ownConnection<P extends Ice.ObjectPrx>(
  proxy: P,
  timeout: number,
): Promise<{ proxy: P; close(): void }> {
  const own = proxy.ice_connectionId(`own-${++ownConnections}`);
  const connection = await own.ice_invocationTimeout(timeout).ice_getConnection();
  return { proxy: own, close: () => connection.close(Ice.ConnectionClose.Forcefully) };
}

/** `bytes` in hex. */
function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** A signed message's envelope: when it was made, its nonce, and the MAC. */
const AT_BYTES = 8;
const MAC_BYTES = 32;

/**
 * The installation secret and what this process was told to admit without
 * proof. One per process, in the service context.
 */
export class Trust {
  /** Whether every spec-only service is admitted without proof (`IceFlix.Trust.Open`). */
  readonly open: boolean;
  readonly #key: CryptoKey;
  readonly #admitted: { host: string; port: number }[];
  /** Nonces of the messages accepted within the last {@linkcode FRESHNESS} × 2, with their times. */
  readonly #seen = new Map<string, number>();

  private constructor(key: CryptoKey, open: boolean, admitted: { host: string; port: number }[]) {
    this.#key = key;
    this.open = open;
    this.#admitted = admitted;
  }

  /**
   * Reads the secret file (`IceFlix.Trust.SecretFile`) and the admission
   * properties (`IceFlix.Trust.AdmittedEndpoints`, `IceFlix.Trust.Open`).
   *
   * @throws Error when the secret file is missing or empty, or a property is nonsense
   */
  static async load(communicator: Ice.Communicator, logger: Logger): Promise<Trust> {
    const properties = communicator.getProperties();
    const path = properties.getPropertyWithDefault("IceFlix.Trust.SecretFile", DEFAULT_SECRET_FILE);
    let secret: string;
    try {
      secret = (await Deno.readTextFile(path)).trim();
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      throw new Error(`secret file ${path} not found: ./setup makes one (every service of an installation needs it)`);
    }
    if (secret === "") throw new Error(`secret file ${path} is empty`);
    const key = await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
    const openText = properties.getProperty("IceFlix.Trust.Open").trim();
    if (!["", "0", "1"].includes(openText)) {
      throw new Error(`property IceFlix.Trust.Open must be 0 or 1, not "${openText}"`);
    }
    const listed = properties.getProperty("IceFlix.Trust.AdmittedEndpoints").trim();
    let admitted: { host: string; port: number }[] = [];
    if (listed !== "") {
      try {
        admitted = communicator.stringToProxy(`admitted:${listed}`).ice_getEndpoints().map(hostAndPort);
      } catch (error) {
        throw new Error(`property IceFlix.Trust.AdmittedEndpoints is not a list of endpoints: ${describeError(error)}`);
      }
    }
    const trust = new Trust(key, openText === "1", admitted);
    if (trust.open) logger.warn("open mode (IceFlix.Trust.Open=1): services that prove nothing are believed");
    if (admitted.length > 0) logger.info(`admitted without proof: ${listed} (IceFlix.Trust.AdmittedEndpoints)`);
    return trust;
  }

  /** The HMAC of `parts` (encoded unambiguously) under the secret. */
  async mac(parts: unknown[]): Promise<Uint8Array> {
    return new Uint8Array(
      await crypto.subtle.sign("HMAC", this.#key, new TextEncoder().encode(JSON.stringify(parts))),
    );
  }

  /** Whether `mac` is the HMAC of `parts` (compared in constant time by Web Crypto). */
  async #macMatches(parts: unknown[], mac: Uint8Array): Promise<boolean> {
    return await crypto.subtle.verify("HMAC", this.#key, mac.slice(), new TextEncoder().encode(JSON.stringify(parts)));
  }

  /** Key material for other ciphers, derived from the secret for `purpose` (e.g. sealing tokens). */
  derive(purpose: string): Promise<Uint8Array> {
    return this.mac(["derive", purpose]);
  }

  /** The servant that proves, for the service `claim` at `self`, that it holds the secret. */
  prover(claim: Claim, self: Ice.ObjectPrx): Ice.Object {
    return new Prover(this, claim, bindingOf(self));
  }

  /** Adds the prover of `claim` as a facet of the object of `self`. */
  serveProofs(adapter: Ice.ObjectAdapter, claim: Claim, self: Ice.ObjectPrx): void {
    adapter.addFacet(this.prover(claim, self), self.ice_getIdentity(), PROVER_FACET);
  }

  /**
   * Challenges the service at `proxy` to prove it is a `kind` service of this
   * installation (with id `id`, if given). Resolves to the id it proved, or
   * to why not. The challenge goes over a connection of its own, closed
   * once answered ({@linkcode ownConnection}).
   *
   * @throws Ice.LocalException when the service cannot be reached (it may be starting, or hung: not a refusal)
   */
  async challenge(kind: string, proxy: Ice.ObjectPrx, timeout: number, id?: string): Promise<Claim | string> {
    const own = await ownConnection(proxy, timeout);
    try {
      return await this.challengeOver(kind, own.proxy, timeout, id);
    } finally {
      own.close();
    }
  }

  /**
   * {@linkcode challenge} over `proxy` as it is: for a caller that already
   * holds it on a connection of its own ({@linkcode ownConnection}; the
   * connection id is not part of what a proof is bound to).
   *
   * @throws Ice.LocalException when the service cannot be reached
   */
  async challengeOver(kind: string, proxy: Ice.ObjectPrx, timeout: number, id?: string): Promise<Claim | string> {
    const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
    let proof: IceFlixTrust.Proof;
    try {
      proof = await IceFlixTrust.ProverPrx.uncheckedCast(proxy, PROVER_FACET).ice_invocationTimeout(timeout)
        .prove(nonce);
    } catch (error) {
      if (error instanceof Ice.RequestFailedException) return "it proves nothing (a spec-only service?)";
      if (error instanceof Ice.LocalException) throw error;
      return `no proof (${describeError(error)})`;
    }
    if (proof.kind !== kind || (id !== undefined && proof.id !== id)) {
      return `it proves to be ${proof.kind} service ${proof.id}`;
    }
    if (!await this.#macMatches(["prove", proof.kind, proof.id, bindingOf(proxy), hex(nonce)], proof.mac)) {
      return "its proof is wrong (another installation's secret, or relayed for another proxy)";
    }
    return { kind: proof.kind, id: proof.id };
  }

  /** Why `proxy` is admitted without proof (open mode, or all its endpoints are listed), or undefined. */
  admission(proxy: Ice.ObjectPrx): string | undefined {
    if (this.open) return "IceFlix.Trust.Open=1";
    const endpoints = proxy.ice_getEndpoints().map(hostAndPort);
    const listed = ({ host, port }: { host: string; port: number }) =>
      this.#admitted.some((admitted) => admitted.host === host && admitted.port === port);
    return endpoints.length > 0 && endpoints.every(listed) ? "IceFlix.Trust.AdmittedEndpoints" : undefined;
  }

  /**
   * A signature of a message about `body` from `from` to `to`: its time, a
   * nonce and the MAC of all that for `purpose`.
   */
  async sign(purpose: string, from: string, to: string, body: unknown): Promise<Uint8Array> {
    const at = Date.now();
    const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
    const mac = await this.mac([purpose, from, to, at, hex(nonce), body]);
    const signature = new Uint8Array(AT_BYTES + NONCE_BYTES + MAC_BYTES);
    new DataView(signature.buffer).setFloat64(0, at);
    signature.set(nonce, AT_BYTES);
    signature.set(mac, AT_BYTES + NONCE_BYTES);
    return signature;
  }

  /**
   * Why the message `signature` signs is refused (forged, for another
   * recipient, stale, or seen before), or undefined if it is accepted; an
   * accepted one is remembered, so the same message is refused next time.
   */
  async refusal(
    purpose: string,
    from: string,
    to: string,
    body: unknown,
    signature: Uint8Array,
  ): Promise<string | undefined> {
    if (signature.length !== AT_BYTES + NONCE_BYTES + MAC_BYTES) return "not signed";
    const at = new DataView(signature.slice(0, AT_BYTES).buffer).getFloat64(0);
    const nonce = hex(signature.subarray(AT_BYTES, AT_BYTES + NONCE_BYTES));
    if (!await this.#macMatches([purpose, from, to, at, nonce, body], signature.subarray(AT_BYTES + NONCE_BYTES))) {
      return "wrong signature (forged, altered, or meant for another recipient)";
    }
    return this.replayRefusal(at, nonce);
  }

  /**
   * Why a message made at `at` with `nonce` is refused (stale, or seen
   * before), or undefined; call it once its authenticity is checked.
   */
  replayRefusal(at: number, nonce: string): string | undefined {
    const now = Date.now();
    if (!Number.isFinite(at) || Math.abs(now - at) > FRESHNESS) return "stale (a replay, or clocks apart)";
    if (this.#seen.has(nonce)) return "replayed";
    for (const [old, time] of this.#seen) {
      if (now - time <= 2 * FRESHNESS) break;
      this.#seen.delete(old);
    }
    this.#seen.set(nonce, now);
    return undefined;
  }

  /** A fresh nonce for a message, in hex. */
  static nonce(): string {
    return hex(crypto.getRandomValues(new Uint8Array(NONCE_BYTES)));
  }
}

/** The host and port of an IP endpoint (others: empty host). */
export function hostAndPort(endpoint: Ice.Endpoint): { host: string; port: number } {
  let info: Ice.EndpointInfo | null = endpoint.getInfo();
  while (info && !(info instanceof Ice.IPEndpointInfo)) info = info.underlying;
  return info ? { host: info.host, port: info.port } : { host: "", port: -1 };
}

/** The `Prover` facet of one service. */
class Prover extends IceFlixTrust.Prover {
  readonly #trust: Trust;
  readonly #claim: Claim;
  readonly #binding: string;

  constructor(trust: Trust, claim: Claim, binding: string) {
    super();
    this.#trust = trust;
    this.#claim = claim;
    this.#binding = binding;
  }

  async prove(nonce: Uint8Array): Promise<IceFlixTrust.Proof> {
    const { kind, id } = this.#claim;
    // Nothing but the nonce comes from the caller: a service proves only what it is and where.
    const mac = await this.#trust.mac(["prove", kind, id, this.#binding, hex(nonce.slice(0, 64))]);
    return new IceFlixTrust.Proof(kind, id, mac);
  }
}
