/**
 * Tokens as the services that receive them check them: one check for every
 * edit and stream, and one listener for the revocations on IceStorm.
 *
 * @module
 */
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
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
  let valid: boolean;
  try {
    valid = await isTokenValid(discovery, token);
  } catch (error) {
    logger.warn(`${operation} refused: no Authenticator could check the token (${describeError(error)})`);
    throw new IceFlix.Unauthorized();
  }
  if (!valid) {
    logger.info(`${operation} refused: token not authorized`);
    throw new IceFlix.Unauthorized();
  }
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
