/**
 * Tokens as the services that receive them check them: one check for every
 * edit and stream (and whose the token is, for the per-user stream limit),
 * and one listener for the revocations on IceStorm.
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
// @ts-types="./slice/streams.d.ts"
import { IceFlixStreams } from "./slice/streams.js";
import type { Discovery } from "./discovery.ts";
import { describeError, type Logger } from "./log.ts";

/**
 * Whether a live Authenticator (any of them, through discovery) accepts `token` now.
 *
 * @throws IceFlix.TemporaryUnavailable when no Authenticator answers
 */
export async function isTokenValid(discovery: Discovery, token: string): Promise<boolean> {
  // Just started, a service may not have proven an Authenticator yet, while Main already hands it out.
  await discovery.someFound("auth");
  return await discovery.callAny("auth", (authenticator) => authenticator.isAuthorized(token));
}

/**
 * Checks `token` before `operation` (named in the log): a token is accepted
 * only if a live Authenticator says it is valid now. Whatever else happens,
 * no Authenticator answering or one failing, the token is refused: nobody
 * vouched for it. Tokens are never logged.
 *
 * @throws IceFlix.Unauthorized when the token is not accepted
 */
export async function requireValidToken(
  discovery: Discovery,
  logger: Logger,
  token: string,
  operation: string,
): Promise<void> {
  await vouchedFor(logger, operation, async () => (await isTokenValid(discovery, token)) ? true : undefined);
}

/** The facet of IceFlix's Authenticators that tells whose a token is (`slice/streams.ice`). */
export const TOKEN_OWNER_FACET = "TokenOwner";

/** Whom a token stands for, as the streaming service counts streams. */
export interface TokenOwner {
  /** The same for every token of one user (in memory only: it may be the token itself). */
  key: string;
  /** For messages: `user "alice"`, or the token's session when its Authenticator does not say whose it is. */
  description: string;
}

/**
 * Checks `token` as {@linkcode requireValidToken} does and says whose it is:
 * the user an Authenticator issued it to (its facet `TokenOwner`). An
 * Authenticator of another implementation has no such facet: then each of its
 * tokens counts as a user of its own.
 *
 * @throws IceFlix.Unauthorized when the token is not accepted
 */
export async function requireTokenOwner(
  discovery: Discovery,
  logger: Logger,
  token: string,
  operation: string,
): Promise<TokenOwner> {
  return await vouchedFor(logger, operation, async () => {
    await discovery.someFound("auth");
    return await discovery.callAny("auth", async (authenticator) => {
      try {
        const user = await IceFlixStreams.TokenOwnerPrx.uncheckedCast(authenticator, TOKEN_OWNER_FACET).userOf(token);
        return { key: `user ${user}`, description: `user "${user}"` };
      } catch (error) {
        if (error instanceof IceFlix.Unauthorized) return undefined;
        if (!(error instanceof Ice.FacetNotExistException)) throw error;
        return (await authenticator.isAuthorized(token))
          ? { key: `token ${token}`, description: "this session (its Authenticator does not say whose it is)" }
          : undefined;
      }
    });
  });
}

/**
 * What `ask` answers about a token, or `Unauthorized` when it answers
 * nothing (the token is not valid) or fails (nobody could vouch for it).
 */
async function vouchedFor<T>(logger: Logger, operation: string, ask: () => Promise<T | undefined>): Promise<T> {
  let answer: T | undefined;
  try {
    answer = await ask();
  } catch (error) {
    logger.warn(`${operation} refused: no Authenticator could check the token (${describeError(error)})`);
    throw new IceFlix.Unauthorized();
  }
  if (answer === undefined) {
    logger.info(`${operation} refused: token not authorized`);
    throw new IceFlix.Unauthorized();
  }
  return answer;
}

/** An IceStorm subscriber of topic `AuthenticationStatus`: calls `onRevoke` for every `revoke(token)` event. */
export class RevocationListener extends IceFlix.TokenRevocation {
  readonly #onRevoke: (token: string) => void;

  constructor(onRevoke: (token: string) => void) {
    super();
    this.#onRevoke = onRevoke;
  }

  revoke(token: string): void {
    this.#onRevoke(token);
  }
}
